"""The guest's kept sessions (session_cache.py) decide exactly as the stored state does:
a session served again by the instance that wrote its state gets the same response and
the same state (values and their types) as one read from the bytes, on every documented
example, on generated packs and sessions, with and without the snapshot's plan, and on
malformed batches; a state the instance did not write last is read from its bytes."""

from __future__ import annotations

import json
import marshal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from control_plane.rulepack import compile_snapshot, load_pack
from edge_module.core import Snapshot, decide_packed, error_json, load_snapshot, unpack
from edge_module.core import pack as pack_value
from edge_module.core.session import Session
from edge_module.core.session_cache import SessionCache
from tests.core.test_plan_differential import (
    _LANGUAGE,
    _scripted,
    batches,
    contexts,
    events,
    malformed,
    packs,
    typed,
)
from tests.event_strategies import URLS
from tests.factories import T0
from tests.reference_examples import EXAMPLES, IDS


def outcome(snap: Snapshot, packed: str, sessions: SessionCache | None) -> tuple[Any, ...]:
    """(ok, typed response, typed state, state bytes) or (False, error)."""
    try:
        response, state = unpack(decide_packed(snap, packed, sessions))  # type: ignore[misc]
        return True, typed(response), typed(marshal.loads(state)), state
    except Exception as exc:  # noqa: BLE001 - errors must agree too
        return False, json.loads(error_json(exc))


def run_kept(snap: Snapshot, visit: list[tuple[list[Any], int]], session: str = "k-1",
             context: dict[str, Any] | None = None, url: str = "/",
             plan: bool = True, report: bool = False) -> SessionCache:
    """Decide each batch twice, each path on the state it wrote itself: with kept sessions
    and without; asserts the answers agree. Returns the cache (for its hit count)."""
    saved = snap.plan
    if not plan:
        snap.plan = None
    sessions = SessionCache()
    kept_state: bytes | None = None
    read_state: bytes | None = None
    try:
        for evs, now in visit:
            request = {"session_id": session, "now_ms": T0 + now,
                       "context": {**(context or {}), "url": url}, "events": evs}
            expected = outcome(snap, pack_value((None, read_state, request, report)), None)
            got = outcome(snap, pack_value((None, kept_state, request, report)), sessions)
            assert got[:3] == expected[:3]
            if expected[0]:
                read_state, kept_state = expected[3], got[3]
    finally:
        snap.plan = saved
    return sessions


def _snap(text: str, name: str = "x.yaml") -> Snapshot:
    return load_snapshot(json.dumps(compile_snapshot([load_pack(text, name)], "doc", 0)))


# -- the root property: a session is, after writing its state, what the state restores ----------

def slots(sess: Session) -> dict[str, Any]:
    return {name: typed(getattr(sess, name)) for name in Session.__slots__}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visit=batches, context=contexts, url=st.sampled_from(URLS))
def test_a_session_after_writing_its_state_is_what_the_state_restores(visit, context, url):
    snap = load_snapshot(_LANGUAGE)
    sessions = SessionCache()
    state: bytes | None = None
    for evs, now in visit:
        request = {"session_id": "r", "now_ms": T0 + now, "context": {**context, "url": url},
                   "events": evs}
        try:
            _response, state = unpack(decide_packed(snap, pack_value((None, state, request)),
                                                    sessions))  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a refused batch leaves the state as it was
            continue
        kept = sessions._entries.get("r")
        if kept is not None:
            restored = Session.restore(marshal.loads(state))
            assert restored is not None and slots(kept[1]) == slots(restored)


# -- the differential ---------------------------------------------------------------------------

@pytest.mark.parametrize("plan", [True, False], ids=["plan", "engine"])
@pytest.mark.parametrize("heading, text", EXAMPLES, ids=IDS)
def test_kept_sessions_decide_every_documented_example_as_their_state(heading, text, plan):
    snapshot = compile_snapshot([load_pack(text, f"{heading}.yaml")], "doc", 0)
    snap = load_snapshot(json.dumps(snapshot))
    pages = [p for t in snapshot["triggers"] for p in t.get("pages", []) if "*" not in p]
    for url in ["/", *pages[:1]]:
        sessions = run_kept(snap, _scripted(url), context={"device": "mobile", "country": "DE",
                                                           "local_hour": 20}, url=url,
                            plan=plan)
        assert sessions.hits >= 2  # kept sessions were used, not silently bypassed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visit=batches, context=contexts, url=st.sampled_from(URLS), plan=st.booleans(),
       report=st.booleans())
