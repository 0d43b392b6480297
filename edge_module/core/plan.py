"""Decision plans: `decide` specialised to one snapshot, for the requests it covers.

A plan is compiled when a snapshot is loaded. It checks and applies a batch in one pass with
the common event types inline, and evaluates each page bucket's state triggers in one
generated function with their caps and static signal conditions written out as expressions
(built on the bucket's first use, cached per set of triggers). Everything else (context,
queue, sequences, delivery, next check, the state) is the generic engine's own code.

A plan answers only what it covers: a batch that is invalid, out of order or asks for a
report, and any exception, make it return None, and the caller decides with the generic
engine on an untouched copy of the state. So the plan has no errors of its own: the
generic engine raises them, in its order and with its messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .conditions import Ctx, holds, observe, signal_holds
from .delivery import Decision
from .eligibility import allowed, fires
from .engine import (
    _deliver_due,
    _fields,
    _fire_or_queue,
    _forget_unwatched,
    _next_check,
    _observe_steps,
    _sequence_events,
    _sequence_steps,
    _streak,
)
from .request_input import MAX_NAME, MAX_SESSION_ID, MAX_TIME_MS, MAX_URL, request_context
from .session import MAX_HOVER_TARGETS, MAX_SAMPLES, MAX_SESSION_BYTES, PAGE_FIRES, PAGE_PV, Session
from .snapshot import (
    DWELL,
    HOVER,
    PAGES,
    SCROLL_DEPTH,
    SCROLL_POSITION,
    SCROLL_VELOCITY,
    SESSION_TIME,
    Condition,
    PageScope,
    Snapshot,
    Trigger,
    event_keys,
)
from .trigger_loader import OP_FUNCS
from .urls import url_path

_NUMBER = (int, float)
_FORM_EVENTS = frozenset(("focus", "input", "submit", "blur", "click"))
_MAX_BUCKETS = 1024  # as many as the snapshot's page scopes

StateRun = Callable[[Decision, Session, Ctx, int], None]


class Plan:
    """A snapshot's plan: `decide(request, state, host_now_ms)` or None (not covered)."""

    __slots__ = ("_buckets", "snap")

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._buckets: dict[frozenset[int], StateRun] = {}

    def state_run(self, scope: PageScope) -> StateRun:
        """The bucket's state triggers as one function (built on first use)."""
        run = self._buckets.get(scope.members)
        if run is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets.clear()
            run = self._buckets[scope.members] = compile_state_triggers(scope.state_triggers)
        return run

    def decide(self, request: Any, state: Any, host_now_ms: Any) -> dict[str, Any] | None:
        """`engine.decide` for a covered request (state consumed), else None."""
        try:
            return self._decide(request, state, host_now_ms)
        except Exception:  # noqa: BLE001 - the generic engine answers, errors included
            return None

    def _decide(self, request: Any, state: Any, host_now_ms: Any) -> dict[str, Any] | None:
        snap = self.snap
        if type(request) is not dict:
            return None
        sid = request.get("session_id")
        if type(sid) is not str or not sid or len(sid) > MAX_SESSION_ID:
            return None
        now = request.get("now_ms", host_now_ms)
        if type(now) is not int or not 0 <= now <= MAX_TIME_MS:
            return None
        raw = request.get("events")
        if raw is None:
            raw = ()
        elif type(raw) is not list or len(raw) > snap.max_events:
            return None
        if raw:
            first = raw[0]
            if type(first) is not dict:
                return None
            start = first.get("ts_ms")
            if type(start) is not int:
                return None
            sess = Session.from_state(state, start)
        else:
            first = None
            sess = Session.from_state(state, now)
        context = request_context(request, sess)
        ctx_url = context.get("url")
        ctx = Ctx(snap, context, sid)
        if sess.url is None and not (first is not None and first.get("type") == "page_view"):
            sess.enter_page(url_path(ctx_url or "/"), sess.start_ms)

        dec = Decision()
        scope = snap.scope(sess.url or "/")
        on_event = scope.on_event
        tracked, tracked_types = snap.tracked, snap.tracked_types
        mouse_keep, forms, fields, sequences = snap.mouse_keep_ms, snap.forms, \
            snap.agg_fields, snap.sequences
        sustained, streaks = scope.sustained, scope.streaks
        last = 0
        for ev in raw:
            # the shape `order_events` checks, and order: anything else is the engine's
            if type(ev) is not dict:
                return None
            etype = ev.get("type")
            ts = ev.get("ts_ms")
            if type(ts) is not int or ts < last or ts > MAX_TIME_MS or type(etype) is not str:
                return None
            last = ts
            # `apply_event`, its checks failing over to the engine
            if etype == "scroll":
                depth = ev.get("depth")
                if depth is not None:
                    if type(depth) not in _NUMBER or not 0 <= depth <= 1:
                        return None
                    sess.depth = max(sess.depth, depth)
                    sess.pos = depth
                y = ev.get("y")
                if y is not None:
                    if type(y) is not int and (type(y) is not float or not math.isfinite(y)):
                        return None
                    _scroll_to(sess, ts, y)
            elif etype == "mousemove":
                x, y = ev.get("x"), ev.get("y")
                if x is not None or y is not None:
                    if (type(x) is not int and (type(x) is not float or not math.isfinite(x))) \
                            or (type(y) is not int and
                                (type(y) is not float or not math.isfinite(y))):
                        return None
                    if mouse_keep:
                        sess.mouse_to(ts, x, y, mouse_keep, None)
            elif etype == "hover":
                target = ev.get("target")
                if type(target) is not str or len(target) > MAX_NAME:
                    return None
                dur = ev.get("duration_ms")
                if type(dur) is not int and (type(dur) is not float or not math.isfinite(dur)) \
                        or dur < 0:
                    return None
                hover = sess.hover
                if target in hover or len(hover) < MAX_HOVER_TARGETS:
                    hover[target] = hover.get(target, 0.0) + dur
            elif etype == "custom":
                name = ev.get("name")
                if type(name) is not str or len(name) > MAX_NAME:
                    return None
            elif etype == "page_view":
                url = ev.get("url")
                if url is not None and (type(url) is not str or len(url) > MAX_URL):
                    return None
                if ts >= sess.pv:
                    sess.enter_page(url_path(url or ctx_url or "/"), ts)
                    scope = snap.scope(sess.url or "/")
                    on_event, sustained, streaks = scope.on_event, scope.sustained, \
                        scope.streaks
            elif etype == "dismiss":
                sess.dismissed = ts
            elif etype in _FORM_EVENTS:
                target = ev.get("target")
                if target is not None and (type(target) is not str or len(target) > MAX_NAME):
                    return None
                if forms:
                    sess.form_event(etype, ts, target)
            else:
                return None  # an unknown type: the engine names it
            # then what the engine does at every event, for the features the snapshot uses
            if tracked and etype in tracked_types:
                for key in event_keys(etype, ev.get("name"), ev.get("target")):
                    keep = tracked.get(key)
                    if keep is not None:
                        sess.track(key, ts, keep)
                if sequences:
                    _sequence_events(snap, sess, ts, etype, ev)
            if fields:
                _fields(snap, sess, ts, etype, ev)
            if sustained:
                observe(sustained, sess, ctx, ts)
            if sequences and sess.sequences:
                _observe_steps(snap, sess, ctx, ts)
            if streaks:
                for trig in streaks:
                    _streak(sess, trig, ctx, ts)
            if on_event:
                hits = on_event.get(etype if etype != "custom" else "custom:" + ev["name"])
                if hits:
                    for trig in hits:
                        if trig.on_target is not None and ev.get("target") != trig.on_target:
                            continue
                        if trig.consecutive > 1 and not _streak(sess, trig, ctx, ts):
                            continue
                        if fires(trig, sess, ctx, ts):
                            sess.streaks.pop(trig.id, None)
                            _fire_or_queue(dec, sess, trig, ts)
        now = max(now, last)  # a batch is never older than its newest event

        if scope.sustained:
            observe(scope.sustained, sess, ctx, now)
        if sess.queue:
            _deliver_due(dec, snap, sess, ctx, scope, now)
        if scope.state_triggers:
            self.state_run(scope)(dec, sess, ctx, now)
        if sess.sequences:
            _observe_steps(snap, sess, ctx, now)
            _sequence_steps(snap, sess, ctx, dec, now)
        actions = dec.take(snap, sess, ctx, now)
        if sess.sequences:
            _observe_steps(snap, sess, ctx, now)

        response: dict[str, Any] = {
            "revision": snap.revision,
            "actions": actions,
            "next_check_ms": _next_check(snap, sess, ctx, scope, dec, now),
        }
        if dec.suppressed:
            response["suppressed"] = dec.suppressed
        if ctx.arm is not None:
            response["arm"] = ctx.arm
        if sess.sustained:
            _forget_unwatched(snap, sess, scope)
        sess.prune(now, snap.keep_ms)
        sess.fit(MAX_SESSION_BYTES)
        response["state"] = sess.to_state(snap.by_id)
        return response


