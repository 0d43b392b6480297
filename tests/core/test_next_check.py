"""`next_check_ms` is exact: nothing fires before it, something fires at it, and when it is
null nothing fires later (absent new events). Checked on generated sessions, natively
(the differential test shows the component decides the same)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from edge_module.core import decide, load_snapshot
from tests.cases_decisions import CHECKOUT, COOLDOWN, HOVER, PAGES, PRICING, VELOCITY
from tests.event_strategies import URLS, valid_events
from tests.factories import T0, snapshot_text

SNAPSHOT = load_snapshot(snapshot_text(PRICING, CHECKOUT, VELOCITY, HOVER, PAGES, COOLDOWN))


def call(state, now: int, evs=(), url="/"):
    request = {"session_id": "n", "now_ms": now, "context": {"url": url}, "events": list(evs)}
    return decide(SNAPSHOT, request, copy.deepcopy(state))


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.tuples(st.lists(valid_events, max_size=15), st.integers(0, 20_000)),
                        min_size=1, max_size=4),
       url=st.sampled_from(URLS))
def test_next_check_is_the_first_moment_anything_fires(batches, url):
    state = None
    now = T0
    result = None
    for evs, at in batches:
        now = max(now, T0 + at)
        result = call(state, now, evs, url)
        now = max(now, max((e["ts_ms"] for e in evs), default=now))
        state = result["state"]
    assert result is not None
    due = result["next_check_ms"]
    event("next check announced" if due is not None else "no next check")
    if due is None:
        for later in (1, 10, 999, 1000, 3000, 10_000, 60_000):
            assert call(state, now + later)["actions"] == [], later
    else:
        assert due >= now  # == now: more actions were due than one decision may return
        if due - 1 > now:
            assert call(state, due - 1)["actions"] == []
        assert call(state, due)["actions"] != []


def _both(snap, request, state):
    """(engine, plan) answers to one request: each must announce the same moment."""
    import json

    from edge_module.core import decide_json

    engine = decide(snap, copy.deepcopy(request), copy.deepcopy(state))
    planned = json.loads(decide_json(snap, json.dumps(
        {"now_ms": None, "state": state, "request": request})).partition("\n")[0])
    assert planned["next_check_ms"] == engine["next_check_ms"]
    assert [a["trigger"] for a in planned["actions"]] == \
        [a["trigger"] for a in engine["actions"]]
    return engine


PV = {"type": "page_view", "ts_ms": T0, "url": "/"}


@pytest.mark.parametrize(("condition", "events", "asked", "due"), [
    ('session_time: "== 5s"', [PV], 1000, 5000),
    ("since: {event: click, eq: 3s}", [PV, {"type": "click", "ts_ms": T0 + 100}], 1000, 3100),
    ("absent: {event: input, after: focus, eq: 3s}",
     [PV, {"type": "focus", "ts_ms": T0 + 100}], 1000, 3100),
    ('dwell: "!= 5s"', [PV], 5000, 5001),
    ("scroll_velocity: {eq: 0, window: 1s}",
     [PV, {"type": "scroll", "ts_ms": T0 + 100, "y": 500}], 500, 1100),
    ("count: {event: click, window: 2s, eq: 0}",
     [PV, {"type": "click", "ts_ms": T0 + 100}], 500, 2100),
])
def test_an_equality_that_time_makes_true_is_announced(condition, events, asked, due):
    """A review's six conditions: each was announced as never (null), yet a call at the
    moment fired: `==` and `!=` on a signal time moves were taken for falling ones."""
    snap = load_snapshot(snapshot_text(
        f"pack: p\ntriggers:\n  - id: t\n    when:\n      - {condition}\n"
        "    action: {content: c}\n"))
    first = _both(snap, {"session_id": "s", "now_ms": T0 + asked, "context": {"url": "/"},
                         "events": events}, None)
    assert first["actions"] == [] and first["next_check_ms"] == T0 + due
    state = first["state"]
    if due - 1 > asked:
        early = _both(snap, {"session_id": "s", "now_ms": T0 + due - 1}, copy.deepcopy(state))
        assert early["actions"] == []
    assert [a["trigger"] for a in _both(snap, {"session_id": "s", "now_ms": T0 + due},
                                        state)["actions"]] == ["t"]


def test_a_queued_action_waiting_is_the_next_moment_not_every_millisecond():
    """The documented `tiers` example: while its offer waited 2 s, every answer said
    now + 1, and a client following next_check_ms called 2,002 times."""
    snap = load_snapshot(snapshot_text(
        "pack: tiers\ntriggers:\n  - id: show-offer\n    page: /pricing\n    when:\n"
        '      - dwell: ">= 3s"\n    action: {content: discount-nudge-10, tier: queued, '
        "delay: 2s, priority: 10}\n    cap: {per_session: 1}\n"))
    state, now, calls = None, T0 + 3000, 0
    events = [{"type": "page_view", "ts_ms": T0, "url": "/pricing"}]
    while True:
        answer = _both(snap, {"session_id": "q", "now_ms": now,
                              "context": {"url": "/pricing"}, "events": events}, state)
        state, events, calls = answer["state"], [], calls + 1
        if answer["actions"] or answer["next_check_ms"] is None:
            break
        now = answer["next_check_ms"]
    assert [a["trigger"] for a in answer["actions"]] == ["show-offer"]
    assert (now, calls) == (T0 + 5000, 2)


def test_a_trigger_of_many_windowed_conditions_is_searched_without_evaluating_each_everywhere(
        monkeypatch):
    """A review's validated trigger of 32 mouse-entropy windows: the search evaluated every
    condition at each of ~2,000 moments (240 ms natively, past the component's deadline, so
    every decision of that page was 503). A condition false now is checked alone first."""
    from edge_module.core.session import Session

    lines = ["pack: windows", "triggers:", "  - id: n", "    when:"]
    lines += [f"      - mouse_entropy: {{gte: 0, window: {600 - k}s}}" for k in range(16)]
    lines += [f"      - mouse_entropy: {{eq: 2.99, window: {500 - k}s}}" for k in range(16)]
    lines.append("    action: {content: c}")
    snap = load_snapshot(snapshot_text("\n".join(lines) + "\n"))
    events = [{"type": "page_view", "ts_ms": T0, "url": "/"}] + [
        {"type": "mousemove", "ts_ms": T0 + 1 + i, "x": (i * 7919) % 97,
         "y": (i * 104729) % 89} for i in range(65)]
    calls = [0]
    real = Session.entropy

    def counted(self, t, window_ms):
        calls[0] += 1
        return real(self, t, window_ms)

    monkeypatch.setattr(Session, "entropy", counted)
    answer = _both(snap, {"session_id": "w", "now_ms": T0 + 1000, "context": {"url": "/"},
                          "events": events}, None)
    assert answer["actions"] == [] and answer["next_check_ms"] is None
    assert calls[0] < 2_000, calls[0]  # it was 34,948 (both paths together)
