"""Compact events (compact.py): the edge host packs the common events as tuples, and a
decision on them is the decision on the objects, with the plan and without it, for valid
batches, malformed ones and tuples no host should send."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_module.core import load_snapshot, pack, pack_envelope
from edge_module.core.catalog import COMPACT_EVENTS, EVENT_TYPES
from edge_module.core.compact import compact_events, expand_events
from tests.core.test_plan_differential import _LANGUAGE, answer, events, malformed
from tests.factories import T0

anything = st.one_of(st.none(), st.booleans(), st.integers(-3, T0 + 10**6), st.floats(),
                     st.text(max_size=4), st.lists(st.integers(), max_size=2))
# what a buggy or hostile host could put where an event goes
odd_tuples = st.one_of(
    st.lists(anything, max_size=5).map(tuple),
    st.tuples(st.sampled_from([*EVENT_TYPES, "warp"]), st.integers(T0, T0 + 10**5), anything),
    st.tuples(st.sampled_from([*EVENT_TYPES, "warp"]), st.integers(T0, T0 + 10**5), anything,
              anything),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(events, malformed), max_size=20))
def test_expanding_compact_events_gives_back_the_objects(evs):
    packed = compact_events(evs)
    assert len(packed) == len(evs)
    for ev, out in zip(evs, packed, strict=True):
        if type(out) is tuple:  # exactly the type's fields: nothing dropped
            assert set(ev) == {"type", "ts_ms", *COMPACT_EVENTS[ev["type"]]}
        else:
            assert out is ev
    assert expand_events({"events": packed})["events"] == evs


def test_the_events_a_browser_sends_are_compact():
    batch = [{"type": "page_view", "url": "/pricing", "ts_ms": T0},
             {"type": "scroll", "depth": 0.5, "y": 400, "ts_ms": T0 + 1},
             {"type": "mousemove", "x": 3, "y": 4, "ts_ms": T0 + 2},
             {"type": "hover", "target": "#cta", "duration_ms": 250, "ts_ms": T0 + 3},
             {"type": "custom", "name": "cart_add", "ts_ms": T0 + 4},
             {"type": "click", "target": "#buy", "ts_ms": T0 + 5},  # stays an object
             {"type": "scroll", "depth": 0.6, "ts_ms": T0 + 6}]  # a field short: too
    assert compact_events(batch) == [
        ("page_view", T0, "/pricing"), ("scroll", T0 + 1, 0.5, 400),
        ("mousemove", T0 + 2, 3, 4), ("hover", T0 + 3, "#cta", 250),
        ("custom", T0 + 4, "cart_add"), batch[5], batch[6]]


def _agree(request: dict[str, Any]) -> tuple[Any, ...]:
    """The decision on the objects, and on the compact envelope with and without the plan."""
    snap = load_snapshot(_LANGUAGE)
    expected = answer(snap, pack((None, None, request)), None)
    compact = pack_envelope(None, None, request)
    assert answer(snap, compact, snap.plan) == expected
    assert answer(snap, compact, None) == expected
    return expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=st.lists(st.one_of(events, odd_tuples), min_size=1, max_size=8))
def test_tuples_that_are_not_compact_events_get_the_engines_error(evs):
    evs.sort(key=lambda e: e["ts_ms"] if type(e) is dict else 0)
    request = {"session_id": "c", "now_ms": T0 + 10**6, "context": {"url": "/"}, "events": evs}
    snap = load_snapshot(_LANGUAGE)
    envelope = pack((None, None, request))  # the tuples as they are, the plan first
    expected = answer(snap, envelope, None)
    assert answer(snap, envelope, snap.plan) == expected
    odd = [e for e in evs if type(e) is tuple and expand_events({"events": [e]})["events"][0] is e]
    if odd:  # refused, naming an event: never an internal error
        assert expected[0] is False
        assert expected[1]["code"] == "invalid_event", expected


def test_a_long_batch_the_plan_looks_over_agrees_compact_and_not():
    evs = [{"type": "scroll", "ts_ms": T0 + i, "depth": i / 200, "y": 3 * i} for i in range(150)]

    def request(batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {"session_id": "l", "now_ms": T0 + 500, "context": {"url": "/"}, "events": batch}

    assert _agree(request(evs))[0]
    assert _agree(request([*evs, {"type": "custom", "name": "x", "ts_ms": T0}]))[0]  # late
    bad = {"type": "hover", "target": 7, "duration_ms": 1, "ts_ms": T0 + 200}
    assert _agree(request([*evs, bad]))[1]["field"] == "events[150].target"
