"""The decision: from a snapshot, a request and the session so far, to actions.

Semantics (v1):
- Events are applied in timestamp order. A trigger with `on:` fires at the moment of a
  matching event, its conditions read as of that moment. Other (state) triggers are
  evaluated at the request's `now_ms`, after all events.
- `queued` actions wait in the session until due and are delivered by the first decision
  at or after that moment, if the visitor is still on a page the trigger covers.
- `next_check_ms` is the earliest moment, absent new events, at which a state trigger can
  fire or a queued action falls due: a client that calls back then is served on time.
"""

from __future__ import annotations

import math
from typing import Any

from .catalog import EVENT_TYPES
from .errors import BatchTooLarge, DecisionError
from .session import COUNT, LAST, PAGE_COUNT, PAGE_PV, Session
from .snapshot import DWELL, SCROLL_DEPTH, SCROLL_VELOCITY, Condition, Snapshot, Trigger

_EVENT_TYPES = frozenset(EVENT_TYPES)
_NUMBER = (int, float)
MAX_SESSION_ID = 256
# Timed conditions further away than this are not announced in next_check_ms.
HORIZON_MS = 24 * 3600 * 1000


def _bad(code: str, message: str, field: str) -> DecisionError:
    return DecisionError(code, message, field)


def _number(value: Any) -> bool:
    return type(value) in _NUMBER and math.isfinite(value)


def url_path(url: str) -> str:
    """The path of a URL or path: scheme, host, query and fragment removed."""
    if "://" in url:
        slash = url.find("/", url.index("://") + 3)
        url = "/" if slash < 0 else url[slash:]
    for sep in "?#":
        cut = url.find(sep)
        if cut >= 0:
            url = url[:cut]
    return url or "/"


def order_events(raw: Any, max_events: int) -> list[tuple[int, int, dict[str, Any]]]:
    """Check a batch's shape and timestamps; return (ts_ms, position, event), oldest first.

    Each event's own fields are checked as it is applied (`_apply`): a batch with any
    invalid event is refused whole, so nothing of it reaches the session either way.
    """
    if raw is None:
        return []
    if type(raw) is not list:
        raise _bad("invalid_request", "events must be a list of event objects", "events")
    if len(raw) > max_events:
        raise BatchTooLarge(
            "batch_too_large",
            f"{len(raw)} events in one batch; at most {max_events} are accepted, "
            "send the rest in another request",
            "events",
        )
    out = []
    last = -1
    ordered = True
    for i, ev in enumerate(raw):
        if type(ev) is not dict:
            raise _bad("invalid_event", "each event must be a JSON object", f"events[{i}]")
        ts = ev.get("ts_ms")
        if type(ts) is not int:
            ts = int(ts) if _number(ts) else -1
        if ts < 0:
            raise _bad("invalid_event", "ts_ms must be a non-negative number (ms since epoch)",
                       f"events[{i}].ts_ms")
        if ts < last:
            ordered = False
        last = ts
        out.append((ts, i, ev))
    if not ordered:
        out.sort(key=_first_two)  # simultaneous events keep their order
    return out


def _first_two(item: tuple[int, int, dict[str, Any]]) -> tuple[int, int]:
    return item[0], item[1]


def _invalid(i: int, field: str, message: str) -> DecisionError:
    return _bad("invalid_event", message, f"events[{i}].{field}")


def _apply(sess: Session, ts: int, i: int, ev: dict[str, Any], etype: Any,
           ctx_url: str | None) -> bool:
    """Check one event's fields and apply it; True when it entered a new page."""
    if etype == "scroll":
        depth = ev.get("depth")
        if depth is not None:
            if type(depth) not in _NUMBER or not 0 <= depth <= 1:
                raise _invalid(i, "depth", "depth must be a number from 0 to 1")
            if depth > sess.depth:
                sess.depth = depth
        y = ev.get("y")
        if y is not None:
            if not _number(y):
                raise _invalid(i, "y", "y must be a number (px from the top)")
            sess.scroll_to(ts, y)
        return False
    if etype == "page_view":
        url = ev.get("url")
        if url is not None and type(url) is not str:
            raise _invalid(i, "url", "url must be a string")
        if ts >= sess.pv:
            sess.enter_page(url_path(url or ctx_url or "/"), ts)
            return True
        return False
    if etype == "hover":
        target = ev.get("target")
        if type(target) is not str:
            raise _invalid(i, "target", "a hover needs a target (string)")
        dur = ev.get("duration_ms")
        if not _number(dur) or dur < 0:
            raise _invalid(i, "duration_ms", "duration_ms must be a non-negative number")
        sess.hovered(target, dur)
        return False
    if etype == "custom":
        if type(ev.get("name")) is not str:
            raise _invalid(i, "name", "a custom event needs a name (string)")
        return False
    if etype not in _EVENT_TYPES:
        raise _invalid(i, "type",
                       f"unknown event type {etype!r}; expected one of {', '.join(EVENT_TYPES)}")
    return False


