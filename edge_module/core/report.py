"""What a decision saw, for the decision log only (issue #12, contract A).

Per state trigger of the page that is not capped: the values its signal conditions
measured, the intent score, the session's slice (learned, explore or holdout), whether it
holds, and the probability that it is shown under the randomisation (`p_fire`), so the
control plane can weight outcomes by propensity.
"""

from __future__ import annotations

import math
from typing import Any

from .conditions import Ctx, all_hold, measure
from .eligibility import capped, held_out
from .features import session_vector
from .session import Session
from .snapshot import INTENT, PageScope, Trigger


def _number(value: Any) -> float | int | None:
    if value is None or (type(value) is float and not math.isfinite(value)):
        return None
    return value  # type: ignore[no-any-return]


def trigger_report(trig: Trigger, sess: Session, ctx: Ctx, now: int) -> dict[str, Any]:
    """One trigger's entry of `report.triggers` at `now`."""
    tid = trig.id
    values = {c.key: _number(measure(c, sess, ctx, now, tid)) for c in trig.signals}
    entry: dict[str, Any] = {"values": values}
    if trig.has_intent:
        first = next(c for c in trig.signals if c.signal == INTENT)
        entry["intent"] = _number(ctx.intent_of(first, tid, sess, now))
    exploring = ctx.arm == "static" or ctx.exploring(tid, trig.salt, trig.explore)
    held = ctx.arm == "holdout" or held_out(trig, ctx)
    entry["policy"] = "holdout" if held else "explore" if exploring else "learned"
    holds = all_hold(trig.conditions, sess, ctx, now, tid)
    entry["holds"] = holds
    if trig.explore > 0 and any(c.mode == "adaptive" for c in trig.signals):
        # both rules, whatever this session's slice: the propensity needs them
        ctx.force = "learned"
        try:
            learned = all_hold(trig.conditions, sess, ctx, now, tid)
            ctx.force = "static"
            static = all_hold(trig.conditions, sess, ctx, now, tid)
        finally:
            ctx.force = None
    else:
        learned = static = holds
    explore = trig.explore / 100.0
    entry["p_fire"] = (1.0 - trig.holdout / 100.0) * (
        (1.0 - explore) * learned + explore * static)
    return entry


def decision_report(scope: PageScope, sess: Session, ctx: Ctx, now: int) -> dict[str, Any]:
    """`report`: the session vector and the page's uncapped state triggers at `now`."""
    fired = sess.fired
    triggers = {}
    for trig in scope.state_triggers:
        rec = fired.get(trig.id)
        if rec is not None and capped(trig, sess, rec):
            continue
        triggers[trig.id] = trigger_report(trig, sess, ctx, now)
    return {"session": session_vector(sess, now), "triggers": triggers}
