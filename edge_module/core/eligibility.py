"""Whether a trigger may fire at a moment: caps, cooldown, segment, journey window, rollout
and holdout, then its conditions."""

from __future__ import annotations

from typing import Any

from .conditions import Ctx, all_hold, bucket
from .session import FIRES, LAST_FIRED, PAGE_FIRES, PAGE_PV, Session
from .snapshot import Trigger


def in_rollout(trig: Trigger, ctx: Ctx) -> bool:
    return trig.rollout >= 100 or bucket(ctx.session_id, trig.id, trig.salt) < trig.rollout


def held_out(trig: Trigger, ctx: Ctx) -> bool:
    return trig.holdout > 0 and \
        bucket(ctx.session_id, trig.id, trig.salt + "\x1fholdout") < trig.holdout


def journey_end(trig: Trigger, sess: Session, ctx: Ctx) -> int | None:
    if trig.journey_ms is None:
        return None
    within = ctx.in_segment(trig.journey_by_segment)
    if within is None:
        within = trig.journey_ms
    return int(sess.start_ms + within)


def capped(trig: Trigger, sess: Session, rec: list[Any] | None) -> bool:
    """The per-session or per-page cap is reached: only a new page (or session) lifts it."""
    if rec is None:
        return False
    if trig.per_session is not None and rec[FIRES] >= trig.per_session:
        return True
    return trig.per_page is not None and rec[PAGE_PV] == sess.pv and \
        rec[PAGE_FIRES] >= trig.per_page


def allowed(trig: Trigger, sess: Session, ctx: Ctx, t: int) -> bool:
    """Caps, cooldown, segment, journey window and rollout let `trig` fire at `t`."""
    rec = sess.fired.get(trig.id)
    if rec is not None:
        if capped(trig, sess, rec):
            return False
        if trig.cooldown_ms and rec[LAST_FIRED] is not None and t < rec[LAST_FIRED] + trig.cooldown_ms:
            return False
    if trig.segment is not None and trig.segment not in ctx.segments:
        return False
    if trig.journey_ms is not None:
        end = journey_end(trig, sess, ctx)
        if end is not None and t > end:
            return False
    return trig.rollout >= 100 or in_rollout(trig, ctx)


def fires(trig: Trigger, sess: Session, ctx: Ctx, t: int) -> bool:
    if trig.plain and trig.id not in sess.fired:  # nothing can hold it back
        return all_hold(trig.conditions, sess, ctx, t, trig.id)
    return allowed(trig, sess, ctx, t) and all_hold(trig.conditions, sess, ctx, t, trig.id)


__all__ = ["allowed", "capped", "fires", "held_out"]
