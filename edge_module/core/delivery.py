"""Which of the triggers that fired in one decision are delivered, and what that costs.

Order: highest priority first (then higher intent, then earlier trigger). A trigger in a
holdout is recorded as fired but withheld; one mutually exclusive group yields one
action; the session's fatigue budget (per session, per minute, quiet after a dismiss)
and the per-decision maximum cut the rest, which stay eligible for a later decision.
Actions on every channel (page, push, email, webhook) spend one budget unless the
snapshot gives each channel its own (`fatigue.channels: separate`; the page's quiet
period after a dismiss then holds only the page).
"""

from __future__ import annotations

from typing import Any, Callable

from .conditions import Ctx
from .content import choose, locale_parts
from .eligibility import held_out
from .session import FIRES, LAST_FIRED, PAGE_FIRES, PAGE_PV, Session
from .snapshot import Snapshot, Trigger


def record(sess: Session, trig: Trigger, t: int) -> None:
    rec = sess.fired.get(trig.id)
    if rec is None:
        sess.fired[trig.id] = [1, t, 1, sess.pv]
    elif rec[PAGE_PV] == sess.pv:
        rec[FIRES] += 1
        rec[LAST_FIRED] = t
        rec[PAGE_FIRES] += 1
    else:
        rec[FIRES] += 1
        rec[LAST_FIRED] = t
        rec[PAGE_FIRES] = 1
        rec[PAGE_PV] = sess.pv


def action_of(trig: Trigger, delay_ms: int) -> dict[str, Any]:
    action = {"trigger": trig.id, "content": trig.content, "tier": trig.tier,
              "delay_ms": delay_ms, "priority": trig.priority}
    if trig.channel != "page":
        action["channel"] = trig.channel
        if trig.template is not None:
            action["template"] = trig.template
    return action


def _budget_key(snap: Snapshot, trig: Trigger) -> str:
    """Whose fatigue budget a delivery spends: the visitor's one budget, or its channel's."""
    return trig.channel if snap.fatigue_separate and trig.channel != "page" else ""


def _spent(sess: Session, key: str) -> tuple[int, list[int]]:
    """(nudges delivered in the session, when the recent ones were) for a budget."""
    if not key:
        return sess.delivered_total, sess.delivered
    spent = sess.channel_spent.get(key)
    return (spent[0], spent[1]) if spent is not None else (0, [])


def _spend(sess: Session, key: str, now: int) -> None:
    if not key:
        sess.delivered.append(now)
        sess.delivered_total += 1
        return
    spent = sess.channel_spent.get(key)
    if spent is None:
        sess.channel_spent[key] = [1, [now]]
    else:
        spent[0] += 1
        spent[1].append(now)


class Fired:
    __slots__ = ("trigger", "action", "on_keep", "intent")

    def __init__(self, trigger: Trigger, action: dict[str, Any],
                 on_keep: Callable[[], None] | None) -> None:
        self.trigger = trigger
        self.action = action
        self.on_keep = on_keep
        self.intent = 0.0


