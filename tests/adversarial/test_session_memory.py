"""Issue #11, item 9: session memory is bounded in bytes, per session and per store.

100 distinct 2 KB page paths made one session ~205 KB (1,500 such sessions took an edge
from 144 to 444 MB). The core now keeps each state within MAX_SESSION_BYTES, and every
store bounds its total (memory: LRU by accounted bytes; LMDB: its pages; Redis: per-state
cap, total by the server's maxmemory with volatile-lru).
"""

from __future__ import annotations

import hashlib
import json
import marshal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_module.core.session import MAX_PAGE_KEY, MAX_SESSION_BYTES, page_key, utf8_size
from edge_module.sessions.redis_session_store import RedisSessionStore
from edge_module.sessions.session_store import MemorySessionStore, SessionLeaseLost
from tests.factories import T0, Session, ev, pack, snapshot_text
from tests.servers import put_snapshot, running_edge

PAGES = pack("""
    id: deep-session
    page: "*"
    when:
      - pages: ">= 5"
    action: {content: c}
    cap: {per_session: 1}
""")


def hostile_paths(session: int, count: int, size: int) -> list[str]:
    return [f"/s{session}/p{i:04d}/" + "x" * size for i in range(count)]


def state_bytes(state: Any) -> int:
    return max(len(marshal.dumps(state)), len(json.dumps(state, separators=(",", ":"))))


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(count=st.integers(60, 140), size=st.integers(1000, 2000), hovers=st.integers(0, 70))
def test_many_long_paths_never_grow_a_session_past_its_budget(decider, count, size, hovers):
    assert decider.load(snapshot_text(PAGES)).ok
    visitor = Session(decider, url="/")
    largest = 0
    for i, path in enumerate(hostile_paths(0, count, size)):
        events = [ev("page_view", i * 10, url=path)] + [
            ev("hover", i * 10 + 1, target=f"#t{k}-" + "h" * 200, duration_ms=5)
            for k in range(hovers)]
        visitor.send(events, i * 10 + 2)
        largest = max(largest, state_bytes(visitor.state))
    assert largest <= MAX_SESSION_BYTES


def test_a_normal_session_keeps_everything_it_saw(decider):
    assert decider.load(snapshot_text(PAGES)).ok
    visitor = Session(decider, url="/")
    fired = []
    for i in range(30):
        events = [ev("page_view", i * 1000, url=f"/catalog/item-{i}")] + [
            ev("hover", i * 1000 + 10 * k, target=f"#card-{k}", duration_ms=300)
            for k in range(10)] + [ev("scroll", i * 1000 + 500, depth=0.5, y=900)]
        fired += visitor.send(events, i * 1000 + 600)["actions"]
    assert len(visitor.state["pg"]) == 30  # every page, none forgotten
    assert len(visitor.state["hv"]) == 10
    assert [a["trigger"] for a in fired] == ["deep-session"]


def test_distinct_long_paths_stay_distinct_in_the_page_count(decider):
    assert decider.load(snapshot_text(PAGES)).ok
    visitor = Session(decider, url="/")
    fired = []
    for i in range(6):  # paths alike in their first 2,000 characters
        fired += visitor.send([ev("page_view", i, url="/" + "x" * 2000 + f"/{i}")],
                              i)["actions"]
    assert [a["trigger"] for a in fired] == ["deep-session"]


def _page_key_before(url: str) -> str:
    """page_key as it was: the head shortened a character at a time (84 encodings for a
    path of emoji: 500 such page views trapped the component)."""
    if utf8_size(url) <= MAX_PAGE_KEY:
        return url
    digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    head = MAX_PAGE_KEY - 17
    while utf8_size(url[:head]) > MAX_PAGE_KEY - 17:
        head -= 1
    return url[:head] + "#" + digest


@settings(max_examples=400, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=()), min_size=20, max_size=400)
       | st.lists(st.sampled_from(["a", "é", "€", "😀", "\ud800", "/"]), min_size=20,
                  max_size=400).map("".join))
def test_a_long_path_keeps_the_longest_head_that_fits(url):
    key = page_key(url)
    assert key == _page_key_before(url)
    assert utf8_size(key) <= MAX_PAGE_KEY


# -- the stores' total bound, against a real edge (waitress + the real component) ----------

@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    put_snapshot(tmp_path / "store", snapshot_text(PAGES), 1)
    return tmp_path / "store"


# This is about bytes, not time: a loaded CI machine must not stop a decision at 50 ms.
ROOMY = {"decide_deadline_ms": 2000}


def flood(edge: Any, sessions: int, paths: int = 100, size: int = 2000) -> None:
    """Each session sees `paths` distinct long paths, in batches under the body bound."""
    for s in range(sessions):
        urls = hostile_paths(s, paths, size)
        for start in range(0, paths, 25):
            events = [ev("page_view", start + k, url=u) for k, u in
                      enumerate(urls[start:start + 25])]
            status, body, _ = edge.decide({"session_id": f"flood-{s}", "now_ms": T0 + 100,
                                           "events": events})
            assert status == 200, body


@settings(max_examples=2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bound_mb=st.integers(1, 2), per_mb=st.integers(110, 150))
def test_the_memory_store_keeps_its_byte_bound_under_a_flood(store_dir, bound_mb, per_mb):
    sessions = bound_mb * per_mb  # a flooded session's state is ~13 KB: ~80 fit in 1 MB
    with running_edge(store_dir, session_store_max_mb=bound_mb, **ROOMY) as edge:
        flood(edge, sessions)
        store = edge.host.app.sessions
        assert isinstance(store, MemorySessionStore)
        assert 0 < store.accounted_bytes <= bound_mb << 20
        assert store.evicted > 0 and len(store) < sessions
        status, body, _ = edge.decide({"session_id": "late", "now_ms": T0 + 200,
                                       "context": {"url": "/pricing"}})
        assert status == 200 and edge.host.app.sessions.get("late") is not None


