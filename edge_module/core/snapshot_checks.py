"""The checks a snapshot's JSON values pass before the core builds anything from them; each
refuses with a `SnapshotError` naming where the value sits."""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import SnapshotError

# Every duration a snapshot holds is at most ten years, as the edge's own settings are
# (edge_module/setting_bounds.py), and every number is within +-(2^53 - 1), as a request's
# are (request_input.MAX_NUMBER): the moments the core adds up from them (now + a delay, a
# dismiss + the quiet period) then stay exact in JSON. The compiler refuses a pack past
# them (control_plane/rulepack/values.py); a snapshot past them is refused here.
MAX_DURATION_MS = 10 * 365 * 86_400_000
MAX_NUMBER = 2**53 - 1
# JSON nests at most this deep, checked before parsing: a parser's recursion past it
# overflowed the component's stack (a trap, not an error). Snapshots and envelopes nest
# about ten levels.
MAX_JSON_DEPTH = 256
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRINGS = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def check(cond: bool, message: str) -> None:
    """Refuse the snapshot with `message` unless `cond`."""
    if not cond:
        raise SnapshotError("invalid_snapshot", message)


def check_int(value: Any, where: str, minimum: int = 0) -> int:
    """An integer (not a bool) of at least `minimum`."""
    check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
          f"{where}: expected an integer >= {minimum}")
    return int(value)


def check_duration(value: Any, where: str) -> int:
    """A duration in ms: an integer from 0 to MAX_DURATION_MS."""
    check(type(value) is int and 0 <= value <= MAX_DURATION_MS,
          f"{where}: expected a whole number of ms from 0 to {MAX_DURATION_MS} (ten years)")
    return int(value)


def check_num(value: Any, where: str) -> float:
    """A number (not a bool)."""
    check(isinstance(value, (int, float)) and not isinstance(value, bool),
          f"{where}: expected a number")
    return value  # type: ignore[no-any-return]


def check_opt_str(value: Any, where: str) -> str | None:
    """A string or None."""
    check(value is None or isinstance(value, str), f"{where}: expected a string")
    return value  # type: ignore[no-any-return]


def check_finite(value: Any, where: str) -> float:
    """A finite number (not a bool), as a float."""
    check(isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value), f"{where}: expected a finite number")
    return float(value)



def too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text's arrays and objects nest past `limit`, found without parsing
    (a parser's recursion, or the traceback of its RecursionError, can overflow the stack;
    the edge function checks request bodies with it too): escapes go first, then strings,
    so brackets in strings do not count; linear, no pattern here can backtrack. Only the
    nesting a parser would walk before any syntax error is counted right, which is all it
    walks."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for c in _NOT_BRACKET.sub("", _STRINGS.sub("", _ESCAPE.sub("", text))):
        if c in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def may_hold_lone_surrogate(text: str) -> bool:
    """Whether the JSON text escapes a UTF-16 surrogate (`\\ud800`): only then can a parsed
    string hold a lone one, which no UTF-8 output (a WIT string) can carry."""
    return _SURROGATE_ESCAPE.search(text) is not None


def first_lone_surrogate(value: Any, where: str = "") -> str | None:
    """The path (`a.b[2]`) of the first string or key in `value` that is not UTF-8 (holds a
    lone surrogate), None if there is none; iterative, so any depth is walked."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is str:
            if not _utf8(item):
                return path
        elif kind is dict:
            for key, inner in item.items():
                if type(key) is str and not _utf8(key):
                    return path
                stack.append((inner, f"{path}.{key}" if path else str(key)))
        elif kind is list:
            stack.extend((inner, f"{path}[{i}]") for i, inner in enumerate(item))
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def bounded_int(text: str) -> int:
    """A snapshot's integer (`json.loads`'s parse_int): within +-MAX_NUMBER."""
    value = int(text)
    if len(text) > 15:
        check(-MAX_NUMBER <= value <= MAX_NUMBER,
              f"snapshot: the number {_shortened(text)} is beyond +-{MAX_NUMBER} (2^53 - 1)")
    return value


def bounded_float(text: str) -> float:
    """A snapshot's number with a fraction or exponent: finite, within +-MAX_NUMBER."""
    value = float(text)
    check(math.isfinite(value) and -MAX_NUMBER <= value <= MAX_NUMBER,
          f"snapshot: the number {_shortened(text)} is beyond +-{MAX_NUMBER} (2^53 - 1)")
    return value


def no_constant(name: str) -> None:
    """`json.loads`'s parse_constant: NaN and Infinity are not JSON."""
    check(False, f"snapshot: {name} is not a JSON number")


def _shortened(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


def check_durations(raw: Any, where: str) -> None:
    """Every `*_ms` value in a trigger or sequence (delays, cooldowns, windows, waits) at
    most MAX_DURATION_MS; iterative."""
    stack: list[tuple[Any, str]] = [(raw, where)]
    while stack:
        item, path = stack.pop()
        if type(item) is dict:
            for key, inner in item.items():
                here = f"{path}.{key}"
                if type(key) is str and key.endswith("_ms"):
                    check(type(inner) not in (int, float) or inner <= MAX_DURATION_MS,
                          f"{here}: expected a duration of at most {MAX_DURATION_MS} ms "
                          "(ten years)")
                elif type(inner) in (dict, list):
                    stack.append((inner, here))
        elif type(item) is list:
            stack.extend((inner, f"{path}[{i}]") for i, inner in enumerate(item)
                         if type(inner) in (dict, list))
