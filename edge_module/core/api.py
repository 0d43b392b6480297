"""The JSON boundary of the decision core, identical natively and inside the component.

`decide_json` takes the envelope `{"now_ms", "state", "request"}` the host builds and returns
the response object and the new session state as two JSON texts joined by a newline, so the
host can store the state and extend the response without parsing either.
"""

from __future__ import annotations

import json

from .engine import decide
from .errors import DecisionError, NotReady
from .snapshot import Snapshot, load_snapshot

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
    result = decide(snap, env.get("request"), env.get("state"), env.get("now_ms"))
    state = result.pop("state")
    return _dumps(result) + "\n" + _dumps(state)


def error_json(exc: BaseException) -> str:
    """The JSON error text for any exception: structured for ours, generic for the rest."""
    if isinstance(exc, DecisionError):
        body = exc.to_dict()
        body["status"] = exc.status
        return _dumps(body)
    return _dumps({"code": "internal_error", "status": 500,
                   "message": f"{type(exc).__name__}: {exc}"})


__all__ = ["Snapshot", "decide_json", "error_json", "load_snapshot"]
