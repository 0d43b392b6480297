"""The edge's in-memory session store: bounded, expiring, safe under threads."""

from __future__ import annotations

import threading

from edge_module.sessions.session_store import MemorySessionStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def written_at_0() -> tuple[FakeClock, MemorySessionStore]:
    """A store with a 10 s TTL on a fake clock, holding session "s" (b"x") written at 0."""
    clock = FakeClock()
    store = MemorySessionStore(ttl_s=10, clock=clock)
    store.put("s", b"x")
    return clock, store


def test_a_stored_state_is_returned():
    store = MemorySessionStore()
    store.put("s", b"\x00state\xff")  # the core's opaque marshal bytes
    assert store.get("s") == b"\x00state\xff"
    assert store.get("other") is None


def test_a_session_idle_past_its_ttl_is_gone():
    clock, store = written_at_0()
    clock.now = 9.9
    assert store.get("s") == b"x"
    clock.now = 10.0
    assert store.get("s") is None


def test_writing_renews_the_ttl():
    clock, store = written_at_0()
    clock.now = 8
    store.put("s", b"y")
    clock.now = 15
    assert store.get("s") == b"y"


def test_the_least_recently_written_session_is_evicted_at_the_bound():
    store = MemorySessionStore(max_sessions=2)
    store.put("a", b"1")
    store.put("b", b"2")
    store.put("a", b"1'")
    store.put("c", b"3")
    assert (store.get("a"), store.get("b"), store.get("c")) == (b"1'", None, b"3")
    assert len(store) == 2 and store.evicted == 1


def test_concurrent_writers_never_exceed_the_bound():
    store = MemorySessionStore(max_sessions=100)

    def write(prefix: str) -> None:
        for i in range(2000):
            store.put(f"{prefix}-{i}", b"x")

    threads = [threading.Thread(target=write, args=(str(n),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 100
