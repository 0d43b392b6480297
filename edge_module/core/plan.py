"""Decision plans: `decide` specialised to one snapshot, for the requests it covers.

`load_snapshot` gives each snapshot its plan. It checks and applies a batch in one pass with
the common event types inline; each page bucket's state triggers, and the moments time alone
makes them fire (`next_check_ms`), are generated functions with caps and static signal
conditions written out as expressions (compiled on the bucket's first decision, cached per
set of triggers). Everything else (context, queue, sequences, the end of the decision in
`engine.respond`) is the generic engine's own code.

A plan answers only what it covers: a batch that is invalid, out of order or asks for a
report, and any exception, make it return None, and the caller decides with the generic
engine on an untouched copy of the state. So the plan has no errors of its own: the
generic engine raises them, in its order and with its messages.

Longer than most modules on purpose: the one-pass event loop and the two code generators
(state triggers, next moments) are one specialisation of `engine.decide`, read side by side
with it and tested against it (tests/core/test_plan_differential.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

from .catalog import CHANGING, COMPACT_EVENTS, EVENT_TYPES, MAX_PAGE_VIEWS, RISING
from .compact import as_object
from .conditions import Ctx, holds, observe, signal_holds
from .delivery import Decision, action_of
from .eligibility import allowed
from .engine import (
    NextCheck,
    TimedMoments,
    _deliver_due,
    _fire_or_queue,
    _next_check,
    _observe_steps,
    _sequence_steps,
    fire_on_event,
    fire_state_triggers,
    observe_event,
    respond,
)
from .next_check import HORIZON_MS, next_fire
from .request_input import (
    MAX_NAME,
    MAX_NUMBER,
    MAX_SESSION_ID,
    MAX_TIME_MS,
    MAX_URL,
    NUMBER_TYPES,
    request_context,
)
from .session import (
    LAST_FIRED,
    MAX_HOVER_TARGETS,
    MAX_SAMPLES,
    PAGE_FIRES,
    PAGE_PV,
    Session,
)
from .snapshot import (
    DWELL,
    HOVER,
    PAGES,
    SCROLL_DEPTH,
    SCROLL_POSITION,
    SCROLL_VELOCITY,
    SESSION_TIME,
    Condition,
    ContextCond,
    PageScope,
    SegmentCond,
    Snapshot,
    Trigger,
)
from .trigger_loader import OP_FUNCS
from .urls import url_path

_FORM_EVENTS = frozenset(("focus", "input", "submit", "blur", "click"))
_EVENT_TYPES = frozenset(EVENT_TYPES)
# A batch longer than this is looked over before it is applied: one the plan would leave
# to the engine at its last event (out of order, of no known type, one page view too
# many) was otherwise applied twice, a visitor's way to double a decision's cost.
_LOOK_OVER = 64
_MAX_BUCKETS = 1024  # as many as the snapshot's page scopes
# A bucket's triggers are written out up to this many; a bigger one runs the engine's loops.
MAX_WRITTEN_OUT = 64
# ... and only while a function's generated source stays this short. Compiling it happens
# on the bucket's first decision, inside that decision's deadline, at about 0.5-1.5 us a
# character natively and three times that in the component: a review's bucket of 64
# triggers of 4 conditions (57,000 characters) took 46 ms natively, and in the component
# every first decision ran past the 50 ms deadline, the instance was replaced, and the
# fresh one started compiling again: that page answered 503 for good. The bench's buckets
# are 1,400-2,700 characters; a longer one runs the engine's own loops instead (the same
# decisions: the differential suite holds both to them).
MAX_SOURCE_CHARS = 4_000

StateRun = Callable[[Decision, Session, Ctx, int], None]
Bucket = tuple[StateRun, NextCheck, frozenset[str]]



class Plan:
    """A snapshot's plan: `decide(request, state, host_now_ms)` or None (not covered)."""

    __slots__ = ("_buckets", "_on_types", "snap")

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._buckets: dict[frozenset[int], Bucket] = {}
        self._on_types: dict[frozenset[int], frozenset[str]] = {}

    def on_types(self, scope: PageScope) -> frozenset[str]:
        """The event types the bucket's event triggers wait for. Every page view of a batch
        asks: this compiles nothing (a batch of page views over many pages compiled a
        bucket for each, all within one decision's deadline)."""
        types = self._on_types.get(scope.members)
        if types is None:
            if len(self._on_types) >= _MAX_BUCKETS:
                self._on_types.clear()
            types = self._on_types[scope.members] = frozenset(
                key.partition(":")[0] for key in scope.on_event)
        return types

    def bucket(self, scope: PageScope) -> Bucket:
        """The bucket's state triggers and their next moments as functions, and the event
        types its event triggers wait for (built on first use: one bucket per decision,
        the page the batch ends on)."""
        runs = self._buckets.get(scope.members)
        if runs is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets.clear()
            state_run = compile_state_triggers(scope.state_triggers) \
                if len(scope.state_triggers) <= MAX_WRITTEN_OUT else None
            timed = compile_next_moments(scope.timed_triggers) \
                if len(scope.timed_triggers) <= MAX_WRITTEN_OUT else None
            runs = self._buckets[scope.members] = (
                state_run or partial(fire_state_triggers, scope.state_triggers),
                _next_check if timed is None else partial(_next_check, timed=timed),
                self.on_types(scope))
        return runs

    def decide(self, request: Any, state: Any, host_now_ms: Any,
               read_state: Callable[[Any], Any] | None = None) -> dict[str, Any] | None:
        """`engine.decide` for a covered request (state consumed), else None. With
        `read_state`, `state` is what it reads the state from, once the request's own
        fields have passed (a refused request costs no state)."""
        try:
            return self._decide(request, state, host_now_ms, read_state)
        except Exception:  # noqa: BLE001 - the generic engine answers, errors included
            return None

    def _decide(self, request: Any, state: Any, host_now_ms: Any,
                read_state: Callable[[Any], Any] | None) -> dict[str, Any] | None:
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
        elif type(raw) is not list or len(raw) > snap.max_events or \
                len(raw) > _LOOK_OVER and not _plain(raw):
            return None
        if read_state is not None:
            state = read_state(state)
        first_type = None
        if raw:
            head = _head(raw[0])
            if head is None:
                return None
            first_type, start = head
            if type(start) is not int:
                return None
            sess = Session.from_state(state, start)
        else:
            sess = Session.from_state(state, now)
        context = request_context(request, sess)
        ctx_url = context.get("url")
        ctx = Ctx(snap, context, sid)
        if sess.url is None and first_type != "page_view":
            sess.enter_page(url_path(ctx_url or "/"), sess.start_ms)

        dec = Decision()
        scope = snap.scope(sess.url or "/")
        on_event = scope.on_event
        on_types = self.on_types(scope)
        tracked = snap.tracked
        mouse_keep, forms, fields, sequences = snap.mouse_keep_ms, snap.forms, \
            snap.agg_fields, snap.sequences
        sustained, streaks = scope.sustained, scope.streaks
        # at every event: anything beyond applying it (most snapshots need nothing here)
        each = bool(tracked or fields or sequences or sustained or streaks)
        samples, hover, scrolled = sess.samples, sess.hover, sess.scrolled
        last = views = 0
        for ev in raw:
            # the shape `order_events` checks, and order: anything else is the engine's
            if type(ev) is tuple:  # compact (compact.py): its values in place
                if len(ev) == 4:
                    etype, ts, a, b = ev
                    if etype not in _TWO_FIELDS:
                        return None
                else:  # a tuple of another length raises: the engine answers for it
                    etype, ts, a = ev
                    if etype not in _ONE_FIELD:
                        return None
                    b = None
            elif type(ev) is dict:
                etype = ev["type"]  # a missing field raises: the engine answers for it
                ts = ev["ts_ms"]
                # its fields as a compact event holds them (a type that is not hashable
                # raises: the engine answers for it)
                one, two = _FIELDS.get(etype, _NO_FIELDS)
                a, b = ev.get(one), ev.get(two)
            else:
                return None
            if type(ts) is not int or ts < last or ts > MAX_TIME_MS or type(etype) is not str:
                return None
            last = ts
            # `apply_event`, its checks failing over to the engine
            if etype == "scroll":
                if a is not None:
                    if type(a) is not float and type(a) is not int or not 0 <= a <= 1:
                        return None
                    if a > sess.depth:  # noqa: PLR1730 - as the engine writes it
                        sess.depth = a
                    sess.pos = a
                if b is not None:
                    if type(b) not in NUMBER_TYPES or not -MAX_NUMBER <= b <= MAX_NUMBER:
                        return None
                    # `Session.scroll_to`
                    if not samples:
                        samples.append([ts, b])
                    elif ts >= samples[-1][0]:  # a late one is left out
                        prev = samples[-1]
                        if not scrolled:
                            scrolled = sess.scrolled = [0.0, 0]
                        scrolled[0] += abs(b - prev[1])
                        gap = ts - prev[0]
                        scrolled[1] += 1000 if gap > 1000 else gap  # noqa: FURB136
                        samples.append([ts, b])
                        if len(samples) > MAX_SAMPLES:
                            del samples[: len(samples) - MAX_SAMPLES]
            elif etype == "mousemove":
                if a is not None or b is not None:
                    if type(a) not in NUMBER_TYPES or not -MAX_NUMBER <= a <= MAX_NUMBER \
                            or type(b) not in NUMBER_TYPES or not -MAX_NUMBER <= b <= MAX_NUMBER:
                        return None
                    if mouse_keep:
                        sess.mouse_to(ts, a, b, mouse_keep, None)
            elif etype == "hover":
                if type(a) is not str or len(a) > MAX_NAME:
                    return None
                if type(b) not in NUMBER_TYPES or not 0 <= b <= MAX_NUMBER:
                    return None
                if a in hover or len(hover) < MAX_HOVER_TARGETS:
                    hover[a] = hover.get(a, 0.0) + b
            elif etype == "custom":
                if type(a) is not str or len(a) > MAX_NAME:
                    return None
            elif etype == "page_view":
                if a is not None and (type(a) is not str or len(a) > MAX_URL):
                    return None
                views += 1
                if views > MAX_PAGE_VIEWS:
                    return None
                if ts >= sess.pv:
                    sess.enter_page(url_path(a or ctx_url or "/"), ts)
                    samples, hover = sess.samples, sess.hover
                    scope = snap.scope(sess.url or "/")
                    on_event, sustained, streaks = scope.on_event, scope.sustained, \
                        scope.streaks
                    on_types = self.on_types(scope)
                    each = bool(tracked or fields or sequences or sustained or streaks)
            elif etype == "dismiss":
                sess.dismissed = ts
            elif etype in _FORM_EVENTS:
                if a is not None and (type(a) is not str or len(a) > MAX_NAME):
                    return None
                if forms:
                    sess.form_event(etype, ts, a)
            else:
                return None  # an unknown type: the engine names it
            if each:  # then what the engine watches at every event, as it does
                if type(ev) is tuple:
                    ev = as_object(ev)
                observe_event(snap, sess, ctx, ts, etype, ev, sustained, streaks)
            if etype in on_types:
                hits = on_event.get(etype if etype != "custom" else "custom:" + a)
                if hits:
                    if type(ev) is tuple:
                        ev = as_object(ev)
                    fire_on_event(dec, sess, ctx, hits, ev, ts)
        now = max(now, last)  # a batch is never older than its newest event

        if scope.sustained:
            observe(scope.sustained, sess, ctx, now)
        if sess.queue:
            _deliver_due(dec, snap, sess, ctx, scope, now)
        state_run, next_check, _ = self.bucket(scope)
        if scope.state_triggers:
            state_run(dec, sess, ctx, now)
        if sess.sequences:
            _observe_steps(snap, sess, ctx, now)
            _sequence_steps(snap, sess, ctx, dec, now)
        return respond(snap, sess, ctx, scope, dec, now, next_check)