class Decision:
    """The triggers fired in one decision, with what firing them changed (to undo)."""

    __slots__ = ("fired", "before", "crowded", "suppressed", "fatigue_until")

    def __init__(self) -> None:
        self.fired: list[Fired] = []
        self.before: dict[str, list[Any] | None] = {}
        self.crowded = False  # something due now waits for the next call
        self.suppressed: list[dict[str, str]] = []
        self.fatigue_until: int | None = None  # when the fatigue budget frees up again

    def fire(self, sess: Session, trig: Trigger, t: int, action: dict[str, Any],
             on_keep: Callable[[], None] | None = None) -> None:
        if trig.id not in self.before:
            rec = sess.fired.get(trig.id)
            self.before[trig.id] = None if rec is None else rec.copy()
        record(sess, trig, t)
        if trig.channel != "page":  # leaves now; the edge host's timer sends it when due
            action["send_at_ms"] = t + trig.delay_ms
            # which firing this is: the same state replayed fires "again" with the same
            # value, so the host's idempotency key collapses the copies
            action["firing"] = f"{sess.start_ms}.{sess.fired[trig.id][FIRES]}"
        self.fired.append(Fired(trig, action, on_keep))

    def _undo(self, sess: Session, item: Fired, kept: set[str]) -> None:
        trig = item.trigger
        if trig.id not in kept:
            prev = self.before[trig.id]
            if prev is None:
                sess.fired.pop(trig.id, None)
            else:
                sess.fired[trig.id] = prev
        if "due_ms" in item.action:  # a queued action stays queued
            sess.queue.append([item.action["due_ms"], trig.id])
            sess.queue.sort()
            self.crowded = True
        elif trig.on_key is None:  # a state trigger or sequence step still holds next call
            self.crowded = True

    def take(self, snap: Snapshot, sess: Session, ctx: Ctx, now: int) -> list[dict[str, Any]]:
        """The actions delivered; the others are un-fired (or withheld, for holdouts)."""
        items = self.fired
        if not items:
            return []
        if len(items) > 1:
            if snap.intent is not None or snap.intent_by_trigger:
                for item in items:
                    item.intent = ctx.intent(item.trigger.id, sess, now)
            items.sort(key=lambda f: (-f.trigger.priority, -f.intent, f.trigger.index))
        quiet_until = sess.dismissed + snap.quiet_after_dismiss_ms \
            if snap.quiet_after_dismiss_ms and sess.dismissed >= 0 else -1
        budgeted = quiet_until >= 0 or snap.fatigue_per_session is not None or \
            snap.fatigue_per_minute is not None
        budgets: dict[str, list[Any]] = {}  # budget key -> [total, recent, counted]
        delivered: list[Fired] = []
        dropped: list[Fired] = []
        groups: set[str] = set()
        counted = 0  # toward the per-decision maximum, whatever the channel
        for item in items:
            trig = item.trigger
            if ctx.arm == "holdout" or (trig.holdout > 0 and held_out(trig, ctx)):
                reason = "experiment_holdout" if ctx.arm == "holdout" else "holdout"
                self.suppressed.append({"trigger": trig.id, "reason": reason})
                if item.on_keep is not None:
                    item.on_keep()
                continue
            if trig.group is not None and trig.group in groups:
                dropped.append(item)
                continue
            if trig.tier != "predictive":
                key = _budget_key(snap, trig)
                budget = budgets.get(key)
                if budget is None:
                    total, times = _spent(sess, key) if budgeted else (0, [])
                    budget = budgets[key] = [total, [t for t in times if t > now - 60_000], 0]
                # a dismiss on the page quiets the channels that share its budget
                quiet = quiet_until if not key else -1
                blocked_until = self._fatigue(snap, budget[0], now, quiet, budget[1],
                                              budget[2]) if budgeted else None
                if blocked_until is not None:
                    self.fatigue_until = blocked_until if self.fatigue_until is None else \
                        min(self.fatigue_until, blocked_until)
                    dropped.append(item)
                    continue
                if counted >= snap.max_actions:
                    dropped.append(item)
                    continue
                counted += 1
                budget[2] += 1
            if trig.group is not None:
                groups.add(trig.group)
            delivered.append(item)
        kept = {item.trigger.id for item in delivered}
        for item in dropped:
            self._undo(sess, item, kept)
        if self.fatigue_until is not None:
            self.crowded = False  # waiting for the budget, not for the next call
        out = []
        content = snap.content
        locale: tuple[str, ...] | None = None
        for item in delivered:
            if item.on_keep is not None:
                item.on_keep()
            if item.trigger.tier != "predictive" and (snap.fatigue_per_minute or
                                                      snap.fatigue_per_session):
                _spend(sess, _budget_key(snap, item.trigger), now)
            entry = content.get(item.trigger.content) if content else None
            if entry is not None:
                if locale is None:
                    locale = locale_parts(ctx.context.get("locale")) or ()
                name, fields = choose(entry, ctx.context.get("device"), locale, ctx.arm)
                item.action["variant"] = {"name": name, "fields": dict(fields)}
            out.append(item.action)
        return out

    @staticmethod
    def _fatigue(snap: Snapshot, total: int, now: int, quiet_until: int,
                 recent: list[int], counted: int) -> int | None:
        """None if the budget allows one more nudge now, else when it might again."""
        if quiet_until > now:
            return quiet_until
        if snap.fatigue_per_session is not None and \
                total + counted >= snap.fatigue_per_session:
            return -1  # spent for the session
        if snap.fatigue_per_minute is not None and \
                len(recent) + counted >= snap.fatigue_per_minute:
            return (recent[0] + 60_000) if recent else now + 60_000
        return None
