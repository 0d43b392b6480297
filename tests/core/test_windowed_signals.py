"""Windowed signals (scroll velocity, mouse entropy, event counts, field aggregates): the
values the session computes by bisection and running totals equal a plain scan of the
series, the series keep what they kept before for events in time order, a late batch
leaves the past alone, and the work of a batch grows with its events, not with events x
window (a hostile batch of 500 events to a `sustained` condition scanned 500 x 256
samples before: 65 ms in the component, over the decide deadline)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_module.core import decide_packed, load_snapshot, pack
from edge_module.core.errors import DecisionError
from edge_module.core.session import MAX_SAMPLES, MAX_TRACKED, Session
from edge_module.core.state_checks import readable_state
from tests.factories import T0, ev, loaded, snapshot_text
from tests.factories import Session as Visit

# -- the plain scans, as the session computed them before (in time order) ------------------


def scan_velocity(samples: list[list[Any]], t: int, window: int) -> float:
    lo = t - window
    moved = [abs(samples[i][1] - samples[i - 1][1]) for i in range(1, len(samples))
             if lo < samples[i][0] <= t]
    return math.fsum(moved) * 1000.0 / window


def scan_entropy(mouse: list[list[int]], t: int, window: int) -> float:
    counts = [0] * 8
    for ts, sector in mouse:
        if t - window < ts <= t:
            counts[sector] += 1
    n = sum(counts)
    if n == 0:
        return 0.0
    return round(-math.fsum(c / n * math.log2(c / n) for c in counts if c), 12) + 0.0


def scan_count(times: list[int], t: int, window: int) -> int:
    return sum(1 for ts in times if t - window < ts <= t)


def scan_last(times: list[int], t: int) -> int | None:
    return max((ts for ts in times if ts <= t), default=None)


def scan_aggregate(fn: str, values: list[list[Any]], t: int, window: int) -> float | None:
    inside = [v for ts, v in values if t - window < ts <= t]
    if not inside:
        return None
    if fn in ("min", "max"):
        return {"min": min, "max": max}[fn](inside)
    return round(math.fsum(inside) / len(inside), 12) + 0.0


def kept_before(series: list[Any], entry: Any, cutoff: int, ts_of: Callable[[Any], int]) -> list:
    """What the session kept of a tracked series before (append, then the last
    MAX_TRACKED after `cutoff`), for entries in time order."""
    series = [*series, entry]
    if len(series) > MAX_TRACKED or ts_of(series[0]) <= cutoff:
        series = [e for e in series[-MAX_TRACKED:] if ts_of(e) > cutoff]
    return series


# -- sessions driven by random operations --------------------------------------------------

WINDOWS = (50, 300, 1000, 5000)
KEEP = 5000


@st.composite
def operations(draw: Any) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    t = 0
    for _ in range(draw(st.integers(1, 160))):
        kind = draw(st.sampled_from(("scroll", "scroll", "move", "move", "click", "field",
                                     "eval", "eval", "eval", "late", "fit")))
        t += draw(st.sampled_from((0, 0, 1, 7, 40, 300)))
        if kind == "late":  # an event older than the newest: a late batch
            kind = draw(st.sampled_from(("scroll", "move", "click", "field")))
            at = t - draw(st.integers(1, 2000))
        else:
            at = t
        if kind == "scroll":
            ops.append(("scroll", at, draw(st.one_of(st.integers(0, 9000),
                                                     st.floats(0, 9000, allow_nan=False)))))
        elif kind == "move":
            ops.append(("move", at, draw(st.integers(-50, 50)), draw(st.integers(-50, 50))))
        elif kind == "click":
            ops.append(("click", at))
        elif kind == "field":
            ops.append(("field", at, draw(st.one_of(st.integers(0, 100),
                                                    st.floats(0, 100, allow_nan=False)))))
        elif kind == "fit":
            ops.append(("fit", draw(st.integers(200, 3000))))
        else:
            ops.append(("eval", t + draw(st.integers(-2500, 2500)),
                        draw(st.sampled_from(WINDOWS))))
    return ops


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations())
def test_windowed_values_equal_a_plain_scan_and_series_keep_what_they_kept(ops):
    sess = Session(T0)
    sess.enter_page("/p", T0)
    mouse_at: list[float] = []
    samples: list[list[Any]] = [[T0, 0.0]]
    mouse: list[list[int]] = []
    clicks: list[int] = []
    fields: list[list[Any]] = []
    for op in ops:
        if op[0] == "scroll":
            ts = T0 + op[1]
            sess.scroll_to(ts, op[2])
            if ts >= samples[-1][0]:  # a late sample is left out
                samples = [*samples, [ts, op[2]]][-MAX_SAMPLES:]
        elif op[0] == "move":
            ts = T0 + op[1]
            sess.mouse_to(ts, op[2], op[3], KEEP)
            if mouse and ts < mouse[-1][0]:
                continue  # a late move is left out, and the mouse is not there
            if mouse_at and (op[2] - mouse_at[0] or op[3] - mouse_at[1]):
                sector = int((math.atan2(op[3] - mouse_at[1], op[2] - mouse_at[0]) + math.pi)
                             / (2 * math.pi) * 8) % 8
                mouse = kept_before(mouse, [ts, sector], ts - KEEP, lambda m: m[0])
            mouse_at = [op[2], op[3]]
        elif op[0] == "click":
            ts = T0 + op[1]
            sess.track("click", ts, KEEP)
            if clicks and ts >= clicks[-1] or not clicks:
                clicks = kept_before(clicks, ts, ts - KEEP, lambda c: c) if clicks else [ts]
            else:  # a late click takes its place in time
                clicks = sorted([*clicks, ts])
                if len(clicks) > MAX_TRACKED or (len(clicks) > 1 and clicks[0] <= ts - KEEP):
                    clicks = [c for c in clicks[-MAX_TRACKED:] if c > ts - KEEP] or [ts]
        elif op[0] == "field":
            ts = T0 + op[1]
            sess.field_value("f", ts, op[2], KEEP)
            if not fields or ts >= fields[-1][0]:
                fields = kept_before(fields, [ts, op[2]], ts - KEEP, lambda v: v[0])
            else:
                fields = sorted([*fields, [ts, op[2]]], key=lambda v: v[0])
                fields = [v for v in fields[-MAX_TRACKED:] if v[0] > ts - KEEP]
        elif op[0] == "fit":  # forgets the oldest samples and moves, as a full state does
            sess.fit(op[1])
            samples, mouse = sess.samples[:], sess.mouse[:]
            continue
        else:
            t, window = T0 + op[1], op[2]
            assert sess.velocity(t, window) == scan_velocity(samples, t, window)
            assert sess.entropy(t, window) == scan_entropy(mouse, t, window)
            assert sess.count("click", t, window) == scan_count(clicks, t, window)
            assert sess.last("click", t) == scan_last(clicks, t)
            for fn in ("min", "max", "avg"):
                assert sess.aggregate(fn, "f", t, window) == scan_aggregate(fn, fields, t, window)
        assert sess.samples == samples
        assert sess.mouse == mouse
        assert sess.tracked.get("click", []) == clicks
        assert sess.fields.get("f", []) == fields


def test_a_velocity_is_the_exact_sum_of_the_distances_read_either_way():
    """Over more than a few samples the running totals answer; they sum exactly, as fsum
    does, where adding the floats in turn would not."""
    sess = Session(T0)
    sess.enter_page("/p", T0)
    y = 0.0
    for i in range(1, 60):
        y += 0.1 if i % 2 else 1e-9
        sess.scroll_to(T0 + i, y)
    for window in (5, 30, 59):
        expected = math.fsum([0.1 if i % 2 else 1e-9 for i in range(60 - window, 60)]
                             ) * 1000.0 / window
        assert sess.velocity(T0 + 59, window) == scan_velocity(sess.samples, T0 + 59, window)
        assert math.isclose(sess.velocity(T0 + 59, window), expected, rel_tol=1e-9)


def test_a_late_scroll_batch_leaves_the_sessions_own_speed_alone():
    """The baseline of `velocity_spike: {baseline: session}`: 20 one-pixel jiggles arriving
    late once took it from 1,000 to 11,000 px/s (each measured from the newest sample)."""
    sess = Session(T0)
    sess.enter_page("/p", T0)
    for i in range(1, 11):
        sess.scroll_to(T0 + 10_000 + i * 100, i * 100)
    before = sess.session_speed()
    for i in range(20):
        sess.scroll_to(T0 + 5_000 + i * 10, 500 + i % 2)
    assert sess.session_speed() == before


def test_a_state_stored_before_series_were_kept_in_time_order_is_sorted_as_it_is_read():
    """States written before appended late events: read by bisection unsorted, a count of
    5 clicks in the last second was 0. The core marks its own ("o"), and an edge of the
    version before reads them as they are (same version: no session lost in a deploy)."""
    clicks = [T0 + 9_400, T0 + 9_000, T0 + 9_100, T0 + 9_200, T0 + 9_300, T0 + 1_400]
    state = {"v": 1, "t0": T0, "url": "/p", "pv": T0, "d": 0.0, "sc": [[T0, 0.0]], "hv": {},
             "f": {}, "q": [], "ev": {"click": clicks[:]},
             "ms": [[T0 + 900, 3], [T0 + 200, 5]], "mp": [1, 1]}
    sess = Session.from_state(state, T0 + 9_500)
    assert sess.count("click", T0 + 9_500, 1000) == scan_count(clicks, T0 + 9_500, 1000) == 5
    assert sess.last("click", T0 + 9_500) == T0 + 9_400
    assert sess.mouse == [[T0 + 200, 5], [T0 + 900, 3]]
    written = sess.to_state({})
    assert written["v"] == 1 and written["o"] == 1
    assert readable_state(written)


@pytest.mark.parametrize("parts", [
    {"ev": {"click": []}},  # an empty list the core never writes
    {"sc": [{"ts": 1}, {"ts": 2}]},  # entries that are not pairs, in an unmarked state
    {"fv": {"f": [{}, {}]}},
])
def test_a_stored_state_altered_outside_the_core_never_raises(parts):
    state = {"v": 1, "t0": T0, "url": "/p", "pv": T0, "d": 0.0, "sc": [[T0, 0.0]], "hv": {},
             "f": {}, "q": [], **parts}
    sess = Session.from_state(state, T0 + 100)
    sess.track("click", T0 + 100, KEEP)
    assert sess.count("click", T0 + 100, 1000) == 1


def test_a_velocity_beyond_2_53_px_is_the_same_read_either_way():
    """Whole pixels up to 2**53 are accepted; their distances go to the sum as floats, as
    fsum takes them, whether the window holds few samples or many."""
    sess = Session(T0)
    sess.enter_page("/p", T0)
    for i in range(1, 40):
        sess.scroll_to(T0 + i, (2**53 - 1) * (i % 2) - (i % 3))
    for window in (5, 30):
        assert sess.velocity(T0 + 39, window) == scan_velocity(sess.samples, T0 + 39, window)


# -- decisions: a late batch, on every decider -------------------------------------------

LATE = """
pack: late
triggers:
  - id: fast
    page: /p
    when: [{scroll_velocity: {gte: 1500, window: 1s}}]
    action: {content: fast}
  - id: rage
    page: /p
    on: click
    when: [{count: {event: click, window: 2s, gte: 3}}]
    action: {content: calm}
