"""The JSON boundary of the decision core, identical natively and inside the component.

`decide_json` takes the envelope `{"now_ms", "state", "request"}` the host builds and returns
the response object and the new session state as two JSON texts joined by a newline, so the
host can store the state and extend the response without parsing either. The envelope's
optional `"report": true` asks for what the decision saw (the response's `report`, for the
decision log: the host removes it before the visitor's answer), as a snapshot with
adaptive or intent conditions does anyway.
"""

from __future__ import annotations

import json
import marshal

from .engine import decide
from .errors import DecisionError, NotReady
from .snapshot import Snapshot
from .snapshot_loader import load_snapshot

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def decide_json(snap: Snapshot | None, envelope: str) -> str:
    """Decide for one envelope; raises DecisionError for anything the caller got wrong."""
    if snap is None:
        raise NotReady("no_snapshot", "no snapshot is loaded yet", None)
    try:
        env = json.loads(envelope)
    except (ValueError, RecursionError) as exc:
        raise DecisionError("invalid_json", f"request is not valid JSON: {exc}", "") from None
    if type(env) is not dict:
        raise DecisionError("invalid_request", "envelope must be a JSON object", "")
    report = env.get("report") is True
    result = None
    if snap.plan is not None and not report:
        result = snap.plan.decide(env.get("request"), env.get("state"), env.get("now_ms"))
        if result is None:
            env = json.loads(envelope)  # the plan consumed its copy of the state
    if result is None:
        result = decide(snap, env.get("request"), env.get("state"), env.get("now_ms"), report)
    state = result.pop("state")
    return _dumps(result) + "\n" + _dumps(state)


MARSHAL_VERSION = 4  # readable by every CPython since 3.4: host and guest may differ


def pack(value: object) -> str:
    """marshal bytes as a str of one char per byte: a WIT string carries it unchanged."""
    return marshal.dumps(value, MARSHAL_VERSION).decode("latin-1")


def unpack(text: str) -> object:
    return marshal.loads(text.encode("latin-1"))


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
    result = None
    if snap.plan is not None and not report:
        result = snap.plan.decide(request, state_blob, now_ms, _stored_state)
    if result is None:  # on a state of its own: the plan may have changed the other
        result = decide(snap, request, _stored_state(state_blob), now_ms, report)
    state_out = marshal.dumps(result.pop("state"), MARSHAL_VERSION)
    return pack((result, state_out))


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
        return _dumps(body)
    return _dumps({"code": "internal_error", "status": 500,
                   "message": f"{type(exc).__name__}: {exc}"})


__all__ = ["Snapshot", "decide_json", "decide_packed", "error_json", "load_snapshot", "pack",
           "unpack"]