def _value(c: Condition, sess: Session, t: int) -> float:
    s = c.signal
    if s == DWELL:
        return t - sess.pv
    if s == SCROLL_DEPTH:
        return sess.depth
    if s == SCROLL_VELOCITY:
        return sess.velocity(t, c.window_ms)
    return sess.hover.get(c.target or "", 0.0)


def _holds(trig: Trigger, sess: Session, t: int) -> bool:
    for c in trig.conditions:
        if not c.test(_value(c, sess, t), c.value):
            return False
    return True


def _allowed(trig: Trigger, sess: Session, t: int) -> bool:
    """Caps and cooldown let `trig` fire at `t`."""
    rec = sess.fired.get(trig.id)
    if rec is None:
        return True
    if trig.per_session is not None and rec[COUNT] >= trig.per_session:
        return False
    if trig.per_page is not None and rec[PAGE_PV] == sess.pv and rec[PAGE_COUNT] >= trig.per_page:
        return False
    return not (trig.cooldown_ms and rec[LAST] is not None and t < rec[LAST] + trig.cooldown_ms)


def _record(sess: Session, trig: Trigger, t: int) -> None:
    rec = sess.fired.get(trig.id)
    if rec is None:
        sess.fired[trig.id] = [1, t, 1, sess.pv]
    elif rec[PAGE_PV] == sess.pv:
        rec[COUNT] += 1
        rec[LAST] = t
        rec[PAGE_COUNT] += 1
    else:
        rec[COUNT] += 1
        rec[LAST] = t
        rec[PAGE_COUNT] = 1
        rec[PAGE_PV] = sess.pv


def _next_fire(trig: Trigger, sess: Session, now: int) -> int | None:
    """Earliest t > now at which `trig` fires if no new event arrives, or None.

    Time alone only moves dwell (up) and scroll velocity (down, as samples leave the
    window), so each `rising` condition, once true, stays true, and every other condition
    can only stop holding. The answer is therefore the latest of the moments each rising
    condition (and the cooldown) first allows, provided everything holds there.
    """
    rec = sess.fired.get(trig.id)
    at = now
    if rec is not None:
        if trig.per_session is not None and rec[COUNT] >= trig.per_session:
            return None
        if trig.per_page is not None and rec[PAGE_PV] == sess.pv and \
                rec[PAGE_COUNT] >= trig.per_page:
            return None
        if trig.cooldown_ms and rec[LAST] is not None:
            at = max(at, rec[LAST] + trig.cooldown_ms)
    for c in trig.steady:  # false now means false until new events arrive
        if not c.test(_value(c, sess, now), c.value):
            return None
    for c in trig.rising:
        first = _first_true(c, sess, now)
        if first is None:
            return None
        at = max(at, first)
    if at <= now or at > now + HORIZON_MS:
        return None
    return at if _allowed(trig, sess, at) and _holds(trig, sess, at) else None


def _first_true(c: Condition, sess: Session, now: int) -> int | None:
    """The first moment >= now at which a rising condition holds, absent new events."""
    if c.test(_value(c, sess, now), c.value):
        return now
    if c.signal == DWELL:
        # dwell(t) = t - pv grows by 1 per ms.
        threshold = sess.pv + c.value
        if c.op == "==":
            return int(threshold) if threshold == int(threshold) and threshold > now else None
        return math.floor(threshold) + 1 if c.op == ">" else math.ceil(threshold)
    # Scroll velocity only falls, at the moments samples leave the window: search them.
    # (`!=` that is false now means v == value: it holds from the first step below.)
    w = c.window_ms
    steps = sorted({int(ts) + w for ts, _y in sess.samples if ts + w > now})
    test = c.test if c.op != "!=" else _lt
    lo, hi = 0, len(steps)
    while lo < hi:
        mid = (lo + hi) // 2
        if test(sess.velocity(steps[mid], w), c.value):
            hi = mid
        else:
            lo = mid + 1
    return steps[lo] if lo < len(steps) else None


def _lt(a: float, b: float) -> bool:
    return a < b


def _action(trig: Trigger, delay_ms: int) -> dict[str, Any]:
    return {
        "trigger": trig.id,
        "content": trig.content,
        "tier": trig.tier,
        "delay_ms": delay_ms,
        "priority": trig.priority,
    }


def _priority_order(fired: tuple[Trigger, dict[str, Any]]) -> tuple[int, int]:
    return -fired[0].priority, fired[0].index