def _scroll_to(sess: Session, ts: int, y: float) -> None:
    """`Session.scroll_to`, for a session whose samples are never empty after a page view."""
    samples = sess.samples
    if samples:
        prev = samples[-1]
        scrolled = sess.scrolled
        if not scrolled:
            scrolled = sess.scrolled = [0.0, 0]
        scrolled[0] += abs(y - prev[1])
        gap = ts - prev[0]
        scrolled[1] += 1000 if gap > 1000 else (max(0, gap))
    samples.append([ts, y])
    if len(samples) > MAX_SAMPLES:
        del samples[: len(samples) - MAX_SAMPLES]


def compile_plan(snap: Snapshot) -> Plan | None:
    """The snapshot's plan, or None when every decision would fall back (it reports)."""
    if snap.report:
        return None
    return Plan(snap)


# -- a bucket's state triggers as generated source ------------------------------------------

def compile_state_triggers(triggers: tuple[Trigger, ...]) -> StateRun:
    """The engine's state-trigger loop for these triggers, unrolled: caps and static signal
    conditions inline, everything else through the engine's own functions."""
    names: dict[str, Any] = {"allowed": allowed, "holds": holds, "signal_holds": signal_holds,
                             "fire_or_queue": _fire_or_queue}
    lines = ["def run(dec, sess, ctx, t):",
             "    fired = sess.fired", "    pv = sess.pv", "    hover = sess.hover",
             "    streaks = sess.streaks"]
    windows: set[int] = set()
    for k, trig in enumerate(triggers):
        tname = f"T{k}"
        names[tname] = trig
        tid = repr(trig.id)
        lines.append(f"    rec = fired.get({tid})")
        caps = []
        if trig.per_session is not None:
            caps.append(f"rec[0] >= {trig.per_session!r}")
        if trig.per_page is not None:
            caps.append(f"(rec[{PAGE_PV}] == pv and rec[{PAGE_FIRES}] >= {trig.per_page!r})")
        indent = "    "
        if caps:
            lines.append(f"    if rec is None or not ({' or '.join(caps)}):")
            indent = "        "
        tests = []
        if trig.consecutive > 1:
            tests.append(f"streaks.get({tid}, 0) >= {trig.consecutive!r}")
        may = f"allowed({tname}, sess, ctx, t)"
        tests.append(f"(rec is None or {may})" if trig.plain else may)
        for j, c in enumerate(trig.conditions):
            cname = f"C{k}_{j}"
            names[cname] = c
            tests.append(_condition(c, cname, tid, names, windows))
        lines.append(f"{indent}if {' and '.join(tests)}:")
        lines.append(f"{indent}    streaks.pop({tid}, None)")
        lines.append(f"{indent}    fire_or_queue(dec, sess, {tname}, t)")
    for w in sorted(windows):
        lines.insert(5, f"    v{w} = None")
    if len(lines) == 5:
        lines.append("    pass")
    code = compile("\n".join(lines) + "\n", "<decision plan>", "exec")
    exec(code, names)  # noqa: S102 - source generated above from the loaded snapshot
    run: StateRun = names["run"]
    return run