"""


def test_a_late_scroll_batch_leaves_the_velocity_alone_and_late_clicks_count(decider):
    v = Visit(loaded(decider, LATE), url="/p")
    out = v.send([ev("page_view", 0, url="/p"), ev("scroll", 2000, depth=0.1, y=100),
                  ev("click", 2100, target="#b")], 2100)
    assert out["actions"] == []
    # a batch from before the last one (a retry that arrived late): 3000 px in 500 ms
    # then would be a fast scroll at 1.5 s, but the page has moved on
    out = v.send([ev("scroll", 1000, depth=0.5, y=1600), ev("scroll", 1500, depth=0.9, y=3100)],
                  2200)
    assert [a["trigger"] for a in out["actions"]] == []
    # its clicks still count: two late ones and one now make three within 2 s
    out = v.send([ev("click", 1900, target="#b"), ev("click", 1950, target="#b")], 2300)
    assert out["actions"] == []
    out = v.send([ev("click", 2300, target="#b")], 2300)
    assert [a["trigger"] for a in out["actions"]] == ["rage"]


# -- the work of a batch ------------------------------------------------------------------

def _opcodes(call: Callable[[], object]) -> int:
    """Bytecodes the interpreter runs for `call`: a count, not a time (the same on any
    machine), which grows with the scans in Python this file is about."""
    count = 0

    def tracer(frame: Any, event: str, _arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


SUSTAINED = {
    "velocity": ("scroll_velocity: '< 1000000'", "scroll"),
    "entropy": ("mouse_entropy: {gte: 0, window: 3s}", "mousemove"),
    "count": ("count: {event: click, gte: 1, window: 3s}", "click"),
    "average": ("avg: {field: hover.duration_ms, window: 3s, gte: 1ms}", "hover"),
    # the intent score reads velocity and entropy at once: their totals must not evict
    # each other (they did once: 90 ms natively for 500 mixed events)
    "intent": ("intent: '>= 0'", "mixed"),
}
INTENT_MODEL = """models:
  intent:
    bias: -3.0
    weights: {dwell: 1.2, scroll_depth: 2.0, mouse_entropy: 1, scroll_velocity: 1}
    scale: {dwell: 10000}