def test_the_lmdb_store_keeps_its_byte_bound_under_a_flood(store_dir, tmp_path):
    with running_edge(store_dir, session_store=f"lmdb:{tmp_path / 'sessions'}",
                      session_store_max_mb=2, **ROOMY) as edge:
        flood(edge, 200)
        store = edge.host.app.sessions
        assert store.accounted_bytes <= 2 << 20
        assert store.evicted > 0
        status, _, _ = edge.decide({"session_id": "late", "now_ms": T0 + 200})
        assert status == 200 and store.get("late") is not None


def test_a_state_over_the_per_state_cap_is_not_kept():
    store = MemorySessionStore(max_state_bytes=1000)
    store.put("s", b"x" * 500)
    store.put("s", b"y" * 1001)
    assert store.get("s") is None and store.refused == 1 and store.accounted_bytes == 0


def test_redis_caps_each_state_and_its_maxmemory_bounds_the_total(redis_server):
    admin = redis_server.client()
    # what docs/ asks of a Redis shared by edges: a maxmemory and volatile-lru
    admin.config_set("maxmemory", 4 << 20)
    admin.config_set("maxmemory-policy", "volatile-lru")
    store = RedisSessionStore(redis_server.url, ttl_s=600, max_state_bytes=20_000)
    try:
        store.put("big", b"z" * 20_001)
        assert store.get("big") is None and store.refused == 1
        lost: set[int] = set()
        for i in range(1000):  # 16 MB of states at the core's budget
            with store.lock(f"s-{i}"):
                try:
                    store.put(f"s-{i}", bytes([i % 256]) * MAX_SESSION_BYTES)
                except SessionLeaseLost:
                    # a lease has a TTL, so volatile-lru may evict it under this pressure
                    # (seen once in a CI rehearsal): that write is refused, never blind
                    lost.add(i)
        assert len(lost) < 50 and store.fenced == len(lost)
        used = admin.info("memory")["used_memory"]
        assert used <= (4 << 20) * 1.1
        last = max(set(range(1000)) - lost)  # the latest write stays
        assert store.get(f"s-{last}") == bytes([last % 256]) * MAX_SESSION_BYTES
        assert len(store) < 1000
    finally:
        store.close()
        admin.close()


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bound_mb=st.integers(2, 4), state_kb=st.integers(6, 14), writers=st.integers(2, 4))
def test_the_lmdb_store_keeps_taking_writes_when_a_flood_outruns_its_sweeps(
        tmp_path_factory, bound_mb, state_kb, writers):
    """A store flooded from several threads (as a worker's decision threads) with ten
    times the bound, the background sweep an interval away: the map used to fill to its
    last page, where LMDB cannot even delete, and every write after failed (visitors got
    503 session_store_unavailable). Every write is taken, and the bound holds within the
    slack of one state per writer between two checks."""
    import threading

    from edge_module.sessions.lmdb_session_store import LmdbSessionStore

    path = tmp_path_factory.mktemp("lmdb") / "sessions"
    store = LmdbSessionStore(path, 100_000, 600, max_mb=bound_mb, sweep_interval_s=10.0)
    state = bytes(state_kb * 1024)
    per_writer = 10 * (bound_mb << 10) // state_kb // writers
    failures: list[BaseException] = []

    def flood(k: int) -> None:
        for n in range(per_writer):
            try:
                with store.lock(f"w{k}-{n}"):
                    store.put(f"w{k}-{n}", state)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)
                return

    try:
        threads = [threading.Thread(target=flood, args=(k,)) for k in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        slack = (writers + 1) * (state_kb * 1024 + 4096)
        assert store.accounted_bytes <= (bound_mb << 20) + slack
        assert store.evicted > 0
        with store.lock("late"):
            store.put("late", state)
        assert store.get("late") == state
    finally:
        store.close()


@pytest.mark.parametrize("big_kb", [3, 20, 60])
def test_the_lmdb_bound_holds_when_states_grow(tmp_path, big_kb):
    """Small states to the bound, then big ones: room was made a fifth of the states at a
    time, the oldest (small) first, so the pages grew to 5.7x the bound and a write failed
    with the map full. Room is now made until the bytes are back under the bound."""
    from edge_module.sessions.lmdb_session_store import LmdbSessionStore

    bound_mb = 8
    store = LmdbSessionStore(tmp_path / "s", 1_000_000, 600, max_mb=bound_mb,
                             sweep_interval_s=10.0)
    try:
        n = 0
        while store.evicted == 0:
            store.put(f"small-{n}", bytes(600))
            n += 1
        peak = 0
        for k in range(3 * (bound_mb << 10) // big_kb):
            store.put(f"big-{k}", bytes(big_kb * 1024))  # SessionStoreUnavailable fails it
            peak = max(peak, store.accounted_bytes)
        # within a tenth of the bound (room is made again once the pages grew that much)
        assert peak <= (bound_mb << 20) * 1.1 + 2 * (big_kb * 1024 + 8192)
        assert store.get(f"big-{k}") == bytes(big_kb * 1024)
    finally:
        store.close()