def compile_plan(snap: Snapshot) -> Plan | None:
    """The snapshot's plan, or None when every decision would fall back (it reports)."""
    if snap.report:
        return None
    return Plan(snap)


# -- a bucket's state triggers as generated source ------------------------------------------

def compile_state_triggers(triggers: tuple[Trigger, ...]) -> StateRun | None:
    """The engine's state-trigger loop for these triggers, unrolled: caps and static signal
    conditions inline, everything else through the engine's own functions (None: too long
    to compile within a decision, `MAX_SOURCE_CHARS`)."""
    names: dict[str, Any] = {"allowed": allowed, "holds": holds, "signal_holds": signal_holds,
                             "fire_or_queue": _fire_or_queue, "action_of": action_of}
    lines = ["def run(dec, sess, ctx, t):",
             "    fired = sess.fired", "    pv = sess.pv", "    hover = sess.hover",
             "    streaks = sess.streaks"]
    windows: set[int] = set()
    for k, trig in enumerate(triggers):
        tname = f"T{k}"
        names[tname] = trig
        tid = repr(trig.id)
        indent = _capped_guard(lines, trig)
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
        if trig.tier == "queued" and trig.delay_ms > 0:
            lines.append(f"{indent}    fire_or_queue(dec, sess, {tname}, t)")
        else:  # `_fire_or_queue`'s other branch
            lines.append(f"{indent}    dec.fire(sess, {tname}, t, action_of({tname}, "
                         f"{trig.delay_ms!r}))")
    for w in sorted(windows):
        lines.insert(5, f"    v{w} = None")
    run: StateRun | None = _function(lines, 5, names, "run")
    return run


