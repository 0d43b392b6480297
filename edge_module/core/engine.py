"""The decision: from a snapshot, a request and the session so far, to actions.

Semantics:
- Events are applied in timestamp order. Each applied event is an evaluation moment:
  `sustained` conditions and `consecutive` streaks are observed, and a trigger with `on:`
  fires at a matching event, its conditions read as of that moment. Other (state)
  triggers, and sequence steps, are evaluated at the request's `now_ms`, after all events.
- `queued` actions wait in the session until due and are delivered by the first decision
  at or after that moment, if the visitor is still on a page the trigger covers.
- What fired is then filtered (`delivery`): holdouts, exclusive groups, fatigue budget,
  the per-decision maximum.
- `next_check_ms` is the earliest moment, absent new events, at which a trigger or a
  sequence step can fire or a queued action falls due: a client that calls back then is
  served on time.

The request's events and context are checked and applied by `request_input`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .catalog import DEFAULT_VELOCITY_WINDOW_MS
from .conditions import Ctx, all_hold, observe
from .delivery import Decision, action_of
from .eligibility import allowed, capped, fires
from .next_check import next_fire
from .report import decision_report
from .request_input import (
    MAX_SESSION_ID,
    MAX_TIME_MS,
    apply_event,
    is_number,
    order_events,
    refuse,
    request_context,
)
from .session import MAX_SESSION_BYTES, Session
from .snapshot import PageScope, Sequence, Snapshot, Trigger, event_keys
from .urls import url_path


def observe_event(snap: Snapshot, sess: Session, ctx: Ctx, ts: int, etype: str,
                  ev: dict[str, Any], sustained: Any, streaks: Any) -> None:
    """What an applied event is watched for besides signals: tracked filters and sequence
    starts, form-field aggregates, sustained conditions, sequence steps and streaks (the
    page's `sustained` and `streaks`). The engine and the decision plans both call it."""
    if snap.tracked and etype in snap.tracked_types:  # most events match no filter at all
        for key in event_keys(etype, ev.get("name"), ev.get("target")):
            keep = snap.tracked.get(key)
            if keep is not None:
                sess.track(key, ts, keep)
        if snap.sequences:
            _sequence_events(snap, sess, ts, etype, ev)
    if snap.agg_fields:
        _fields(snap, sess, ts, etype, ev)
    if sustained:
        observe(sustained, sess, ctx, ts)
    if snap.sequences and sess.sequences:
        _observe_steps(snap, sess, ctx, ts)
    if streaks:
        for trig in streaks:
            _streak(sess, trig, ctx, ts)


def fire_on_event(dec: Decision, sess: Session, ctx: Ctx, hits: Any, ev: dict[str, Any],
                  ts: int) -> None:
    """The triggers waiting for this event (`hits`) that fire at it, read as of `ts`."""
    for trig in hits:
        if trig.on_target is not None and ev.get("target") != trig.on_target:
            continue
        if trig.consecutive > 1 and not _streak(sess, trig, ctx, ts):
            continue
        if fires(trig, sess, ctx, ts):
            sess.streaks.pop(trig.id, None)
            _fire_or_queue(dec, sess, trig, ts)


def _queue(sess: Session, trig: Trigger, t: int) -> None:
    for entry in sess.queue:
        if entry[1] == trig.id:
            return  # one pending delivery per trigger
    sess.queue.append([t + trig.delay_ms, trig.id])
    sess.queue.sort()


def _fire_or_queue(dec: Decision, sess: Session, trig: Trigger, t: int) -> None:
    if trig.tier == "queued" and trig.delay_ms > 0 and trig.channel == "page":
        _queue(sess, trig, t)
    else:
        dec.fire(sess, trig, t, action_of(trig, trig.delay_ms))


def decide(snap: Snapshot, request: Any, state: Any, host_now_ms: Any = None,
           report: bool = False) -> dict[str, Any]:
    """One decision. Returns the response fields and the session's new `state`, and
    `report` (what it saw, for the decision log) when the snapshot or `report` asks.

    `state` is consumed: pass the state a previous decision returned (or None).
    """
    if type(request) is not dict:
        raise refuse("invalid_request", "the request body must be a JSON object", "")
    sid = request.get("session_id")
    if type(sid) is not str or not sid or len(sid) > MAX_SESSION_ID:
        raise refuse("invalid_request",
                   f"session_id must be a non-empty string of at most {MAX_SESSION_ID} characters",
                   "session_id")
    now = request.get("now_ms", host_now_ms)
    if now is None:
        raise refuse("invalid_request", "now_ms is required (ms since epoch)", "now_ms")
    if not is_number(now) or not 0 <= now <= MAX_TIME_MS:
        raise refuse("invalid_request", "now_ms must be a non-negative number of ms since epoch, "
                   f"at most {MAX_TIME_MS}", "now_ms")
    now = int(now)
    events = order_events(request.get("events"), snap.max_events)
    if events and events[-1][0] > now:
        now = events[-1][0]  # a batch is never older than its newest event

    sess = Session.from_state(state, events[0][0] if events else now)
    context = request_context(request, sess)
    ctx_url = context.get("url")
    ctx = Ctx(snap, context, sid)
    if sess.url is None and not (events and events[0][2].get("type") == "page_view"):
        sess.enter_page(url_path(ctx_url or "/"), sess.start_ms)

    dec = Decision()
    scope = snap.scope(sess.url or "/")
    on_event = scope.on_event
    tracked = snap.tracked
    # What this snapshot needs watched, looked up once: most packs use few features.
    mouse_keep, forms, fields, sequences = snap.mouse_keep_ms, snap.forms, snap.agg_fields, \
        snap.sequences
    sustained, streaks = scope.sustained, scope.streaks
    # anything besides signals watched at each event (most snapshots: nothing)
    watching = bool(tracked or fields or sequences or sustained or streaks)
    reporting = report or snap.report
    visit = sess.visit_counts() if reporting and events else None
    for ts, i, ev in events:
        etype = ev.get("type")
        if visit is not None:
            ctx.moved()
        if apply_event(sess, ts, i, ev, etype, ctx_url, mouse_keep, forms, visit):
            scope = snap.scope(sess.url or "/")
            on_event, sustained, streaks = scope.on_event, scope.sustained, scope.streaks
            watching = bool(tracked or fields or sequences or sustained or streaks)
        if watching:
            observe_event(snap, sess, ctx, ts, etype, ev, sustained, streaks)
        if on_event:
            hits = on_event.get(etype if etype != "custom" else "custom:" + ev["name"])
            if hits:
                fire_on_event(dec, sess, ctx, hits, ev, ts)

    if scope.sustained:
        observe(scope.sustained, sess, ctx, now)
    if sess.queue:
        _deliver_due(dec, snap, sess, ctx, scope, now)
    # before the state triggers fire: a trigger this decision caps is still reported
    seen = decision_report(scope, sess, ctx, now) if reporting else None
    fire_state_triggers(scope.state_triggers, dec, sess, ctx, now)
    if sess.sequences:
        _observe_steps(snap, sess, ctx, now)
        _sequence_steps(snap, sess, ctx, dec, now)
    return respond(snap, sess, ctx, scope, dec, now, _next_check, seen, reporting)


def fire_state_triggers(triggers: tuple[Trigger, ...], dec: Decision, sess: Session, ctx: Ctx,
                        now: int) -> None:
    """Fire (or queue) the state triggers that may fire and whose conditions hold `now`."""
    fired = sess.fired
    for trig in triggers:
        rec = fired.get(trig.id)
        if rec is not None and capped(trig, sess, rec):
            continue  # the common case once a trigger has fired: settled in one call
        if trig.consecutive > 1 and sess.streaks.get(trig.id, 0) < trig.consecutive:
            continue
        if fires(trig, sess, ctx, now):
            sess.streaks.pop(trig.id, None)
            _fire_or_queue(dec, sess, trig, now)


NextCheck = Callable[[Snapshot, Session, Ctx, PageScope, Decision, int], "int | None"]


def respond(snap: Snapshot, sess: Session, ctx: Ctx, scope: PageScope, dec: Decision, now: int,
            next_check: NextCheck, seen: dict[str, Any] | None = None,
            reporting: bool = False) -> dict[str, Any]:
    """What fired, delivered (`take`), then the response and the session's new state: the
    end of every decision (a decision plan's too, with its own `next_check`)."""
    actions = dec.take(snap, sess, ctx, now)
    if sess.sequences:
        _observe_steps(snap, sess, ctx, now)  # a step reached just now starts watching

    deliveries = [a for a in actions if "channel" in a] if snap.channels else None
    if deliveries:
        actions = [a for a in actions if "channel" not in a]
    response: dict[str, Any] = {
        "revision": snap.revision,
        "actions": actions,
        "next_check_ms": next_check(snap, sess, ctx, scope, dec, now),
    }
    if deliveries:  # for the host to send; never shown to the visitor
        response["deliveries"] = _addressed(deliveries, ctx.context)
    if dec.suppressed:
        response["suppressed"] = dec.suppressed
    if ctx.arm is not None:
        response["arm"] = ctx.arm
    if seen is not None:
        response["report"] = seen
    if sess.sustained:
        _forget_unwatched(snap, sess, scope)
    # a report reads the 1 s scroll velocity (a snapshot that reports keeps it already)
    sess.prune(now, snap.keep_ms if not reporting or snap.keep_ms >= DEFAULT_VELOCITY_WINDOW_MS
               else DEFAULT_VELOCITY_WINDOW_MS)
    sess.fit(MAX_SESSION_BYTES)  # a session's state stays within its byte budget
    response["state"] = sess.to_state(snap.by_id)
    return response


def _forget_unwatched(snap: Snapshot, sess: Session, scope: PageScope) -> None:
    """A `sustained` condition only counts while it is watched (its trigger's page, its
    sequence's current step): a start time from before a gap must not carry over."""
    watched = {c.key for c in scope.sustained}
    for seq in snap.sequences:
        state = sess.sequences.get(seq.id)
        if state is not None and state[0] < len(seq.steps):
            watched.update(c.key for c in seq.steps[state[0]].trigger.sustained)
    for key in [k for k in sess.sustained if k not in watched]:
        del sess.sustained[key]


def _streak(sess: Session, trig: Trigger, ctx: Ctx, ts: int) -> bool:
    """One qualifying (or not) signal for a `consecutive` trigger; True once enough."""
    if allowed(trig, sess, ctx, ts) and all_hold(trig.conditions, sess, ctx, ts, trig.id):
        count = sess.streaks[trig.id] = min(sess.streaks.get(trig.id, 0) + 1, trig.consecutive)
        return count >= trig.consecutive
    sess.streaks.pop(trig.id, None)
    return False


_FIELD_EVENTS = {"scroll": (("scroll.depth", "depth"), ("scroll.y", "y")),
                 "hover": (("hover.duration_ms", "duration_ms"),),
                 "mousemove": (("mousemove.x", "x"), ("mousemove.y", "y"))}


def _fields(snap: Snapshot, sess: Session, ts: int, etype: Any, ev: dict[str, Any]) -> None:
    for name, key in _FIELD_EVENTS.get(etype, ()):
        keep = snap.agg_fields.get(name)
        value = ev.get(key)
        if keep is not None and value is not None:
            sess.field_value(name, ts, value, keep)


def _sequence_events(snap: Snapshot, sess: Session, ts: int, etype: Any,
                     ev: dict[str, Any]) -> None:
    keys = event_keys(etype, ev.get("name"), ev.get("target"))
    for seq in snap.sequences:
        if seq.id in sess.sequences:
            if any(key in keys for key in seq.exits):
                del sess.sequences[seq.id]  # e.g. a conversion: the sequence is over
        elif seq.start in keys:
            sess.sequences[seq.id] = [0, ts]
            _reset(sess, seq, 0)


def _sequence_steps(snap: Snapshot, sess: Session, ctx: Ctx, dec: Decision, now: int) -> None:
    """Fire the due step of each running sequence whose conditions hold now."""
    for seq in snap.sequences:
        state = sess.sequences.get(seq.id)
        if state is None:
            continue
        k, entered = state
        if k >= len(seq.steps):
            del sess.sequences[seq.id]
            continue
        step = seq.steps[k]
        due = entered + step.after_ms
        if now < due:
            continue
        if step.timeout_ms is not None and now > due + step.timeout_ms:
            del sess.sequences[seq.id]  # waited too long for its conditions
            continue
        if fires(step.trigger, sess, ctx, now):
            dec.fire(sess, step.trigger, now, action_of(step.trigger, 0),
                     on_keep=_advance(sess, seq, k, now))


def _advance(sess: Session, seq: Sequence, k: int, now: int) -> Any:
    def advance() -> None:
        if k + 1 >= len(seq.steps):
            sess.sequences.pop(seq.id, None)
        else:
            sess.sequences[seq.id] = [k + 1, now]
            _reset(sess, seq, k + 1)
    return advance


def _reset(sess: Session, seq: Sequence, k: int) -> None:
    """A step starts watching its `sustained` conditions when the sequence reaches it."""
    for cond in seq.steps[k].trigger.sustained:
        sess.sustained.pop(cond.key, None)


def _observe_steps(snap: Snapshot, sess: Session, ctx: Ctx, t: int) -> None:
    for seq in snap.sequences:
        state = sess.sequences.get(seq.id)
        if state is not None and state[0] < len(seq.steps):
            sustained = seq.steps[state[0]].trigger.sustained
            if sustained:
                observe(sustained, sess, ctx, t)


TimedMoments = Callable[[Session, Ctx, int, list[int]], None]


def _next_check(snap: Snapshot, sess: Session, ctx: Ctx, scope: PageScope, dec: Decision,
                now: int, timed: TimedMoments | None = None) -> int | None:
    """The earliest moment something is due (`timed`: the page's timed triggers' moments
    appended to the list it gets, as a decision plan writes them; else `next_fire`)."""
    if dec.crowded:
        return now  # more was due than one decision returns: call again right away
    candidates = [sess.queue[0][0]] if sess.queue else []
    if sess.queue:  # a trigger waiting in the queue cannot queue again until delivered: its
        # next moment is its delivery (a review's client, told now + 1 at every call while
        # a documented 2 s offer waited, called 2,002 times)
        waiting = {entry[1] for entry in sess.queue}
        for trig in scope.timed_triggers:
            if trig.id not in waiting:
                at = next_fire(trig, sess, ctx, now)
                if at is not None:
                    candidates.append(at)
    elif timed is not None:
        timed(sess, ctx, now, candidates)
    else:
        for trig in scope.timed_triggers:
            at = next_fire(trig, sess, ctx, now)
            if at is not None:
                candidates.append(at)
    for seq in snap.sequences:
        state = sess.sequences.get(seq.id)
        if state is not None and state[0] < len(seq.steps):
            step = seq.steps[state[0]]
            due = state[1] + step.after_ms
            at = next_fire(step.trigger, sess, ctx, now, not_before=due)
            if at is not None and (step.timeout_ms is None or at <= due + step.timeout_ms):
                candidates.append(at)
    if not candidates:
        return None
    at = min(candidates)
    release = dec.fatigue_until
    if release is not None:
        if release == -1:
            return None  # the session's budget is spent
        at = max(at, release)
    return at


def _addressed(deliveries: list[dict[str, Any]], context: dict[str, Any]) -> list[dict[str, Any]]:
    """The deliveries with the visitor's CRM id (and the site's signature over it) when the
    context carries one: the host checks the signature before a receiver sees the id."""
    crm_id, sig = context.get("crm_id"), context.get("crm_id_sig")
    if type(crm_id) is str and crm_id:
        for d in deliveries:
            d["crm_id"] = crm_id
            if type(sig) is str:
                d["crm_id_sig"] = sig
    return deliveries


def _deliver_due(dec: Decision, snap: Snapshot, sess: Session, ctx: Ctx, scope: PageScope,
                 now: int) -> None:
    """Deliver queued actions that are due and still valid; drop the invalid ones."""
    keep = []
    for entry in sess.queue:
        due, tid = entry
        if due > now:
            keep.append(entry)
            continue
        trig = snap.by_id.get(tid)
        # Still valid: the trigger survives in this snapshot, the visitor is on a page it
        # covers, and caps allow it.
        if trig is not None and trig.index in scope.members and allowed(trig, sess, ctx, due):
            action = action_of(trig, 0)
            action["due_ms"] = due
            dec.fire(sess, trig, due, action)
    sess.queue = keep
