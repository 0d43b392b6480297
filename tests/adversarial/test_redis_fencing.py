"""Issue #11, item 11: the session lease fences the write.

A decision that outlived its Redis lease (a GC pause, a slow host) used to overwrite the
state that the next holder of the lease had written meanwhile: a lost update across the
hosts of a PoP. `put` inside `lock()` now writes only while that lock's lease is still
held (a Lua script compares the lease token and writes in one step); otherwise it raises
`SessionLeaseLost` and the edge answers 503 with Retry-After, the newer state intact.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_module.sessions.lmdb_session_store import LmdbSessionStore
from edge_module.sessions.redis_session_store import RedisSessionStore
from edge_module.sessions.session_store import SessionLeaseLost, SessionStoreUnavailable
from tests.cases_decisions import PRICING
from tests.factories import T0, snapshot_text
from tests.servers import put_snapshot, running_edge, wait_for

LOCK_KEY = b"edge:session-lock:"


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lease_ms=st.integers(50, 200), session=st.text("abcdef-", min_size=1, max_size=12),
       state=st.binary(min_size=1, max_size=64))
def test_a_holder_whose_lease_expired_cannot_overwrite_the_next_holders_state(
        redis_server, lease_ms, session, state):
    slow = RedisSessionStore(redis_server.url, ttl_s=60, lock_ttl_ms=lease_ms)
    other = RedisSessionStore(redis_server.url, ttl_s=60)  # another host of the PoP
    admin = redis_server.client()
    try:
        with slow.lock(session):
            # the slow host stalls until its lease runs out; the next decision goes ahead
            wait_for(lambda: not admin.exists(LOCK_KEY + session.encode()), timeout_s=5,
                     what="the lease to expire")
            with other.lock(session):
                other.put(session, b"newer:" + state)
            with pytest.raises(SessionLeaseLost) as lost:
                slow.put(session, b"stale:" + state)
            assert isinstance(lost.value, SessionStoreUnavailable)  # the edge's 503 path
        assert other.get(session) == b"newer:" + state
        assert slow.fenced == 1
    finally:
        slow.close()
        other.close()
        admin.close()


def test_a_holder_with_its_lease_writes_as_before(redis_server):
    store = RedisSessionStore(redis_server.url, ttl_s=60)
    try:
        with store.lock("fresh"):
            store.put("fresh", b"state")
        assert store.get("fresh") == b"state" and store.fenced == 0
    finally:
        store.close()


def _write_as_another_worker(path: str) -> None:
    store = LmdbSessionStore(Path(path), 100, 60, max_mb=16, sweep_interval_s=None)
    with store.lock("s"):
        store.put("s", b"newer")
    store.close()


def test_the_lmdb_lease_fences_its_write_too(tmp_path: Path):
    # a lease of 1 ms has run out by the time the other worker process asks for it
    slow = LmdbSessionStore(tmp_path, 100, 60, max_mb=16, lock_ttl_ms=1,
                            sweep_interval_s=None)
    try:
        with slow.lock("s"):
            other = multiprocessing.get_context("spawn").Process(
                target=_write_as_another_worker, args=(str(tmp_path),))
            other.start()
            other.join(30)
            assert other.exitcode == 0
            with pytest.raises(SessionLeaseLost):
                slow.put("s", b"stale")
        assert slow.get("s") == b"newer" and slow.fenced == 1
    finally:
        slow.close()


# -- against a real edge sharing Redis with another host ----------------------------------

def test_the_edge_answers_503_and_keeps_the_newer_state_when_its_lease_is_lost(
        tmp_path, redis_server):
    put_snapshot(tmp_path / "store", snapshot_text(PRICING), 1)
    other = RedisSessionStore(redis_server.url, ttl_s=60)
    admin = redis_server.client()
    try:
        with running_edge(tmp_path / "store", session_store=redis_server.url) as edge:
            pool = edge.host.app.pool
            real_decide = pool.decide_packed

            def decide_past_the_lease(envelope: Any) -> Any:
                result = real_decide(envelope)
                # while this decision ran, its lease lapsed and another host went ahead
                admin.delete(LOCK_KEY + b"fenced")
                with other.lock("fenced"):
                    other.put("fenced", b"newer")
                return result

            pool.decide_packed = decide_past_the_lease
            try:
                status, body, headers = edge.decide({"session_id": "fenced", "now_ms": T0,
                                                     "context": {"url": "/pricing"}})
            finally:
                pool.decide_packed = real_decide
            assert status == 503 and body["error"]["code"] == "session_store_unavailable"
            assert headers.get("Retry-After") == "1"
            assert other.get("fenced") == b"newer"
            status, _, _ = edge.decide({"session_id": "fenced", "now_ms": T0 + 10,
                                        "context": {"url": "/pricing"}})
            assert status == 200  # the retry decides on the newer state
    finally:
        other.close()
        admin.close()

