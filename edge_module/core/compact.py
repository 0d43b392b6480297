"""Compact events: how a packed envelope carries the events most batches are made of.

("scroll", ts_ms, depth, y) instead of `{"type": "scroll", "ts_ms": ..., "depth": ...,
"y": ...}`: reading a tuple from marshal costs the guest half what a dict does, and the
decision plan reads its fields by position. The host compacts (`api.pack_envelope`), the
plan reads them as they are, and the generic engine gets the objects back (`expand_events`)
before it sees them, so its checks and errors are the object's. Nothing is trusted because
the host packed it: the guest checks every value as it would the object's.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from .catalog import COMPACT_EVENTS

_COMPACT_GETS = {etype: (2 + len(names), itemgetter("type", "ts_ms", *names))
                 for etype, names in COMPACT_EVENTS.items()}


def compact_events(events: list[Any]) -> list[Any]:
    """Each event as the tuple of its values ("type", ts_ms, *fields) where `COMPACT_EVENTS`
    allows it (the host's work: about 2,500 instructions an event natively)."""
    out = []
    put = out.append
    gets = _COMPACT_GETS
    for ev in events:
        try:  # an object of a compact type whose keys are exactly its fields
            size, get = gets[ev["type"]]
            if len(ev) == size:
                put(get(ev))
                continue
        except (KeyError, TypeError):  # no such key or type, not an object, unhashable
            pass
        put(ev)
    return out


def expand_events(request: Any) -> Any:
    """The request with compact events as the objects they stand for (the generic engine,
    and its errors, know only those)."""
    events = request.get("events") if type(request) is dict else None
    if type(events) is not list:
        return request
    out = []
    changed = False
    for ev in events:
        obj = as_object(ev) if type(ev) is tuple else None
        out.append(ev if obj is None else obj)
        changed = changed or obj is not None
    return dict(request, events=out) if changed else request


def as_object(ev: tuple[Any, ...]) -> dict[str, Any] | None:
    """A compact event as its object; None for a tuple that is not one."""
    names = COMPACT_EVENTS.get(ev[0]) if ev and type(ev[0]) is str else None
    if names is None or len(ev) != 2 + len(names):
        return None
    return dict(zip(("type", "ts_ms", *names), ev, strict=True))