def test_kept_sessions_agree_on_the_whole_language(visit, context, url, plan, report):
    run_kept(load_snapshot(_LANGUAGE), visit, "k", context, url, plan, report)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pack_text=packs(), visit=batches, context=contexts, url=st.sampled_from(URLS),
       plan=st.booleans(), report=st.booleans())
def test_kept_sessions_agree_on_generated_packs(pack_text, visit, context, url, plan, report):
    try:
        snap = _snap(pack_text, "g.yaml")
    except Exception:  # noqa: BLE001 - a combination the language refuses
        assume(False)
    run_kept(snap, visit, context=context, url=url, plan=plan, report=report)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visit=st.lists(st.tuples(st.lists(st.one_of(events, malformed), max_size=12),
                                st.integers(0, 30_000)), min_size=1, max_size=5),
       url=st.sampled_from(URLS), plan=st.booleans())
def test_kept_sessions_agree_around_malformed_batches(visit, url, plan):
    run_kept(load_snapshot(_LANGUAGE), visit, url=url, plan=plan)


# -- when a kept session is not used ------------------------------------------------------------

def _request(session: str, at: int, *evs: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": session, "now_ms": T0 + at, "events": list(evs),
            "context": {"url": "/pricing"}}


def _view(at: int) -> dict[str, Any]:
    return {"type": "page_view", "ts_ms": T0 + at, "url": "/pricing"}


def _scroll(at: int, depth: float) -> dict[str, Any]:
    return {"type": "scroll", "ts_ms": T0 + at, "depth": depth, "y": int(depth * 4000)}


PRICING = """
pack: p
triggers:
  - id: nudge
    page: /pricing
    when: [{dwell: ">= 3s"}, {scroll_depth: ">= 0.7"}]
    cap: {per_session: 1}
    action: {content: discount}
"""


def _decide(snap: Snapshot, state: bytes | None, request: dict[str, Any],
            sessions: SessionCache | None) -> tuple[dict[str, Any], bytes]:
    return unpack(decide_packed(snap, pack_value((None, state, request)),  # type: ignore
                                sessions))


def test_a_state_the_instance_did_not_write_last_is_read_from_its_bytes():
    """Another instance decided in between (the host's store holds its newer state), or
    the store went back to an older state: the kept session is not used, and it is gone."""
    snap = _snap(PRICING)
    sessions = SessionCache()
    _, first = _decide(snap, None, _request("v", 0, _view(0)), sessions)
    _, second = _decide(snap, first, _request("v", 500, _scroll(400, 0.9)), sessions)
    assert len(sessions) == 1
    # elsewhere: the same session went on without this instance (no deep scroll there)
    _, elsewhere = _decide(snap, first, _request("v", 600, _scroll(550, 0.1)), None)
    response, _ = _decide(snap, elsewhere, _request("v", 3_500), sessions)
    expected, _ = _decide(snap, elsewhere, _request("v", 3_500), None)
    assert response == expected and response["actions"] == []
    assert sessions.hits == 1 and sessions.misses == 2  # the second request found its session
    # and back: the store returns the state this instance wrote before the other one
    response, _ = _decide(snap, second, _request("v", 3_600), sessions)
    assert response == _decide(snap, second, _request("v", 3_600), None)[0]
    assert [a["trigger"] for a in response["actions"]] == ["nudge"]


def test_a_refused_decision_keeps_nothing_and_the_next_reads_the_bytes():
    snap = _snap(PRICING)
    sessions = SessionCache()
    _, first = _decide(snap, None, _request("v", 0, _view(0)), sessions)
    _, second = _decide(snap, first, _request("v", 500, _scroll(400, 0.9)), sessions)
    bad = _request("v", 900, _scroll(800, 0.95))
    bad["context"] = {"url": "/pricing", "locale": "not a locale at all"}
    with pytest.raises(Exception, match="locale"):
        _decide(snap, second, bad, sessions)
    assert len(sessions) == 0
    response, _ = _decide(snap, second, _request("v", 3_500), sessions)
    assert [a["trigger"] for a in response["actions"]] == ["nudge"]


