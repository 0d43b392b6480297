"""A visitor's session as the decision core sees it: what has been observed so far.

The host keeps the state between requests as the JSON object `to_state` returns; the
client only sends new events. Everything here is a function of events and their
timestamps, never of the wall clock.
"""

from __future__ import annotations

from typing import Any

STATE_VERSION = 1
MAX_SAMPLES = 256  # scroll samples kept for velocity windows
MAX_HOVER_TARGETS = 64


# A trigger's fire record: [count, last_ms, count_on_page, page_view_of_that_count].
COUNT, LAST, PAGE_COUNT, PAGE_PV = range(4)


class Session:
    __slots__ = ("start_ms", "url", "pv", "depth", "samples", "hover", "fired", "queue")

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.url: str | None = None
        self.pv = start_ms  # when the current page was entered
        self.depth = 0.0
        self.samples: list[list[float]] = []  # [ts_ms, y] of scrolls on this page
        self.hover: dict[str, float] = {}
        self.fired: dict[str, list[Any]] = {}
        self.queue: list[list[Any]] = []  # [due_ms, trigger_id], ascending by due

    @classmethod
    def from_state(cls, state: Any, now_ms: int) -> Session:
        """Rebuild from a stored state; anything unreadable starts a fresh session."""
        if type(state) is not dict or state.get("v") != STATE_VERSION:
            return cls(now_ms)
        # The state is the core's own output, kept by the host: check its shape cheaply.
        try:
            s = cls(state["t0"])
            s.url = state["url"]
            s.pv = state["pv"]
            s.depth = state["d"]
            s.samples = state["sc"]
            s.hover = state["hv"]
            s.fired = state["f"]
            s.queue = state["q"]
        except (KeyError, TypeError):
            return cls(now_ms)
        if not (type(s.samples) is list and type(s.hover) is dict and type(s.fired) is dict
                and type(s.queue) is list and type(s.pv) is int):
            return cls(now_ms)
        return s

    def to_state(self, keep: dict[str, Any]) -> dict[str, Any]:
        """The JSON-ready state; fire records of triggers not in `keep` are dropped."""
        return {
            "v": STATE_VERSION,
            "t0": self.start_ms,
            "url": self.url,
            "pv": self.pv,
            "d": self.depth,
            "sc": self.samples,
            "hv": self.hover,
            "f": {k: r for k, r in self.fired.items() if k in keep},
            "q": self.queue,
        }

    # -- observations ---------------------------------------------------------------

    def enter_page(self, url: str, ts: int) -> None:
        self.url = url
        self.pv = ts
        self.depth = 0.0
        self.samples = [[ts, 0.0]]  # a page starts at the top: the first scroll moves from y=0
        self.hover = {}

    def scroll_to(self, ts: int, y: float) -> None:
        self.samples.append([ts, y])
        if len(self.samples) > MAX_SAMPLES:
            del self.samples[: len(self.samples) - MAX_SAMPLES]

    def hovered(self, target: str, duration_ms: float) -> None:
        if target in self.hover or len(self.hover) < MAX_HOVER_TARGETS:
            self.hover[target] = self.hover.get(target, 0.0) + duration_ms

    def prune(self, now_ms: int, keep_ms: int) -> None:
        """Forget scroll samples no window can still see (keeping one anchor before it)."""
        samples = self.samples
        cutoff = now_ms - keep_ms
        first = 0
        for i in range(len(samples) - 1):
            if samples[i + 1][0] <= cutoff:
                first = i + 1
            else:
                break
        if first:
            del samples[:first]

    # -- signals ----------------------------------------------------------------------

    def velocity(self, t: int, window_ms: int) -> float:
        """px/s scrolled in the window (t - window, t]: movement ending inside it counts."""
        samples = self.samples
        lo = t - window_ms
        total = 0.0
        for i in range(len(samples) - 1, 0, -1):
            b = samples[i]
            if b[0] > t:
                continue
            if b[0] <= lo:
                break
            total += abs(b[1] - samples[i - 1][1])
        return total * 1000.0 / window_ms
