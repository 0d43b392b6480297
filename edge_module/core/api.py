"""The JSON boundary of the decision core, identical natively and inside the component.

`decide_json` takes the envelope `{"now_ms", "state", "request"}` the host builds and returns
the response object and the new session state as two JSON texts joined by a newline, so the
host can store the state and extend the response without parsing either. The envelope's
optional `"report": true` asks for what the decision saw (the response's `report`, for the
decision log: the host removes it before the visitor's answer), as a snapshot with
adaptive or intent conditions does anyway.

Whatever the envelope holds, the answer is one both sides can carry: JSON nested past
`MAX_JSON_DEPTH` is refused before it is parsed (a parser's recursion trapped the
component), a request string that is not UTF-8 (an escaped lone surrogate, `"\\ud800"`)
is refused naming its field, as no answer echoing it could cross the WIT boundary, and
`next_check_ms` stays within 2^53 - 1.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Callable
from typing import Any

from .compact import compact_events, expand_events
from .engine import decide
from .errors import DecisionError, NotReady
from .request_input import MAX_TIME_MS
from .snapshot import Snapshot
from .snapshot_checks import (
    MAX_JSON_DEPTH,
    first_lone_surrogate,
    may_hold_lone_surrogate,
    too_deep,
)
from .snapshot_loader import load_snapshot
from .state_checks import readable_state

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def decide_json(snap: Snapshot | None, envelope: str) -> str:
    """Decide for one envelope; raises DecisionError for anything the caller got wrong."""
    if snap is None:
        raise NotReady("no_snapshot", "no snapshot is loaded yet", None)
    env = _envelope(envelope)
    report = env.get("report") is True
    result = None
    if snap.plan is not None and not report:
        result = snap.plan.decide(env.get("request"), env.get("state"), env.get("now_ms"))
        if result is None:
            env = _envelope(envelope)  # the plan consumed its copy of the state
    if result is None:
        def again() -> tuple[Any, Any]:
            fresh = _envelope(envelope)
            return fresh.get("request"), fresh.get("state")

        result = _decide(snap, env.get("request"), env.get("state"), env.get("now_ms"),
                         report, again)
    state = result.pop("state")
    _within_time(result)
    return _dumps(result) + "\n" + _dumps(state)


def _envelope(envelope: str) -> dict[str, Any]:
    """The parsed envelope, its request's strings UTF-8 and an explicit `now_ms: null`
    read as absent."""
    if too_deep(envelope):
        raise DecisionError("invalid_json", "request is not valid JSON here: arrays and "
                            f"objects nest deeper than {MAX_JSON_DEPTH} levels", "")
    try:
        env = json.loads(envelope)
    except (ValueError, RecursionError) as exc:
        raise DecisionError("invalid_json", f"request is not valid JSON: {exc}", "") from None
    if type(env) is not dict:
        raise DecisionError("invalid_request", "envelope must be a JSON object", "")
    if may_hold_lone_surrogate(envelope):
        _utf8_request(env.get("request"))
        if first_lone_surrogate(env.get("state")) is not None:
            env["state"] = None  # unreadable: a fresh session, as for any unreadable state
    _absent_now(env.get("request"))
    return env  # type: ignore[no-any-return]


def _utf8_request(request: Any) -> None:
    """Refuse a request whose strings are not all UTF-8, naming the first such field."""
    where = first_lone_surrogate(request)
    if where is not None:
        field = where.encode("utf-8", "backslashreplace").decode("utf-8")
        raise DecisionError("invalid_request", f"{field or 'the request'} holds half of a "
                            "character (a lone UTF-16 surrogate, \\ud800-\\udfff): strings "
                            "must be UTF-8 text", field)


def _absent_now(request: Any) -> None:
    """`"now_ms": null` is an absent now_ms (docs/edge-api.md: optional, the host's clock
    fills it)."""
    if type(request) is dict and "now_ms" in request and request["now_ms"] is None:
        del request["now_ms"]


def _within_time(result: dict[str, Any]) -> None:
    """A moment past 2^53 - 1 ms (now near it, plus a delay) is announced as that last
    one: the wire contract keeps every timestamp exact in a JSON double."""
    at = result.get("next_check_ms")
    if at is not None and at > MAX_TIME_MS:
        result["next_check_ms"] = MAX_TIME_MS


MARSHAL_VERSION = 4  # readable by every CPython since 3.4: host and guest may differ


def pack(value: object) -> str:
    """marshal bytes as a str of one char per byte: a WIT string carries it unchanged."""
    return marshal.dumps(value, MARSHAL_VERSION).decode("latin-1")


def unpack(text: str) -> object:
    return marshal.loads(text.encode("latin-1"))


def pack_envelope(now_ms: Any, state: Any, request: Any) -> str:
    """`decide-packed`'s envelope for a request (not changed), its events compact."""
    events = request.get("events") if type(request) is dict else None
    if type(events) is list and events:
        request = dict(request, events=compact_events(events))
    return pack((now_ms, state, request))


