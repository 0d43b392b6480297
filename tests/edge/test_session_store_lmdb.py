"""The LMDB session store that the worker processes of one edge host share: states,
expiry, the bound, and a lock that holds across processes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from edge_module.sessions.lmdb_session_store import LmdbSessionStore
from edge_module.sessions.session_store import SessionLockTimeout, SessionStoreUnavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store_at(path: Path, **kwargs) -> LmdbSessionStore:
    return LmdbSessionStore(path, kwargs.pop("max_sessions", 1000), kwargs.pop("ttl_s", 60),
                            **kwargs)


def _read(path: str, session_id: str, out) -> None:
    out.put(LmdbSessionStore(Path(path), 100, 60).get(session_id))


def test_a_state_written_by_one_process_is_read_by_another(tmp_path):
    store_at(tmp_path).put("visitor-1", b"\x00state\xff")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    for session_id in ("visitor-1", "someone-else"):
        reader = ctx.Process(target=_read, args=(str(tmp_path), session_id, out))
        reader.start()
        reader.join(30)
    assert [out.get(timeout=5), out.get(timeout=5)] == [b"\x00state\xff", None]


def test_any_session_id_fits_even_beyond_lmdbs_key_limit(tmp_path):
    store = store_at(tmp_path)
    long_id = "é" * 300  # 600 bytes in UTF-8; LMDB keys stop at 511
    store.put(long_id, b"x")
    assert store.get(long_id) == b"x" and store.get("é" * 299) is None


def test_a_state_idle_past_its_ttl_is_gone_and_writing_renews_it(tmp_path):
    clock = FakeClock()
    store = store_at(tmp_path, ttl_s=10, clock=clock)
    store.put("s", b"1")
    clock.now += 9.9
    assert store.get("s") == b"1"
    store.put("s", b"2")
    clock.now += 9.9
    assert store.get("s") == b"2"
    clock.now += 0.1
    assert store.get("s") is None


def test_a_sweep_deletes_expired_states_and_keeps_the_bound(tmp_path):
    clock = FakeClock()
    store = store_at(tmp_path, ttl_s=10, max_sessions=3, clock=clock, sweep_interval_s=3600)
    for n in range(3):
        store.put(f"old-{n}", b"x")
    clock.now += 11  # the three are expired now
    for n in range(5):
        clock.now += 1
        store.put(f"new-{n}", b"y")
    assert store.sweep() == 3 + 2  # the expired ones, then the two least recently written
    assert store.evicted == 2 and len(store) == 3
    assert [store.get(f"new-{n}") for n in range(5)] == [None, None, b"y", b"y", b"y"]


def test_a_full_file_makes_room_instead_of_refusing_writes(tmp_path):
    store = store_at(tmp_path, max_mb=2, max_sessions=10_000, sweep_interval_s=None)
    for n in range(1500):  # ~6 MB of states through a 2 MB file, no sweeper running
        store.put(f"s{n}", bytes(4000))
    assert store.get("s1499") == bytes(4000)  # the newest are kept, every write taken
    assert store.accounted_bytes <= (2 << 20) * 1.1 + 8192  # the bound, within a tenth


def test_the_background_sweeper_keeps_the_bound(tmp_path):
    store = store_at(tmp_path, max_sessions=5, sweep_interval_s=0.05)
    for n in range(20):
        store.put(f"s{n}", b"x")
    deadline = time.monotonic() + 10
    while len(store) > 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(store) == 5 and store.get("s19") == b"x"
    store.close()


def test_a_state_rewritten_during_a_sweep_is_kept(tmp_path):
    clock = FakeClock()
    store = store_at(tmp_path, ttl_s=10, clock=clock, sweep_interval_s=None)
    store.put("s", b"old")
    clock.now += 11  # expired: chosen by the sweep's read...
    chosen = [(clock.now - 1, store._key("s"))]
    store.put("s", b"new")  # ...but written again before its delete
    assert store._delete(chosen) == 0 and store.get("s") == b"new"


def test_a_damaged_file_is_set_aside_and_the_store_starts_empty(tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    (folder / "data.mdb").write_bytes(b"\x00garbage" * 1000)
    store = store_at(folder, sweep_interval_s=None)
    store.put("s", b"x")
    assert store.get("s") == b"x"
    assert [p.name.startswith("sessions.damaged-") for p in tmp_path.iterdir()].count(True) == 1


def _hold_lock(path: str, started, release) -> None:
    store = LmdbSessionStore(Path(path), 100, 60)
    with store.lock("shared"):
        started.set()
        release.wait(10)


def lock_holder(path: Path):
    """Another process holding session "shared"'s lock until `release` is set."""
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), started, release))
    holder.start()
    assert started.wait(30)
    return holder, release


def test_a_session_locked_in_another_process_waits_then_times_out(tmp_path):
    holder, release = lock_holder(tmp_path)
    try:
        store = store_at(tmp_path, lock_wait_s=0.2)
        with pytest.raises(SessionLockTimeout, match="stayed locked"):
            with store.lock("shared"):
                pass
        with store.lock("another-session"):  # only that session waits
            pass
        release.set()
        holder.join(10)
        with store.lock("shared"):  # released by its holder: free again at once
            pass
    finally:
        release.set()
        holder.join(10)


def test_a_lease_left_by_a_killed_worker_expires(tmp_path):
    holder, _ = lock_holder(tmp_path)
    holder.kill()  # no release: the lease stays until it expires
    holder.join(10)
    clock = FakeClock()
    clock.now = time.time()
    store = store_at(tmp_path, lock_wait_s=0.05, clock=clock)
    with pytest.raises(SessionLockTimeout):
        with store.lock("shared"):
            pass
    clock.now += 10.1  # the default lease is 10 s
    with store.lock("shared"):
        pass


def _count_up(path: str, rounds: int) -> None:
    store = LmdbSessionStore(Path(path), 100, 60)
    for _ in range(rounds):
        with store.lock("counter"):
            value = int(store.get("counter") or b"0")
            store.put("counter", str(value + 1).encode())


def test_read_modify_write_under_the_lock_loses_no_update_across_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_count_up, args=(str(tmp_path), 300)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert store_at(tmp_path).get("counter") == b"900"


def test_an_unusable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SessionStoreUnavailable, match="cannot open the session store"):
        store_at(blocker / "sessions")