def _condition(c: Any, cname: str, tid: str, names: dict[str, Any], windows: set[int]) -> str:
    """A condition as a Python expression over `sess`, `ctx`, `t` and the run's locals."""
    if type(c) is not Condition:
        return f"holds({cname}, sess, ctx, t, {tid})"
    if not c.static or c.hybrid or c.test is not OP_FUNCS.get(c.op):
        return f"signal_holds({cname}, sess, ctx, t, {tid})"
    s = c.signal
    if s == DWELL:
        value = "(t - pv)"
    elif s == SCROLL_DEPTH:
        value = "sess.depth"
    elif s == SCROLL_VELOCITY:
        w = c.window_ms
        windows.add(w)
        value = f"(v{w} if v{w} is not None else (v{w} := sess.velocity(t, {w!r})))"
    elif s == HOVER:
        value = f"hover.get({(c.target or '')!r}, 0.0)"
    elif s == SESSION_TIME:
        value = "(t - sess.start_ms)"
    elif s == SCROLL_POSITION:
        value = "sess.pos"
    elif s == PAGES:
        value = "len(sess.pages)"
    else:
        return f"signal_holds({cname}, sess, ctx, t, {tid})"
    threshold = c.value
    if type(threshold) is int or (type(threshold) is float and math.isfinite(threshold)):
        literal = repr(threshold)
    else:
        literal = f"{cname}.value"
    return f"{value} {c.op} {literal}"
