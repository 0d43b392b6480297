"""The checks a snapshot's JSON values pass before the core builds anything from them; each
refuses with a `SnapshotError` naming where the value sits."""

from __future__ import annotations

import math
from typing import Any

from .errors import SnapshotError


def check(cond: bool, message: str) -> None:
    """Refuse the snapshot with `message` unless `cond`."""
    if not cond:
        raise SnapshotError("invalid_snapshot", message)


def check_int(value: Any, where: str, minimum: int = 0) -> int:
    """An integer (not a bool) of at least `minimum`."""
    check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
          f"{where}: expected an integer >= {minimum}")
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

