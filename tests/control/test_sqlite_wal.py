"""Several processes opening one new SQLite store at once (control-plane processes on a
fresh data folder, an edge host's workers on their outbox): the switch to WAL that loses
the race is answered "locked" at once, without SQLite's busy wait, and a process failed to
start (seen in a CI rehearsal). It waits for the other instead."""

from __future__ import annotations

import sqlite3
import threading

from edge_module.sqlite_wal import use_wal


def test_a_switch_to_wal_waits_for_a_writer_instead_of_failing(tmp_path):
    path = tmp_path / "store.sqlite3"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN EXCLUSIVE")  # another process, mid-migration
    mine = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        mine.execute("PRAGMA journal_mode=WAL")
        raise AssertionError("expected SQLite to refuse the raced switch at once")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    use_wal(mine)
    release.join()
    assert mine.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_another_process_switched_already_counts_as_done(tmp_path):
    path = tmp_path / "store.sqlite3"
    first = sqlite3.connect(path, isolation_level=None)
    use_wal(first)
    second = sqlite3.connect(path, isolation_level=None)
    use_wal(second)
    assert second.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