"""


def _batch(kind: str, n: int) -> list[dict[str, Any]]:
    events = [ev("page_view", 0, url="/p")]
    for i in range(1, n):
        if kind == "scroll":
            events.append(ev("scroll", i, depth=0.5, y=(i % 50) * 13.5))
        elif kind == "mousemove":
            a = i * 2.4
            events.append(ev("mousemove", i, x=500 + 100 * math.cos(a) * (i % 7 + 1),
                             y=500 + 100 * math.sin(a) * (i % 5 + 1)))
        elif kind == "click":
            events.append(ev("click", i, target="#b"))
        elif kind == "mixed":
            events.extend(_batch(("scroll", "mousemove")[i % 2], i + 1)[i:i + 1])
        else:
            events.append(ev("hover", i, target="#b", duration_ms=100 + i % 9))
    return events


def test_a_batch_costs_in_proportion_to_its_events_under_a_sustained_condition():
    """Each signal held `sustained` is read at every event of a batch: 10 times the events
    cost about 10 times the work (it was 40-60 times: each reading scanned the window)."""
    for name, (condition, kind) in SUSTAINED.items():
        snap = load_snapshot(snapshot_text(
            "pack: held\n" + (INTENT_MODEL if name == "intent" else "") +
            "triggers:\n  - id: held\n    page: /p\n    when:\n      - sustained:"
            f"\n          for: 5s\n          when: [{{{condition}}}]\n    action: {{content: c}}\n"))
        work = {}
        for n in (50, 500):
            envelope = pack((None, None, {"session_id": "s", "now_ms": T0 + n,
                                          "context": {"url": "/p"}, "events": _batch(kind, n)}))
            decide_packed(snap, envelope)
            work[n] = _opcodes(partial(decide_packed, snap, envelope))
        assert work[500] < 13 * work[50], (name, work)


def test_a_batch_the_plan_would_leave_to_the_engine_at_its_end_is_not_applied_twice():
    """Out of order (or of an unknown type) at its last event: the plan applied 499 events,
    then the engine the batch again; now the engine alone."""
    condition, kind = SUSTAINED["velocity"]
    snap = load_snapshot(snapshot_text(
        "pack: held\ntriggers:\n  - id: held\n    page: /p\n    when:\n      - sustained:"
        f"\n          for: 5s\n          when: [{{{condition}}}]\n    action: {{content: c}}\n"))
    ordered = _batch(kind, 500)
    late = [*ordered[:-1], {**ordered[-1], "ts_ms": ordered[0]["ts_ms"]}]
    unknown = [*ordered[:-1], {**ordered[-1], "type": "teleport"}]
    work = {}
    for name, events in (("ordered", ordered), ("late", late), ("unknown", unknown)):
        envelope = pack((None, None, {"session_id": "s", "now_ms": T0 + 500,
                                      "context": {"url": "/p"}, "events": events}))

        def decide(e: str = envelope) -> None:
            try:
                decide_packed(snap, e)
            except DecisionError:
                pass  # the unknown type: refused, as it should be

        decide()
        work[name] = _opcodes(decide)
    # (the engine refuses the unknown type when it reaches it: once, not twice)
    assert work["late"] < 1.3 * work["ordered"] and work["unknown"] < 1.3 * work["ordered"], work