def decide_packed(snap: Snapshot | None, envelope: str) -> str:
    """`decide_json` for a Python host: (now_ms, state bytes, request[, report]) in,
    (response, state bytes) out, all marshalled: the guest then spends no time on JSON."""
    if snap is None:
        raise NotReady("no_snapshot", "no snapshot is loaded yet", None)
    try:
        items = unpack(envelope)
        if type(items) not in (tuple, list) or len(items) not in (3, 4):
            raise TypeError
        now_ms, state_blob, request = items[:3]
    except (ValueError, EOFError, TypeError, UnicodeEncodeError):
        raise DecisionError("invalid_envelope", "packed envelope is not (now_ms, state, "
                            "request[, report]) in marshal format", "") from None
    report = len(items) == 4 and items[3] is True
    # No check for lone surrogates here (2 us a decision natively): marshal carries them
    # (surrogatepass) both ways, so no answer traps, and the host's JSON parser refused
    # them before this request was packed.
    result, state_out = decide_parts(snap, now_ms, state_blob, request, report,
                                     lambda: unpack(envelope)[2])
    return pack((result, state_out))


def decide_parts(snap: Snapshot, now_ms: Any, state_blob: Any, request: Any, report: bool,
                 fresh: Callable[[], Any]) -> tuple[dict[str, Any], bytes]:
    """`decide_packed` on its envelope's parts: (response, state bytes). `fresh` gives the
    request again, untouched (read anew only when a corrupted state makes the engine decide
    a second time): a guest that has the parts already (the edge function) skips packing
    them to unpack them at once."""
    _absent_now(request)
    result = None
    if snap.plan is not None and not report:
        result = snap.plan.decide(request, state_blob, now_ms, _stored_state)
    if result is None:  # on a state of its own: the plan may have changed the other
        def again() -> tuple[Any, Any]:
            request = expand_events(fresh())
            _absent_now(request)
            return request, _stored_state(state_blob)

        result = _decide(snap, expand_events(request), _stored_state(state_blob), now_ms,
                         report, again)
    _within_time(result)
    return result, marshal.dumps(result.pop("state"), MARSHAL_VERSION)


def _decide(snap: Snapshot, request: Any, state: Any, now_ms: Any, report: bool,
            again: Callable[[], tuple[Any, Any]]) -> dict[str, Any]:
    """`decide`, and for a stored state corrupted deeper than `Session.from_state` looks
    (a scroll sample `[1, "x"]`, a fire record `[1]`: a 500 mid-decision), the same
    decision on a fresh session, as for any unreadable state. The full check
    (`readable_state`, a fifth of a decision) runs only after such a failure, on a fresh
    copy (`again`: the request and state read anew; `decide` consumes its state)."""
    try:
        return decide(snap, request, state, now_ms, report)
    except DecisionError:
        raise
    except Exception:
        request, state = again()
        if type(state) is not dict or readable_state(state):
            raise  # not the state's fault: the internal error stands
        return decide(snap, request, None, now_ms, report)


def _stored_state(blob: object) -> object:
    try:
        return None if blob is None else marshal.loads(blob)  # type: ignore[arg-type]
    except (ValueError, EOFError, TypeError):
        return None  # an unreadable stored state starts a fresh session, as a stale one does


def error_json(exc: BaseException) -> str:
    """The JSON error text for any exception: structured for ours, generic for the rest."""
    if isinstance(exc, DecisionError):
        body = exc.to_dict()
        body["status"] = exc.status
    else:
        body = {"code": "internal_error", "status": 500,
                "message": f"{type(exc).__name__}: {exc}"}
    # a message may quote what it refuses: a lone surrogate in it is written as its escape,
    # so the error crosses the WIT boundary (UTF-8) as any other
    return _dumps(body).encode("utf-8", "backslashreplace").decode("utf-8")


__all__ = ["Snapshot", "decide_json", "decide_packed", "error_json", "load_snapshot", "pack",
           "pack_envelope", "unpack"]
