"""What a trigger's conditions allow, as one interval per measured quantity.

A trigger's `when` is a conjunction, and each condition bounds one quantity (a signal, with
its window or target): `dwell >= 2s` and `dwell < 5s` allow dwell in [2s, 5s). Intersecting
the bounds per quantity, and with what the signal can take at all (scroll depth is 0..1),
answers the linter's questions exactly: can the conditions ever hold together, and does one
trigger's set of conditions imply another's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..rulepack import ConditionSpec
from ..rulepack.compiler import page_bucket

Quantity = tuple[str, int | None, str | None]  # signal, window_ms, target
INF = math.inf
# What each signal can be at all. Every one of them is 0 right after a page_view.
SIGNAL_RANGE = {"dwell": (0.0, INF), "scroll_depth": (0.0, 1.0), "scroll_velocity": (0.0, INF),
                "hover": (0.0, INF)}


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    excluded: frozenset[float] = frozenset()  # from `!=`

    def contains(self, x: float) -> bool:
        above = x > self.lo or (x == self.lo and not self.lo_open)
        below = x < self.hi or (x == self.hi and not self.hi_open)
        return above and below and x not in self.excluded

    def is_empty(self) -> bool:
        if self.lo > self.hi:
            return True
        if self.lo == self.hi:
            return self.lo_open or self.hi_open or self.lo in self.excluded
        return False

    def within(self, other: Interval) -> bool:
        """Every value this interval allows, `other` allows too."""
        if self.is_empty():
            return True
        lower = self.lo > other.lo or (self.lo == other.lo and (self.lo_open or not other.lo_open))
        upper = self.hi < other.hi or (self.hi == other.hi and (self.hi_open or not other.hi_open))
        return lower and upper and not any(self.contains(x) for x in other.excluded)

    def bounded_by(self, op: str, value: float) -> Interval:
        """This interval and `<op> value`."""
        if op in (">=", ">") and (value > self.lo or (value == self.lo and op == ">")):
            return replace(self, lo=value, lo_open=op == ">")
        if op in ("<=", "<") and (value < self.hi or (value == self.hi and op == "<")):
            return replace(self, hi=value, hi_open=op == "<")
        if op == "==":
            return self.bounded_by(">=", value).bounded_by("<=", value)
        if op == "!=":
            return replace(self, excluded=self.excluded | {value})
        return self


def quantity(cond: ConditionSpec) -> Quantity:
    return cond.signal, cond.window_ms, cond.target


def signal_range(signal: str) -> Interval:
    lo, hi = SIGNAL_RANGE.get(signal, (-INF, INF))
    return Interval(lo, hi)


def allowed(conds: Iterable[ConditionSpec]) -> dict[Quantity, Interval]:
    """The interval each quantity the conditions mention must fall in for all to hold."""
    out: dict[Quantity, Interval] = {}
    for cond in conds:
        key = quantity(cond)
        current = out.get(key) or signal_range(cond.signal)
        out[key] = current.bounded_by(cond.op, float(cond.value))
    return out


def impossible(conds: Iterable[ConditionSpec]) -> Quantity | None:
    """A quantity the conditions can never satisfy together, or None if they can hold."""
    for key, interval in allowed(conds).items():
        if interval.is_empty():
            return key
    return None


def implies(a: Iterable[ConditionSpec], b: Iterable[ConditionSpec]) -> bool:
    """Whenever all of `a` hold, all of `b` hold."""
    mine = allowed(a)
    return all(mine.get(key, signal_range(key[0])).within(interval)
               for key, interval in allowed(b).items())


def glob_covers(outer: str, inner: str) -> bool:
    """Every path `inner` matches, `outer` matches too.

    Matching `inner`'s text, stars and all, against `outer`'s pattern is exact for this:
    a star in `inner` can only be absorbed by a star in `outer`, which matches anything.
    """
    kind, key = page_bucket(outer)
    inner = re.sub(r"\*+", "*", inner)
    if kind == "any":
        return True
    if kind == "exact":
        return inner == key
    if kind == "prefix":
        return inner.startswith(key)
    return re.match(key, inner) is not None


def pages_cover(outer: Iterable[str], inner: Iterable[str]) -> bool:
    """Every page one trigger applies to (`inner`), the other (`outer`) applies to too."""
    outer = list(outer)
    return all(any(glob_covers(o, i) for o in outer) for i in inner)
