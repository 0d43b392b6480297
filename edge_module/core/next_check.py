"""When time alone makes a trigger fire: the `next_check_ms` a decision announces."""

from __future__ import annotations

import math
from typing import Any

from .catalog import CHANGING, RISING
from .conditions import Ctx, all_hold, holds
from .eligibility import capped, fires
from .session import LAST_FIRED, Session
from .snapshot import (
    AVG,
    COUNT,
    DWELL,
    MAX,
    MIN,
    MOUSE_ENTROPY,
    RISING_SIGNALS,
    SESSION_TIME,
    SINCE,
    Condition,
    Sustained,
    Trigger,
)

HORIZON_MS = 24 * 3600 * 1000  # moments further away are not announced in next_check_ms
_AGGREGATES = frozenset((MIN, MAX, AVG))


def next_fire(trig: Trigger, sess: Session, ctx: Ctx, now: int,
              not_before: int | None = None) -> int | None:
    """Earliest t > now (and >= not_before) at which `trig` fires if no event arrives.

    Time alone only moves some signals, each in one direction: a `rising` condition,
    once true, stays true; a `falling` or steady one can only stop holding; a `changing`
    one can move either way, but only at known moments (samples leaving its window). So
    the answer is the latest first-true moment of the rising conditions, or the first
    change moment after it at which everything holds.
    """
    rec = sess.fired.get(trig.id)
    at = now + 1 if not_before is None else max(now + 1, not_before)
    if capped(trig, sess, rec):
        return None
    if rec is not None and trig.cooldown_ms and rec[LAST_FIRED] is not None:
        at = max(at, rec[LAST_FIRED] + trig.cooldown_ms)
    if trig.consecutive > 1 and sess.streaks.get(trig.id, 0) < trig.consecutive:
        return None  # only events can build the streak
    changes: list[int] = []
    for c in trig.by_motion:  # steady ones first: the cheapest way to find "never"
        motion = c.motion
        if motion == RISING:
            first = first_true(c, sess, ctx, now, trig.id)
            if first is None:
                return None
            at = max(at, first)
        elif motion == CHANGING:
            if not holds(c, sess, ctx, now, trig.id):
                changes.extend(_change_points(c, sess, now))
        elif not holds(c, sess, ctx, now, trig.id):
            return None  # steady or falling: false now, false until new events
    horizon = now + HORIZON_MS
    for t in sorted({at, *(m for m in changes if m > at)}):
        if t > horizon:
            break
        if fires(trig, sess, ctx, t):
            return t
    return None


def _change_points(c: Any, sess: Session, now: int) -> list[int]:
    if type(c) is not Condition:
        return []
    if c.signal == MOUSE_ENTROPY:
        return sess.change_points(now, c.window_ms, sess.mouse)
    if c.signal in _AGGREGATES:
        return sess.change_points(now, c.window_ms, sess.fields.get(c.field or "", []))
    if c.signal == DWELL and c.op == "==":
        return [int(sess.pv + c.value)]
    return []  # intent: re-evaluated at each decision, not predicted


def first_true(c: Any, sess: Session, ctx: Ctx, now: int, trigger_id: str) -> int | None:
    """The first moment >= now at which a rising condition holds, absent new events."""
    if holds(c, sess, ctx, now, trigger_id):
        return now
    if type(c) is Sustained:
        since = sess.sustained.get(c.key)
        if since is None or not all_hold(c.inner, sess, ctx, now, trigger_id):
            return None
        return int(since + c.for_ms)
    if type(c) is not Condition:
        return None
    s = c.signal
    threshold = ctx.threshold(c)
    if s in RISING_SIGNALS:
        if c.mode == "hybrid":
            return None  # the anomaly test makes the crossing moment unknowable here
        if s == DWELL:
            base: int | None = sess.pv
        elif s == SESSION_TIME:
            base = sess.start_ms
        elif s == SINCE:
            base = sess.last(c.event or "", now)
        else:
            began = sess.last(c.after or "", now)
            seen = sess.last(c.event or "", now)
            base = None if began is None or (seen is not None and seen >= began) else began
        if base is None:
            return None
        # value(t) = t - base grows by 1 per ms: where the comparison starts to hold
        crossing = base + threshold
        return math.floor(crossing) + 1 if c.op == ">" else math.ceil(crossing)
    # Falling signals (velocity, spikes, counts): they step down as samples leave the
    # window; search those moments for the first at which the condition holds.
    if s == COUNT:
        steps = sorted({int(ts) + c.window_ms for ts in sess.tracked.get(c.event or "", ())
                        if ts + c.window_ms > now})
    else:
        steps = sorted({int(ts) + c.window_ms for ts, _y in sess.samples
                        if ts + c.window_ms > now})
    lo, hi = 0, len(steps)
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(c, sess, ctx, steps[mid], trigger_id):
            hi = mid
        else:
            lo = mid + 1
    return steps[lo] if lo < len(steps) else None


__all__ = ["next_fire"]
