"""Parsing the values a marketer writes: durations, ratios and plain numbers.

Each parser takes what YAML produced (a string, or a number in the mapping form) and
returns the normalised value or raises `ValueProblem` saying what was wrong and what to write.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from edge_module.core.snapshot_checks import MAX_DURATION_MS, MAX_NUMBER

DURATION_EXPECTED = "a duration such as 3s or 500ms"
# Durations at most ten years, numbers within +-(2^53 - 1): the snapshot loader's bounds
# (edge_module/core/snapshot_checks.py), so a moment the edge computes from them stays exact.
MAX_DURATION_HOURS = MAX_DURATION_MS // 3_600_000
DURATION_LIMIT = f"a duration of at most {MAX_DURATION_HOURS}h (ten years)"
SIGNED_EXPECTED = "a number such as 100 or -40"
RATIO_EXPECTED = "a fraction from 0 to 1 such as 0.78, or a percentage such as 78%"
NUMBER_EXPECTED = "a number >= 0"
COUNT_EXPECTED = "a whole number >= 0"
SCORE_EXPECTED = "a score from 0 to 1 such as 0.7"
PERCENT_EXPECTED = "a percentage from 0% to 100% such as 50%"
RECALL_EXPECTED = "a share above 0% and at most 100%, such as 95% (or a fraction such as 0.95)"

DURATION_PATTERN = r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)"  # also the editor schema's
_DURATION = re.compile(DURATION_PATTERN)
_LOOSE_DURATION = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]+)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_UNIT_ALIASES = {
    "msec": "ms", "msecs": "ms", "millisecond": "ms", "milliseconds": "ms",
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SHOWN = 40  # characters of a value a message repeats; longer ones are shortened


class ValueProblem(Exception):
    def __init__(self, message: str, expected: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.suggestion = suggestion


def is_number(value: object) -> bool:
    """A finite int or float; booleans are not numbers."""
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def parse_duration(raw: object) -> int:
    """`"3s"`, `"500ms"`, `"1.5s"`, `"2m"`, `"1h"` -> whole milliseconds."""
    if is_number(raw):
        raise ValueProblem(f"{raw} has no unit: a bare number is ambiguous, add a unit "
                           "(ms, s, m or h)", DURATION_EXPECTED)
    if not isinstance(raw, str):
        raise ValueProblem(f"{raw!r} is not a duration", DURATION_EXPECTED)
    text = raw.strip()
    match = _DURATION.fullmatch(text)
    if match is None:
        if _NUMBER.fullmatch(text) and not text.startswith("-"):
            raise ValueProblem(f"{raw!r} has no unit: a bare number is ambiguous, add a unit "
                               "(ms, s, m or h)", DURATION_EXPECTED)
        if text.startswith("-"):
            raise ValueProblem(f"{raw!r}: a duration cannot be negative", DURATION_EXPECTED)
        raise ValueProblem(f"{raw!r} is not a duration", DURATION_EXPECTED, _fix_unit(text))
    amount = match.group(1)
    # thousands of digits (past int()'s limit) are refused by their length, unread
    ms = Fraction(amount) * _UNIT_MS[match.group(2)] if len(amount) <= 40 else None
    if ms is None or ms > MAX_DURATION_MS:
        raise ValueProblem(f"{as_written(raw)} is longer than ten years", DURATION_LIMIT)
    if ms.denominator != 1:
        raise ValueProblem(f"{raw!r} is not a whole number of milliseconds", DURATION_EXPECTED)
    return int(ms)


def as_written(raw: object) -> str:
    """`raw` as a message repeats it: quoted, and shortened past _SHOWN characters."""
    text = repr(raw)
    if len(text) <= _SHOWN:
        return text
    return f"{text[:_SHOWN - 12]}...{text[-8:]} ({len(str(raw))} characters)"


def _fix_unit(text: str) -> str | None:
    loose = _LOOSE_DURATION.fullmatch(text)
    if loose is None:
        return None
    unit = loose.group(2).lower()
    unit = _UNIT_ALIASES.get(unit, unit)
    return f"{loose.group(1)}{unit}" if unit in _UNIT_MS else None


def parse_number(raw: object) -> int | float:
    """A finite number >= 0, from YAML or from the text of a shorthand condition."""
    value = _number(raw, NUMBER_EXPECTED)
    if value < 0:
        raise ValueProblem(f"{raw} is negative", NUMBER_EXPECTED)
    return value


def parse_signed(raw: object) -> int | float:
    """A finite number of either sign (a px position: `scroll.y`, `mousemove.x`)."""
    return _number(raw, SIGNED_EXPECTED)


def parse_ratio(raw: object) -> int | float:
    """`0.78` or `"78%"` -> a fraction of 1, in [0, 1]."""
    if isinstance(raw, str) and raw.strip().endswith("%"):
        percent = _number(raw.strip()[:-1].strip(), RATIO_EXPECTED, shown=raw)
        if not 0 <= percent <= 100:
            raise ValueProblem(f"{raw!r} is outside 0% to 100%", RATIO_EXPECTED)
        return percent / 100
    value = _number(raw, RATIO_EXPECTED)
    if not 0 <= value <= 1:
        # 78 was probably meant as 78%; 1.4 is anyone's guess.
        hint = f"{int(value)}%" if 1 < value <= 100 and value == int(value) else None
        raise ValueProblem(f"{raw} is outside 0 to 1", RATIO_EXPECTED, hint)
    return value


def _number(raw: object, expected: str, shown: object = None) -> int | float:
    written = raw if shown is None else shown
    value = number_value(raw)
    if value is None:
        if isinstance(raw, str) and _NUMBER.fullmatch(raw.strip()):
            raise ValueProblem(f"{as_written(written)} is too large", _at_most(expected))
        raise ValueProblem(f"{as_written(written)} is not a number", expected)
    if not -MAX_NUMBER <= value <= MAX_NUMBER:
        raise ValueProblem(f"{as_written(written)} is too large", _at_most(expected))
    return value


def number_value(raw: object) -> int | float | None:
    """A finite number, or its text as written (`1e-9`, which YAML 1.1 reads as a string;
    `"-40"`); None for anything else, and for numbers past what Python reads (1e400,
    thousands of digits)."""
    if is_number(raw):
        return raw  # type: ignore[return-value]
    if not isinstance(raw, str) or not _NUMBER.fullmatch(raw.strip()):
        return None
    text = raw.strip()
    try:
        value: int | float = int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:  # past int()'s 4300 digits
        return None
    return value if is_number(value) else None


def _at_most(expected: str) -> str:
    return f"{expected}, at most {MAX_NUMBER} (2^53 - 1)"


def parse_count(raw: object) -> int:
    """A whole number >= 0: `3` or `"3"` (pages seen, events counted)."""
    value = _number(raw, COUNT_EXPECTED)
    if value < 0:
        raise ValueProblem(f"{raw} is negative", COUNT_EXPECTED)
    if value != int(value):
        raise ValueProblem(f"{raw} is not a whole number", COUNT_EXPECTED)
    return int(value)


def parse_bounded(raw: object, high: float, expected: str) -> int | float:
    """A number from 0 to `high` (mouse entropy: 0..3 bits)."""
    value = _number(raw, expected)
    if not 0 <= value <= high:
        raise ValueProblem(f"{raw} is outside 0 to {high:g}", expected)
    return value


def parse_score(raw: object) -> int | float:
    """An intent score: `0.7` (or `"70%"`), in [0, 1]."""
    try:
        return parse_ratio(raw)
    except ValueProblem as exc:
        raise ValueProblem(exc.message.replace("outside 0 to 1", "outside 0 to 1 (a score)"),
                           SCORE_EXPECTED, exc.suggestion) from None


def parse_percent(raw: object) -> int | float:
    """`"50%"` -> 50 (a percentage of sessions); a bare number is ambiguous and refused."""
    if is_number(raw):
        value = float(raw)  # type: ignore[arg-type]
        meant = value * 100 if 0 < value < 1 else value
        hint = f"{meant:g}%" if 0 <= meant <= 100 else None
        raise ValueProblem(f"{raw} has no % sign: write the share of sessions as a percentage",
                           PERCENT_EXPECTED, hint)
    if not isinstance(raw, str) or not raw.strip().endswith("%"):
        raise ValueProblem(f"{raw!r} is not a percentage", PERCENT_EXPECTED)
    percent = _number(raw.strip()[:-1].strip(), PERCENT_EXPECTED, shown=raw)
    if not 0 <= percent <= 100:
        raise ValueProblem(f"{raw!r} is outside 0% to 100%", PERCENT_EXPECTED)
    return int(percent) if percent == int(percent) else percent


def parse_recall(raw: object) -> float:
    """A recall target: `"95%"` or `0.95` -> 0.95, above 0 and at most 1."""
    try:
        value = parse_ratio(raw)
    except ValueProblem as exc:
        raise ValueProblem(exc.message, RECALL_EXPECTED, exc.suggestion) from None
    if value == 0:
        # Catching none of the sessions it protects is no target: the loop would switch it off.
        raise ValueProblem(f"{raw!r} is no recall target: it must be above 0%", RECALL_EXPECTED)
    return float(value)


def parse_share(raw: object, high: float, expected: str) -> int | float:
    """`parse_percent` with a smaller upper bound: `"5%"` -> 5, refused above `high`."""
    try:
        value = parse_percent(raw)
    except ValueProblem as exc:
        raise ValueProblem(exc.message, expected, exc.suggestion) from None
    if value > high:
        raise ValueProblem(f"{raw!r} is above {high:g}%", expected, f"{high:g}%")
    return value