def _condition(c: Any, cname: str, tid: str, names: dict[str, Any],
               windows: set[int] | None) -> str:
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
        if windows is None:  # no shared value: the caller evaluates several moments
            value = f"sess.velocity(t, {w!r})"
        else:
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
    return f"{value} {c.op} {_literal(c, cname)}"


def _literal(c: Condition, cname: str) -> str:
    """The static threshold as a literal (or read from the condition, if not a finite one)."""
    threshold = c.value
    if type(threshold) is int or (type(threshold) is float and math.isfinite(threshold)):
        return repr(threshold)
    return f"{cname}.value"


# -- a bucket's next moments ---------------------------------------------------------------------

_CLOSED_RISING = frozenset((DWELL, SESSION_TIME))


def _function(lines: list[str], head: int, names: dict[str, Any], name: str) -> Any:
    """Compile generated source (`head` lines of set-up, then the body) into the function
    `name`, with `names` (the snapshot's triggers and conditions) as its globals; None
    when the source is longer than MAX_SOURCE_CHARS (the caller runs the engine's loop)."""
    if len(lines) == head:
        lines.append("    pass")
    source = "\n".join(lines) + "\n"
    if len(source) > MAX_SOURCE_CHARS:
        return None
    code = compile(source, "<decision plan>", "exec")
    exec(code, names)  # noqa: S102 - source generated from the loaded snapshot
    return names[name]