class _Decision:
    """The actions of one decision, with what firing them changed (to undo the overflow)."""

    __slots__ = ("fired", "before", "crowded")

    def __init__(self) -> None:
        self.fired: list[tuple[Trigger, dict[str, Any]]] = []
        self.before: dict[str, list[Any] | None] = {}
        self.crowded = False  # something due now waits for the next call

    def fire(self, sess: Session, trig: Trigger, t: int, action: dict[str, Any]) -> None:
        if trig.id not in self.before:
            rec = sess.fired.get(trig.id)
            self.before[trig.id] = None if rec is None else rec.copy()
        _record(sess, trig, t)
        self.fired.append((trig, action))

    def take(self, sess: Session, limit: int) -> list[dict[str, Any]]:
        """The `limit` highest-priority actions; the rest are un-fired."""
        fired = self.fired
        if len(fired) > 1:
            fired.sort(key=_priority_order)
        if len(fired) > limit:
            kept_ids = {t.id for t, _ in fired[:limit]}
            for trig, action in fired[limit:]:
                if trig.id not in kept_ids:
                    prev = self.before[trig.id]
                    if prev is None:
                        sess.fired.pop(trig.id, None)
                    else:
                        sess.fired[trig.id] = prev
                if "due_ms" in action:  # a queued action stays queued
                    sess.queue.append([action["due_ms"], trig.id])
                    sess.queue.sort()
                    self.crowded = True
                elif trig.on_key is None:  # a state trigger still holds next call
                    self.crowded = True
            fired = fired[:limit]
        return [a for _, a in fired]


def _queue(sess: Session, trig: Trigger, t: int) -> None:
    for entry in sess.queue:
        if entry[1] == trig.id:
            return  # one pending delivery per trigger
    sess.queue.append([t + trig.delay_ms, trig.id])
    sess.queue.sort()


def _fire_or_queue(dec: _Decision, sess: Session, trig: Trigger, t: int) -> None:
    if trig.tier == "queued" and trig.delay_ms > 0:
        _queue(sess, trig, t)
    else:
        dec.fire(sess, trig, t, _action(trig, trig.delay_ms))


def decide(snap: Snapshot, request: Any, state: Any, host_now_ms: Any = None) -> dict[str, Any]:
    """One decision. Returns the response fields and the session's new `state`."""
    if type(request) is not dict:
        raise _bad("invalid_request", "the request body must be a JSON object", "")
    sid = request.get("session_id")
    if type(sid) is not str or not sid or len(sid) > MAX_SESSION_ID:
        raise _bad("invalid_request",
                   f"session_id must be a non-empty string of at most {MAX_SESSION_ID} characters",
                   "session_id")
    now = request.get("now_ms", host_now_ms)
    if now is None:
        raise _bad("invalid_request", "now_ms is required (ms since epoch)", "now_ms")
    if not _number(now) or now < 0:
        raise _bad("invalid_request", "now_ms must be a non-negative number (ms since epoch)",
                   "now_ms")
    now = int(now)
    context = request.get("context")
    if context is None:
        context = {}
    elif type(context) is not dict:
        raise _bad("invalid_request", "context must be a JSON object", "context")
    ctx_url = context.get("url")
    if ctx_url is not None and type(ctx_url) is not str:
        raise _bad("invalid_request", "context.url must be a string", "context.url")
    events = order_events(request.get("events"), snap.max_events)
    if events and events[-1][0] > now:
        now = events[-1][0]  # a batch is never older than its newest event

    sess = Session.from_state(state, events[0][0] if events else now)
    if sess.url is None:
        sess.enter_page(url_path(ctx_url or "/"), sess.start_ms)

    dec = _Decision()
    scope = snap.scope(sess.url or "/")
    on_event = scope.on_event
    for ts, i, ev in events:
        etype = ev.get("type")
        if _apply(sess, ts, i, ev, etype, ctx_url):
            scope = snap.scope(sess.url or "/")
            on_event = scope.on_event
        if on_event:
            hits = on_event.get(etype if etype != "custom" else "custom:" + ev["name"])
            if hits:
                for trig in hits:
                    if trig.on_target is not None and ev.get("target") != trig.on_target:
                        continue
                    if _allowed(trig, sess, ts) and _holds(trig, sess, ts):
                        _fire_or_queue(dec, sess, trig, ts)

    if sess.queue:
        _deliver_due(dec, snap, sess, scope.members, now)
    for trig in scope.state_triggers:
        if _allowed(trig, sess, now) and _holds(trig, sess, now):
            _fire_or_queue(dec, sess, trig, now)
    actions = dec.take(sess, snap.max_actions)

    # Crowded out by higher priorities, something can be delivered right away.
    next_check = now if dec.crowded else (sess.queue[0][0] if sess.queue else None)
    for trig in scope.timed_triggers:
        at = _next_fire(trig, sess, now)
        if at is not None and (next_check is None or at < next_check):
            next_check = at
    sess.prune(now, snap.keep_ms)
    return {
        "revision": snap.revision,
        "actions": actions,
        "next_check_ms": next_check,
        "state": sess.to_state(snap.by_id),
    }


def _deliver_due(dec: _Decision, snap: Snapshot, sess: Session,
                 members: frozenset[int], now: int) -> None:
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
        if trig is not None and trig.index in members and _allowed(trig, sess, due):
            action = _action(trig, 0)
            action["due_ms"] = due
            dec.fire(sess, trig, due, action)
    sess.queue = keep