def test_the_cache_is_bounded_by_entries_and_by_bytes_oldest_first():
    sess = Session(T0)
    cache = SessionCache(max_entries=3, max_bytes=100)
    for i in range(5):
        cache.keep(f"s{i}", b"x" * 10, sess)
    assert len(cache) == 3 and cache.take("s1", b"x" * 10) is None
    assert cache.take("s4", b"x" * 10) is sess
    cache.keep("big", b"y" * 60, sess)
    cache.keep("bigger", b"z" * 60, sess)  # 120 bytes: the oldest go until within 100
    assert len(cache) == 1 and cache.take("bigger", b"z" * 60) is sess
    cache.keep("huge", b"h" * 101, sess)  # beyond the budget alone: not kept
    assert len(cache) == 0


def test_a_session_is_kept_once_however_often_it_is_decided():
    snap = _snap(PRICING)
    sessions = SessionCache()
    state = None
    for at in range(0, 5_000, 250):
        _, state = _decide(snap, state, _request("one", at, _scroll(at, 0.1)), sessions)
    assert len(sessions) == 1 and sessions.hits >= 18


def _stored(**parts: Any) -> bytes:
    """A stored state as an older core, another snapshot or a crafted store could hold."""
    state = {"v": 1, "t0": T0, "url": "/pricing", "pv": T0, "d": 0.2, "sc": [[T0, 0.0]],
             "hv": {}, "f": {}, "q": [], **parts}
    return marshal.dumps(state, 4)


@pytest.mark.parametrize("parts", [
    {"dp": 0}, {"dp": -0.0}, {"dm": -5}, {"fn": 0, "fd": [T0]}, {"ms": [[T0, 1, 1]]},
    {"f": {"gone": [1, T0, 1, T0], "nudge": [1, T0, 1, T0]}},
    {"fn": 2, "fd": [T0, T0 + 1], "dm": T0, "dp": 0.5, "mp": [1.0, 2.0]},
], ids=["int-zero-position", "negative-zero-position", "dismissed-below-none",
        "deliveries-without-a-total", "mouse-without-a-position", "a-removed-trigger-fired",
        "everything-kept"])
def test_a_kept_session_is_what_its_state_restores_whatever_it_was_read_from(parts):
    """What `to_state` leaves out (empty parts, fire records of triggers not in the
    snapshot) is dropped from the live session too, so keeping it changes nothing."""
    snap = _snap(PRICING)
    sessions = SessionCache()
    state = _stored(**parts)
    for at, evs in ((100, ()), (3_500, (_scroll(3_450, 0.8),)), (4_000, ())):
        _, state = _decide(snap, state, _request("c", at, *evs), sessions)
        kept = sessions._entries["c"][1]
        restored = Session.restore(marshal.loads(state))
        assert restored is not None and slots(kept) == slots(restored)
    assert sessions.hits == 2


def test_a_stored_state_whose_parts_share_one_object_is_none_of_ours_kept_or_not():
    """The core never writes one object into two parts, but marshal keeps what a tampered
    store shares: a part emptied (so left out of the next state) would stay shared in a
    kept session, while the state read again has two. Such a state starts a fresh session,
    as any state the core did not write does."""
    snap = _snap(PRICING + """
  - id: form
    page: /pricing
    when: [{focus_to_input: {gte: 1s, target: "email"}}]
    action: {content: x}
""")
    shared = {"f1": T0}
    state = {"v": 1, "t0": T0, "url": "/pricing", "pv": T0, "d": 0.0, "sc": [[T0, 0.0]],
             "hv": {}, "f": {}, "q": [], "fo": shared, "cx": shared}
    assert Session.restore(marshal.loads(marshal.dumps(state, 4))) is None
    assert Session.restore({**state, "cx": dict(shared)}) is not None
    steps = [(100, {"type": "input", "ts_ms": T0 + 100, "target": "f1"}),
             (200, {"type": "focus", "ts_ms": T0 + 200, "target": "email"}), (300, None)]

    def visit(sessions: SessionCache | None) -> list[Any]:
        blob, seen = marshal.dumps(state, 4), []
        for at, event in steps:
            response, blob = _decide(snap, blob, _request("a", at, *[e for e in [event] if e]),
                                     sessions)
            seen.append((response, typed(marshal.loads(blob))))
        return seen

    sessions = SessionCache()
    assert visit(sessions) == visit(None)
    assert sessions.hits == 2
