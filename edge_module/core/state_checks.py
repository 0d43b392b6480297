"""Whether a stored session state has the shape the core writes, down to its inner values.

`Session.from_state` checks the top-level types; a state corrupted deeper (a scroll sample
`[1, "x"]`, a fire record `[1]`, a queue entry `["x", "t"]`, a hover time `"x"`) passed and
failed later, mid-decision, as a 500. `readable_state` is its complete check: False means
the state is unreadable, and the session starts afresh as for any unreadable state.

Standard library only (the core runs inside the component); no import of `session`, which
calls this. It runs at every decision: each list or table is checked column by column with
builtins (`map`, `set`, `min`, `max`, `zip`), not value by value in Python.
"""

from __future__ import annotations

from typing import Any

# Timestamps within 0..2^53 - 1 ms and every other number within +-(2^53 - 1), as a
# request's (request_input.MAX_TIME_MS, MAX_NUMBER): sums of them stay exact.
MAX_TIME_MS = 2**53 - 1
MAX_NUMBER = 2**53 - 1
MAX_DUE_MS = 2 * MAX_TIME_MS
_INT = frozenset((int,))
_NUMBERS = frozenset((int, float))
_STR = frozenset((str,))
_LIST = frozenset((list,))
_OPT_INT = frozenset((int, type(None)))
_SECTORS = 8  # mouse movement directions (session.mouse_to)


def readable_state(state: dict[str, Any]) -> bool:
    """Whether every part of a stored state (a dict with `"v"` right) holds the values the
    core writes there: the mandatory `t0`, `url`, `pv`, `d`, `sc`, `hv`, `f`, `q`, and the
    optional parts that are present. Unknown keys are ignored, as `from_state` does."""
    try:
        if not (_time(state["t0"]) and (state["url"] is None or type(state["url"]) is str)
                and _time(state["pv"]) and _number(state["d"])
                and _pairs(state["sc"], _NUMBERS, -MAX_NUMBER, MAX_NUMBER)
                and _table(state["hv"], _numbers) and _fire_records(state["f"])
                and _queue(state["q"])):
            return False
        if len(state) > 9:  # optional parts present
            for key, value in state.items():
                check = _OPTIONAL.get(key)
                if check is not None and not check(value):
                    return False
    except (KeyError, TypeError, ValueError):
        return False
    return True


