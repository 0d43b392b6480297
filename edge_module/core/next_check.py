"""When time alone makes a trigger fire: the `next_check_ms` a decision announces."""

from __future__ import annotations

import math
from typing import Any

from .catalog import CHANGING, FALLING, RISING, SIGNALS
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
    SIGNAL_CODES,
    SINCE,
    Condition,
    Sustained,
    Trigger,
)

HORIZON_MS = 24 * 3600 * 1000  # moments further away are not announced in next_check_ms
_AGGREGATES = frozenset((MIN, MAX, AVG))
_FALLING_SIGNALS = frozenset(SIGNAL_CODES[s.name] for s in SIGNALS.values()
                             if s.drift == FALLING)


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
    waiting: list[Any] = []  # changing conditions false now
    for c in trig.by_motion:  # steady ones first: the cheapest way to find "never"
        motion = c.motion
        if motion == RISING:
            first = first_true(c, sess, ctx, now, trig.id)
            if first is None:
                return None
            at = max(at, first)
        elif motion == CHANGING:
            if not holds(c, sess, ctx, now, trig.id):
                points = sorted(_change_points(c, sess, ctx, now))
                if points:  # its value moves only at its own points: none before the first
                    # at which it holds (none: never, absent new events)
                    first = next((p for p in points if p > now
                                  and holds(c, sess, ctx, p, trig.id)), None)
                    if first is None:
                        return None
                    at = max(at, first)
                changes.extend(points)
                waiting.append(c)
        elif not holds(c, sess, ctx, now, trig.id):
            return None  # steady or falling: false now, false until new events
    horizon = now + HORIZON_MS
    # At each moment the conditions false now are checked first: most moments fail there,
    # before the others are (a review's 32 windowed conditions took 240 ms natively, past
    # the component's deadline, evaluating every condition at each of 2,000 moments).
    for t in sorted({at, *(m for m in changes if m > at)}):
        if t > horizon:
            break
        if waiting and not all_hold(waiting, sess, ctx, t, trig.id):
            continue
        if fires(trig, sess, ctx, t):
            return t
    return None


def _change_points(c: Any, sess: Session, ctx: Ctx, now: int) -> list[int]:
    """Moments after `now` at which a changing condition may start to hold, absent events
    (`fires` checks each): samples leaving a window, or an equality on a signal time
    moves (`session_time == 5s`, `dwell != 5s`, `count == 0`: each was announced as never,
    yet a call at that moment fired)."""
    if type(c) is not Condition:
        return []
    s = c.signal
    if s == MOUSE_ENTROPY:
        return sess.change_points(now, c.window_ms, sess.mouse)
    if s in _AGGREGATES:
        return sess.change_points(now, c.window_ms, sess.fields.get(c.field or "", []))
    if s in RISING_SIGNALS:  # == or != on a value growing by 1 per ms
        if c.mode == "hybrid":
            return []  # the anomaly test makes the moment unknowable here
        base = _rising_base(c, sess, now)
        if base is None:
            return []
        crossing = base + ctx.threshold(c)
        return [math.ceil(crossing), math.floor(crossing) + 1]
    if s in _FALLING_SIGNALS:  # == or != on a value stepping down
        return _falling_steps(c, sess, now)
    return []  # intent: re-evaluated at each decision, not predicted


def _rising_base(c: Condition, sess: Session, now: int) -> int | None:
    """The moment from which a rising signal's value counts (value(t) = t - base), or None
    when it has none now (no such event yet, or the awaited one came)."""
    s = c.signal
    if s == DWELL:
        return sess.pv
    if s == SESSION_TIME:
        return sess.start_ms
    if s == SINCE:
        return sess.last(c.event or "", now)
    began = sess.last(c.after or "", now)
    seen = sess.last(c.event or "", now)
    return None if began is None or (seen is not None and seen >= began) else began


def _falling_steps(c: Condition, sess: Session, now: int) -> list[int]:
    """The moments after `now` at which a falling signal steps down: an event or a scroll
    sample leaving its window."""
    if c.signal == COUNT:
        return sorted({int(ts) + c.window_ms for ts in sess.tracked.get(c.event or "", ())
                       if ts + c.window_ms > now})
    return sorted({int(ts) + c.window_ms for ts, _y in sess.samples
                   if ts + c.window_ms > now})


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
        base = _rising_base(c, sess, now)
        if base is None:
            return None
        # value(t) = t - base grows by 1 per ms: where the comparison starts to hold
        crossing = base + threshold
        return math.floor(crossing) + 1 if c.op == ">" else math.ceil(crossing)
    # Falling signals (velocity, spikes, counts): they step down as samples leave the
    # window; search those moments for the first at which the condition holds.
    steps = _falling_steps(c, sess, now)
    lo, hi = 0, len(steps)
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(c, sess, ctx, steps[mid], trigger_id):
            hi = mid
        else:
            lo = mid + 1
    return steps[lo] if lo < len(steps) else None


__all__ = ["next_fire"]