def _capped_guard(lines: list[str], trig: Trigger, pad: str = "    ") -> str:
    """Append the source that reads `trig`'s fire record (`rec`) and, when it has caps, the
    test that they are not reached (per session, per page; `pv`: the page view); returns
    the indent of the code the test guards."""
    lines.append(f"{pad}rec = fired.get({trig.id!r})")
    caps = []
    if trig.per_session is not None:
        caps.append(f"rec[0] >= {trig.per_session!r}")
    if trig.per_page is not None:
        caps.append(f"(rec[{PAGE_PV}] == pv and rec[{PAGE_FIRES}] >= {trig.per_page!r})")
    if not caps:
        return pad
    lines.append(f"{pad}if rec is None or not ({' or '.join(caps)}):")
    return pad + "    "


def _closed_form(trig: Trigger) -> bool:
    """`next_fire` of `trig` is one moment computed from its conditions: each is a context or
    segment test, or a static signal condition that time leaves steady, only ever stops
    holding, or (dwell, session time) starts holding at a moment known now."""
    for c in trig.conditions:
        if type(c) is Condition:
            if c.motion == CHANGING:
                return False
            if c.motion == RISING and (c.signal not in _CLOSED_RISING or not c.static or
                                       c.hybrid or c.test is not OP_FUNCS.get(c.op) or
                                       c.op not in (">=", ">")):
                return False
        elif type(c) not in (ContextCond, SegmentCond):
            return False  # sustained: rising from a moment the session keeps
    return True


