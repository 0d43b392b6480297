"""Native and component give identical decisions, byte for byte, for generated sessions."""

from __future__ import annotations

import json
import marshal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.cases_language as lang
from edge_module.core import decide_packed, error_json, load_snapshot, pack, pack_envelope, unpack
from tests.cases_decisions import CHECKOUT, COOLDOWN, HOVER, MANY, PAGES, PRICING, VELOCITY
from tests.event_strategies import URLS, language_events, ts, valid_events
from tests.factories import T0, ComponentDecider, NativeDecider, snapshot_text

events = st.one_of(
    valid_events,
    # now and then something malformed: errors must agree too
    st.fixed_dictionaries({"type": st.sampled_from(["scroll", "warp"]),
                           "ts_ms": st.one_of(st.none(), st.text(max_size=3), ts)}),
)

batches = st.lists(
    st.tuples(st.lists(events, max_size=25), st.integers(0, 25_000)), min_size=1, max_size=5)


def _values(answer):
    response, state = answer
    return response, marshal.loads(state)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=batches, url=st.sampled_from(URLS))
def test_native_and_component_decide_identically(new_instance, batches, url):
    snapshot = snapshot_text(PRICING, CHECKOUT, VELOCITY, HOVER, PAGES, COOLDOWN, MANY)
    native, component = NativeDecider(), ComponentDecider(new_instance())
    assert native.load(snapshot).text == component.load(snapshot).text
    snap = load_snapshot(snapshot)
    inst = component._inst
    assert inst.load_snapshot(snapshot, 5000).ok
    state = None
    packed_state = None
    for evs, now in batches:
        request = {"session_id": "d-1", "now_ms": T0 + now, "context": {"url": url},
                   "events": evs}
        # the portable JSON export: byte-identical text
        envelope = json.dumps({"now_ms": None, "state": state, "request": request})
        a, b = native.decide(envelope), component.decide(envelope)
        assert (a.ok, a.text) == (b.ok, b.text)
        if a.ok:
            state = a.state
        # the host's packed export: identical decisions and state
        packed = pack((None, packed_state, request))
        try:
            expected = (True, unpack(decide_packed(snap, packed)))
        except Exception as exc:  # noqa: BLE001 - compare errors too
            expected = (False, json.loads(error_json(exc)))
        got = inst.decide_packed(packed, 1000)
        # (marshal bytes of equal values may differ between CPython versions: compare values)
        assert (got.ok, _values(unpack(got.text)) if got.ok else json.loads(got.text)) == \
            (expected[0], _values(expected[1]) if got.ok else expected[1])
        # and with its events compact, as the edge host packs them
        compact = inst.decide_packed(pack_envelope(None, packed_state, request), 1000)
        assert (compact.ok, _values(unpack(compact.text)) if compact.ok else
                json.loads(compact.text)) == (expected[0], _values(expected[1]) if got.ok
                                              else expected[1])
        if got.ok:
            packed_state = expected[1][1]
        assert a.ok is got.ok
        if a.ok:
            assert expected[1][0] == a.response


# -- the whole language ------------------------------------------------------------------------

def _language_snapshot() -> str:
    no_mobile = "segments:\n  mobile: {device: mobile}\n"  # defined once, by CONTEXT
    return snapshot_text(
        lang.POSITION, lang.SPIKE, lang.ENTROPY, lang.DEPTH, lang.FORMS, lang.FAST_CLICK,
        lang.COUNT, lang.TEMPORAL, lang.VOLUME, lang.CONTEXT, lang.ADAPTIVE.replace(no_mobile, ""),
        lang.INTENT, lang.GROUPS, lang.FATIGUE, lang.SEQUENCE,
        lang.JOURNEY.replace(no_mobile, ""), lang.ROLLOUT, CHECKOUT, COOLDOWN)


pack_events = language_events(["#email", "#card", "#name", "#btn"],
                              ["/checkout", "/signup", "/a", "/b", "/c"])
contexts = st.fixed_dictionaries({
    "device": st.sampled_from(["mobile", "desktop", "tablet"]),
    "country": st.sampled_from(["DE", "FR", "AT"]),
    "local_hour": st.integers(0, 23),
    "weekday": st.sampled_from(["mon", "sat", "sun"]),
    "returning": st.booleans(),
    "referrer": st.sampled_from(["https://www.google.de/", "https://news.example/"]),
    "attributes": st.fixed_dictionaries({"crm_tier": st.sampled_from(["gold", "silver"])}),
})


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=st.lists(st.tuples(st.lists(pack_events, max_size=20), st.integers(0, 90_000)),
                        min_size=1, max_size=5),
       context=contexts, url=st.sampled_from(URLS), session=st.sampled_from(["a", "b", "c"]))
def test_native_and_component_agree_on_the_whole_language(new_instance, batches, context, url,
                                                          session):
    snapshot = _language_snapshot()
    snap = load_snapshot(snapshot)
    inst = new_instance()
    assert inst.load_snapshot(snapshot, 5000).ok
    state = None
    for evs, now in batches:
        request = {"session_id": session, "now_ms": T0 + now, "context": {**context, "url": url},
                   "events": evs}
        packed = pack((None, state, request))
        try:
            expected = (True, _values(unpack(decide_packed(snap, packed))))
        except Exception as exc:  # noqa: BLE001 - errors must agree too
            expected = (False, json.loads(error_json(exc)))
        got = inst.decide_packed(packed, 1000)
        assert (got.ok, _values(unpack(got.text)) if got.ok else json.loads(got.text)) == expected
        got = inst.decide_packed(pack_envelope(None, state, request), 1000)  # events compact
        assert (got.ok, _values(unpack(got.text)) if got.ok else json.loads(got.text)) == expected
        if got.ok:
            state = marshal.dumps(expected[1][1], 4)
