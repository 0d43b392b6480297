"""Session state shared in Redis: one session served interchangeably by the hosts of a PoP.

Each test starts its own throwaway redis-server (tests/redis_server.py); none of them uses a
system Redis.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from edge_module.host.config import ConfigError, EdgeConfig
from edge_module.host.edge_host import make_session_store
from edge_module.sessions.redis_session_store import RedisSessionStore
from edge_module.sessions.session_store import (
    MemorySessionStore,
    SessionLockTimeout,
    SessionStoreUnavailable,
)
from tests.cases_decisions import CHECKOUT, PRICING
from tests.factories import T0, ev, snapshot_text
from tests.redis_server import RedisServer
from tests.servers import put_snapshot, running_edge, wait_for

LOCK_KEY = b"edge:session-lock:s"


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisSessionStore]:
    s = RedisSessionStore(redis_server.url, ttl_s=60)
    yield s
    s.close()


@pytest.fixture
def other_host(redis_server: RedisServer) -> Iterator[RedisSessionStore]:
    """A second store on the same Redis: what another edge host of the PoP sees."""
    s = RedisSessionStore(redis_server.url, ttl_s=60)
    yield s
    s.close()


# -- state ----------------------------------------------------------------------------------

def test_a_stored_state_is_returned_to_every_host(store, other_host):
    store.put("s", b"\x00state\xff")
    assert store.get("s") == b"\x00state\xff"
    assert other_host.get("s") == b"\x00state\xff"
    assert store.get("other") is None


def test_a_session_idle_past_its_ttl_is_gone(redis_server):
    store = RedisSessionStore(redis_server.url, ttl_s=0.3)
    store.put("s", b"x")
    assert store.get("s") == b"x"
    wait_for(lambda: store.get("s") is None, timeout_s=5, what="the session to expire")


def test_writing_renews_the_ttl(redis_server, store):
    store.put("s", b"x")
    redis_server.client().pexpire(b"edge:session:s", 50)
    store.put("s", b"y")
    assert redis_server.client().pttl(b"edge:session:s") > 50_000  # back to ttl_s=60


def test_len_counts_the_sessions_under_its_prefix_only(redis_server, store):
    neighbour = RedisSessionStore(redis_server.url, ttl_s=60, prefix="other:")
    for name in ("a", "b", "c"):
        store.put(name, b"x")
    neighbour.put("a", b"x")
    with store.lock("a"):  # a held lock is not a session
        assert len(store) == 3
    assert len(neighbour) == 1


# -- the per-session lock -------------------------------------------------------------------

def test_a_held_lock_keeps_another_host_out(redis_server, store):
    impatient = RedisSessionStore(redis_server.url, ttl_s=60, lock_wait_s=0.05)
    with store.lock("s"):
        with pytest.raises(SessionLockTimeout, match="'s' stayed locked"), impatient.lock("s"):
            pass
        with impatient.lock("other-session"):
            pass  # other sessions are not held up
    with impatient.lock("s"):
        pass  # released: the next decision goes in


def test_concurrent_updates_through_two_hosts_lose_nothing(store, other_host):
    """Read-modify-write of one session from 4 threads on 2 hosts: every increment lands."""
    store.put("s", b"0")
    barrier = threading.Barrier(4)

    def add(host: RedisSessionStore) -> None:
        barrier.wait()
        for _ in range(25):
            with host.lock("s"):
                value = int(host.get("s") or b"0")
                threading.Event().wait(0.001)  # widen the window a lost update needs
                host.put("s", str(value + 1).encode())

    threads = [threading.Thread(target=add, args=(h,)) for h in (store, other_host) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("s") == b"100"


def test_a_lock_left_by_a_dead_host_expires_after_its_lease(redis_server):
    dead = RedisSessionStore(redis_server.url, ttl_s=60, lock_ttl_ms=300)
    held = dead.lock("s")
    held.__enter__()  # taken, never released: the host died mid-decision
    assert redis_server.client().exists(LOCK_KEY)
    patient = RedisSessionStore(redis_server.url, ttl_s=60, lock_wait_s=10)
    with patient.lock("s"):
        pass


def test_a_late_holder_does_not_release_the_lock_of_the_next_one(redis_server):
    slow = RedisSessionStore(redis_server.url, ttl_s=60, lock_ttl_ms=200)
    nxt = RedisSessionStore(redis_server.url, ttl_s=60, lock_ttl_ms=60_000)
    third = RedisSessionStore(redis_server.url, ttl_s=60, lock_wait_s=0.05)
    slow_lock, next_lock = slow.lock("s"), nxt.lock("s")
    slow_lock.__enter__()
    next_lock.__enter__()  # slow's lease ran out: nxt holds the session now
    slow_lock.__exit__(None, None, None)  # slow finishes late and "releases"
    with pytest.raises(SessionLockTimeout), third.lock("s"):
        pass
    next_lock.__exit__(None, None, None)
    with third.lock("s"):
        pass


def test_the_lock_is_released_when_the_decision_fails(redis_server, store):
    with pytest.raises(RuntimeError), store.lock("s"):
        raise RuntimeError("the decision failed")
    assert not redis_server.client().exists(LOCK_KEY)


# -- Redis down -----------------------------------------------------------------------------

def test_every_operation_reports_a_stopped_redis_as_unavailable(redis_server, store):
    store.put("s", b"x")
    redis_server.stop()
    for call in (lambda: store.get("s"), lambda: store.put("s", b"y"), lambda: len(store),
                 lambda: store.lock("s").__enter__()):
        with pytest.raises(SessionStoreUnavailable, match=f"127.0.0.1:{redis_server.port}"):
            call()


def test_a_redis_that_does_not_answer_fails_fast_instead_of_hanging():
    """A listening socket that never replies (a hung Redis): the call gives up within ~0.5 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        store = RedisSessionStore(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", ttl_s=60)
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                store.get("s")
            except BaseException as exc:  # noqa: BLE001 - hand it to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(timeout=3)  # generous: the store's socket timeout is 0.5 s
        assert not thread.is_alive(), "the call hung on a Redis that does not answer"
        [error] = outcome
        assert isinstance(error, SessionStoreUnavailable)
        assert "Timeout" in str(error)


# -- configuration --------------------------------------------------------------------------

def test_the_store_is_chosen_by_configuration(redis_server):
    assert isinstance(make_session_store(EdgeConfig()), MemorySessionStore)
    store = make_session_store(EdgeConfig.from_env({"EDGE_SESSION_STORE": redis_server.url}))
    assert isinstance(store, RedisSessionStore)
    store.close()


def test_an_unknown_session_store_is_a_config_error():
    with pytest.raises(ConfigError, match="EDGE_SESSION_STORE='memcached://x'.*redis://"):
        EdgeConfig.from_env({"EDGE_SESSION_STORE": "memcached://x"})


# -- edge hosts sharing Redis ---------------------------------------------------------------

@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    put_snapshot(tmp_path / "store", snapshot_text(PRICING, CHECKOUT, revision="1"), 1)
    return tmp_path / "store"


def visit(session: str, now: int, events=(), url: str = "/pricing") -> dict:
    return {"session_id": session, "now_ms": T0 + now, "context": {"url": url},
            "events": list(events)}


# A pricing visit that earns the nudge (then is capped), then abandons its cart and gets the
# queued reminder when due: each step depends on the state the previous ones left.
JOURNEY = [
    (1500, [ev("page_view", 0, url="/pricing"), ev("scroll", 1000, depth=0.8, y=1400)]),
    (3000, []),
    (4000, []),
    (5000, [ev("custom", 4500, name="cart_abandon")]),
    (7500, []),
]


def run_journey(hosts: list, session: str) -> list[tuple[list, int | None]]:
    seen = []
    for i, (now, events) in enumerate(JOURNEY):
        status, body, _ = hosts[i % len(hosts)].decide(visit(session, now, events))
        assert status == 200, body
        # outcome tokens are per decision (a MAC over its id): the same decisions differ there
        actions = [{k: v for k, v in a.items() if k != "outcome_token"} for a in body["actions"]]
        seen.append((actions, body["next_check_ms"]))
    return seen


def test_a_session_alternating_between_two_hosts_gets_the_decisions_of_one_host(
        store_dir, redis_server):
    with running_edge(store_dir) as single:
        expected = run_journey([single], "one-host")
    with running_edge(store_dir, session_store=redis_server.url) as a, \
            running_edge(store_dir, session_store=redis_server.url) as b:
        assert a.url != b.url
        shared = run_journey([a, b], "two-hosts")
        assert len(a.host.app.sessions) == len(b.host.app.sessions) == 1  # one shared session
    assert shared == expected
    # the journey really carries state from step to step
    assert [a["trigger"] for a in expected[1][0]] == ["pricing-discount"]
    assert [a["trigger"] for a in expected[4][0]] == ["checkout-reminder"]


def test_without_a_shared_store_the_second_host_forgets_the_session(store_dir):
    """Why the store must be shared: two memory hosts lose the dwell the first one saw."""
    with running_edge(store_dir) as single:
        expected = run_journey([single], "one-host")
    with running_edge(store_dir) as a, running_edge(store_dir) as b:
        assert run_journey([a, b], "two-hosts") != expected


def test_a_redis_outage_answers_503_and_the_host_recovers_with_redis(store_dir, redis_server):
    with running_edge(store_dir, session_store=redis_server.url) as edge:
        assert edge.decide(visit("s-1", 1500, JOURNEY[0][1]))[0] == 200
        redis_server.stop()
        status, body, headers = edge.decide(visit("s-1", 3000))
        assert status == 503 and headers["Retry-After"] == "1"
        assert body["error"]["code"] == "session_store_unavailable"
        assert "retry" in body["error"]["message"]
        redis_server.start()  # same port, empty: the session starts over
        status, body, _ = edge.decide(visit("s-2", 3200, JOURNEY[0][1]))
        assert status == 200
        assert [a["trigger"] for a in body["actions"]] == ["pricing-discount"]