def compile_next_moments(triggers: tuple[Trigger, ...]) -> TimedMoments | None:
    """`next_fire` for each of these triggers, appending its moment to `out`: written out
    for the closed-form ones, the engine's own for the rest (None: too long to compile
    within a decision, `MAX_SOURCE_CHARS`)."""
    names: dict[str, Any] = {"allowed": allowed, "holds": holds, "signal_holds": signal_holds,
                             "next_fire": next_fire, "ceil": math.ceil, "floor": math.floor}
    lines = ["def timed(sess, ctx, now, out):",
             "    fired = sess.fired", "    pv = sess.pv", "    hover = sess.hover",
             "    streaks = sess.streaks", f"    horizon = now + {HORIZON_MS!r}"]
    for k, trig in enumerate(triggers):
        tname = f"T{k}"
        names[tname] = trig
        if not _closed_form(trig):
            lines += [f"    at = next_fire({tname}, sess, ctx, now)",
                      "    if at is not None:", "        out.append(at)"]
            continue
        tid = repr(trig.id)
        pad = _capped_guard(lines, trig)
        lines.append(f"{pad}at = now + 1")
        if trig.cooldown_ms:
            lines += [f"{pad}if rec is not None and rec[{LAST_FIRED}] is not None:",
                      f"{pad}    at = max(at, rec[{LAST_FIRED}] + {trig.cooldown_ms!r})"]
        if trig.consecutive > 1:
            lines.append(f"{pad}if streaks.get({tid}, 0) >= {trig.consecutive!r}:")
            pad += "    "
        lines.append(f"{pad}t = now")
        steady = []
        for j, c in enumerate(trig.conditions):
            cname = f"C{k}_{j}"
            names[cname] = c
            if c.motion != RISING:
                steady.append(_condition(c, cname, tid, names, None))
        if steady:
            lines.append(f"{pad}if {' and '.join(steady)}:")
            pad += "    "
        for j, c in enumerate(trig.conditions):
            if c.motion == RISING:  # `first_true`: value(t) = t - base grows by 1 per ms
                base = "pv" if c.signal == DWELL else "sess.start_ms"
                threshold = _literal(c, f"C{k}_{j}")
                holds_now = _condition(c, f"C{k}_{j}", tid, names, None)
                crossing = f"floor({base} + {threshold}) + 1" if c.op == ">" else \
                    f"ceil({base} + {threshold})"
                lines += [f"{pad}if not ({holds_now}):",
                          f"{pad}    at = max(at, {crossing})"]
        # then `fires` at that moment, as the engine checks it
        tests = [f"(rec is None or allowed({tname}, sess, ctx, t))" if trig.plain
                 else f"allowed({tname}, sess, ctx, t)"]
        tests += [_condition(c, f"C{k}_{j}", tid, names, None)
                  for j, c in enumerate(trig.conditions)]
        lines += [f"{pad}t = at", f"{pad}if t <= horizon and {' and '.join(tests)}:",
                  f"{pad}    out.append(t)"]
    timed: TimedMoments | None = _function(lines, 6, names, "timed")
    return timed


# The fields the loop reads of each type, in a compact event's order (None: no field).
_NO_FIELDS = (None, None)
_FIELDS: dict[str, tuple[str | None, str | None]] = {
    "scroll": ("depth", "y"), "mousemove": ("x", "y"), "hover": ("target", "duration_ms"),
    "custom": ("name", None), "page_view": ("url", None), "dismiss": (None, None),
    **{name: ("target", None) for name in _FORM_EVENTS}}


# Compact events by their number of fields (the engine refuses any other tuple).
_TWO_FIELDS = frozenset(k for k, names in COMPACT_EVENTS.items() if len(names) == 2)
_ONE_FIELD = frozenset(k for k, names in COMPACT_EVENTS.items() if len(names) == 1)


def _head(ev: Any) -> tuple[Any, Any] | None:
    """An event's type and ts_ms, compact or an object; None for anything else (a tuple too
    short raises: the engine answers for it)."""
    if type(ev) is tuple:
        return ev[0], ev[1]
    if type(ev) is dict:
        return ev.get("type"), ev.get("ts_ms")
    return None


def _plain(raw: list[Any]) -> bool:
    """Whether the plan can apply the whole batch as far as its shape goes: objects of known
    types, whole timestamps in order, at most MAX_PAGE_VIEWS page views."""
    last = views = 0
    for ev in raw:
        head = _head(ev)
        if head is None:
            return False
        etype, ts = head
        if type(ts) is not int or not last <= ts <= MAX_TIME_MS or type(etype) is not str \
                or etype not in _EVENT_TYPES:
            return False
        last = ts
        if etype == "page_view":
            views += 1
    return views <= MAX_PAGE_VIEWS