def _time(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_TIME_MS


def _number(value: Any) -> bool:
    return type(value) in _NUMBERS and -MAX_NUMBER <= value <= MAX_NUMBER


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_NUMBER


def _column(values: Any, types: frozenset[type], low: float, high: float) -> bool:
    """Every value of a sequence one of `types`, numbers within [low, high]."""
    if type(values) is not tuple and type(values) is not list:
        values = tuple(values)
    return not values or (set(map(type, values)) <= types
                          and low <= min(values) and max(values) <= high)


def _times(values: Any) -> bool:
    return _column(values, _INT, 0, MAX_TIME_MS)


def _numbers(values: Any) -> bool:
    return _column(values, _NUMBERS, -MAX_NUMBER, MAX_NUMBER)


def _texts(values: Any) -> bool:
    return set(map(type, values)) <= _STR


def _rows(value: Any, width: int) -> tuple[tuple[Any, ...], ...] | None:
    """The columns of a non-empty list of lists each `width` long, None if it is not one."""
    if type(value) is not list or set(map(type, value)) != _LIST \
            or set(map(len, value)) != {width}:
        return None
    return tuple(zip(*value))


def _pairs(value: Any, second: frozenset[type], low: float, high: float) -> bool:
    """[[ts_ms, x], ...]: scroll samples, aggregate field values, mouse sectors."""
    if value == []:
        return True
    columns = _rows(value, 2)
    return columns is not None and _times(columns[0]) and _column(columns[1], second, low, high)


def _table(value: Any, check: Any) -> bool:
    """{name: value}: string keys, the values (together) passing `check`."""
    return type(value) is dict and (not value or (_texts(value) and check(value.values())))


def _fire_records(value: Any) -> bool:
    """{trigger id: [fires, last fired at or null, fires on the page, that page's view]}."""
    if type(value) is not dict or not _texts(value):
        return False
    if not value:
        return True
    columns = _rows(list(value.values()), 4)
    if columns is None:
        return False
    fires, last, page_fires, page_pv = columns
    return (_column(fires, _INT, 0, MAX_NUMBER) and set(map(type, last)) <= _OPT_INT
            and _times([t for t in last if t is not None]) and _column(page_fires, _INT, 0, MAX_NUMBER)
            and _times(page_pv))


def _queue(value: Any) -> bool:
    """[[due_ms, trigger id], ...], ascending by due (the engine delivers the head first).
    A due moment is a timestamp plus a delay: it may pass MAX_TIME_MS by that delay."""
    if value == []:
        return True
    columns = _rows(value, 2)
    if columns is None or not _column(columns[0], _INT, 0, MAX_DUE_MS):
        return False
    due = list(columns[0])
    return _texts(columns[1]) and due == sorted(due)


def _point(value: Any) -> bool:
    """The mouse's last position [x, y], or none yet."""
    return type(value) is list and len(value) in (0, 2) and _numbers(value)


def _scrolled(value: Any) -> bool:
    """[px scrolled, ms spent scrolling], or none yet."""
    return type(value) is list and (not value or (
        len(value) == 2 and _number(value[0]) and _count(value[1])))


def _timed_target(value: Any) -> bool:
    """[ms or ts, target] of the form signals, or [] before any."""
    return type(value) is list and (not value or (
        len(value) == 2 and _number(value[0]) and type(value[1]) is str))


def _steps(values: Any) -> bool:
    """Sequences' [step index, entered at]."""
    columns = _rows(list(values), 2)
    return (columns is not None and _column(columns[0], _INT, 0, MAX_NUMBER)
            and _times(columns[1]))  # (called only on a non-empty table)


def _channels_spent(values: Any) -> bool:
    """Per channel: [delivered in the session, [recent delivery times]]."""
    columns = _rows(list(values), 2)
    return (columns is not None and _column(columns[0], _INT, 0, MAX_NUMBER)
            and all(type(times) is list and _times(times) for times in columns[1]))


def _context(value: Any) -> bool:
    """The kept request context (what `request_input.request_context` let through): string
    keys; `attributes` an object of JSON scalars, the CRM id, its signature and the locale
    strings. Other fields are read by conditions that check their type themselves."""
    if type(value) is not dict or not _texts(value):
        return False
    attributes = value.get("attributes")
    if attributes is not None and not (type(attributes) is dict and _texts(attributes)
                                       and set(map(type, attributes.values())) <= _SCALARS):
        return False
    return all(value.get(name) is None or type(value[name]) is str
               for name in ("crm_id", "crm_id_sig", "locale"))


_SCALARS = frozenset((str, bool, int, float, type(None)))  # a request bounds no number here

# The optional parts (session._OPTIONAL), by state key.
_OPTIONAL = {
    "dp": _number,
    "pg": lambda v: type(v) is list and _texts(v),
    "ms": lambda v: _pairs(v, _INT, 0, _SECTORS - 1),
    "mp": _point,
    "bs": _scrolled,
    "fo": lambda v: _table(v, _times),
    "fi": _timed_target,
    "li": _timed_target,
    "is": _timed_target,
    "ev": lambda v: _table(v, lambda lists: all(type(t) is list and _times(t) for t in lists)),
    "fv": lambda v: _table(v, lambda lists: all(
        _pairs(p, _NUMBERS, -MAX_NUMBER, MAX_NUMBER) for p in lists)),
    "su": lambda v: _table(v, _times),
    "cs": lambda v: _table(v, lambda counts: _column(counts, _INT, 0, MAX_NUMBER)),
    "sq": lambda v: _table(v, _steps),
    "fd": lambda v: type(v) is list and _times(v),
    "fn": _count,
    "dm": lambda v: type(v) is int and -1 <= v <= MAX_TIME_MS,
    "cx": _context,
    "rv": lambda v: type(v) is list and _numbers(v),
    "fc": lambda v: _table(v, _channels_spent),
}


__all__ = ["readable_state"]
