"""A client of the decision core that behaves like the browser SDK: it carries the session's
`state` from one decision to the next (as the edge host does) and calls back at
`next_check_ms`, so timed triggers fire when they would in a browser.

The one harness for everything that replays visitors (rule-pack test cases, backtests,
evaluation, the tests' sessions), as Click ships one `CliRunner`. The decision core never
imports it; the guest is built from the core alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# 2025-11-27 00:00 UTC: where replayed and test sessions start (an hour boundary)
T0 = 1_764_201_600_000

# (request, state, host's now) -> the response, with the session's new "state"
Decide = Callable[[dict[str, Any], Any, int | None], dict[str, Any]]


class RunawaySession(Exception):
    """The session needed more requests than allowed: a trigger firing in a loop."""


def next_call_back(response: dict[str, Any], now: int) -> int | None:
    """When to call back after the decision at `now`: its `next_check_ms`, unless that is
    no later than `now` and the decision delivered nothing (calling again would loop)."""
    at = response.get("next_check_ms")
    if at is None or (at <= now and not response.get("actions")):
        return None
    return int(at)


class ReplayClient:
    """One visitor's session through `decide`; `context` is what call-backs send."""

    __slots__ = ("context", "decide", "max_requests", "next_check", "requests", "session_id",
                 "state")

    def __init__(self, decide: Decide, session_id: str, *,
                 max_requests: int | None = None) -> None:
        self.decide = decide
        self.session_id = session_id
        self.max_requests = max_requests
        self.state: Any = None
        self.context: Any = None
        self.next_check: int | None = None
        self.requests = 0  # call-backs included

    def send(self, request: dict[str, Any], now: int | None = None) -> dict[str, Any]:
        """One decision (`now`: the host's clock, for a request without `now_ms`); the
        response without its `state`, which the client keeps for the next request."""
        if self.requests == self.max_requests:
            raise RunawaySession(f"the session needed more than {self.max_requests} requests")
        self.requests += 1
        response = self.decide(request, self.state, now)
        self.state = response.pop("state")
        at = response.get("next_check_ms")
        if at is not None:  # the common case, no timer, stays cheap (backtests replay millions)
            sent = now if now is not None else request.get("now_ms")
            at = None if sent is None else next_call_back(response, int(sent))
        self.next_check = at
        return response

    def call_backs(self, before: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """Call back at each `next_check_ms` earlier than `before`, as the SDK's timer
        would while nothing else happens; yields (time, response)."""
        while self.next_check is not None and self.next_check < before:
            at = self.next_check
            yield at, self.send({"session_id": self.session_id, "now_ms": at,
                                 "context": self.context, "events": []}, at)
