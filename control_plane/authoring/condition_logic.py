"""What a trigger's conditions allow, as one interval per measured quantity.

A trigger's `when` is a conjunction, and each static signal condition bounds one quantity
(a signal, with its parameters): `dwell >= 2s` and `dwell < 5s` allow dwell in [2s, 5s).
Intersecting the bounds per quantity, and with what the signal can take at all (scroll
depth is 0..1), answers the linter's questions exactly for those conditions: can they ever
hold together, and does one trigger's set of conditions imply another's.

Other conditions (context, segments, sustained, per-segment, adaptive or hybrid thresholds)
are not reasoned about: they never make a trigger look dead, and one trigger implies
another's only if it has each of them too, written alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from edge_module.core.catalog import AGGREGATE_FIELDS, SIGNALS
from edge_module.core.globs import glob_match, normalize

from ..rulepack.compiler import page_bucket
from ..rulepack.validated import ConditionSpec, EventFilter
from ..rulepack.vocabulary import KIND_MAX

# signal, window_ms, target, baseline, event, after, field
Quantity = tuple[str, int | None, str | None, str | None, EventFilter | None,
                 EventFilter | None, str | None]
INF = math.inf
# Signals that start again from 0 at every page_view.
PAGE_RESET = tuple(name for name, spec in SIGNALS.items() if spec.per_page)


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
    return (cond.signal, cond.window_ms, cond.target, cond.baseline, cond.event, cond.after,
            cond.field)


def is_bound(cond: object) -> bool:
    """A condition this module reasons about: a signal against one fixed threshold."""
    return isinstance(cond, ConditionSpec) and cond.mode == "static" and not cond.by_segment


def bounds(conds: Iterable[object]) -> list[ConditionSpec]:
    return [c for c in conds if isinstance(c, ConditionSpec) and is_bound(c)]


def signal_range(key: Quantity) -> Interval:
    signal, field = key[0], key[6]
    if field is not None and field not in AGGREGATE_FIELDS:
        return Interval(-INF, INF)
    kind = SIGNALS[signal].kind if field is None else AGGREGATE_FIELDS[field]
    return Interval(0.0, float(KIND_MAX.get(kind, INF)))


def allowed(conds: Iterable[object]) -> dict[Quantity, Interval]:
    """The interval each quantity the conditions bound must fall in for all to hold."""
    out: dict[Quantity, Interval] = {}
    for cond in bounds(conds):
        key = quantity(cond)
        current = out.get(key) or signal_range(key)
        out[key] = current.bounded_by(cond.op, float(cond.value))
    return out


def impossible(conds: Iterable[object]) -> Quantity | None:
    """A quantity the conditions can never satisfy together, or None if they may hold."""
    for key, interval in allowed(conds).items():
        if interval.is_empty():
            return key
    return None


def implies(a: Iterable[object], b: Iterable[object]) -> bool:
    """Whenever all of `a` hold, all of `b` hold (as far as can be told); anything but a
    `Condition` (a trigger's segment, its journey) must be in both, alike."""
    a, b = list(a), list(b)
    others = [c for c in a if not is_bound(c)]
    if any(c not in others for c in b if not is_bound(c)):
        return False
    mine = allowed(a)
    return all(mine.get(key, signal_range(key)).within(interval)
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
    return glob_match(key, inner)


def globs_meet(a: str, b: str) -> bool:
    """Some path matches both globs. Without a star, a glob is its one path; with stars in
    both, a path made of the longer head, every middle part of each, and the longer tail
    matches both whenever the heads and the tails agree."""
    a, b = normalize(a), normalize(b)
    if "*" not in a:
        return glob_match(b, a)
    if "*" not in b:
        return glob_match(a, b)
    a_parts, b_parts = a.split("*"), b.split("*")
    heads = sorted((a_parts[0], b_parts[0]), key=len)
    tails = sorted((a_parts[-1], b_parts[-1]), key=len)
    return heads[1].startswith(heads[0]) and tails[1].endswith(tails[0])


def pages_meet(one: Iterable[str], other: Iterable[str]) -> bool:
    """Some path both triggers apply to."""
    other = list(other)
    return any(globs_meet(a, b) for a in one for b in other)


def pages_cover(outer: Iterable[str], inner: Iterable[str]) -> bool:
    """Every page one trigger applies to (`inner`), the other (`outer`) applies to too."""
    outer = list(outer)
    return all(any(glob_covers(o, i) for o in outer) for i in inner)
