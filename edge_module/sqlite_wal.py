"""Switching an SQLite database to write-ahead logging when several processes open it at once.

SQLite answers a switch to WAL that races another connection's (two control-plane
processes starting on a fresh store, an edge host's workers opening their shared outbox)
with "database is locked" at once: the busy timeout does not apply to it. The switch is
tried again for a while, and a database the other process already switched counts as done.
"""

from __future__ import annotations

import sqlite3
import time

ATTEMPTS = 100
PAUSE_S = 0.05


def use_wal(db: sqlite3.Connection) -> None:
    """Put `db` in WAL mode; sqlite3.OperationalError if it stays locked for ~5 s."""
    for _ in range(ATTEMPTS - 1):
        try:
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        time.sleep(PAUSE_S)
    db.execute("PRAGMA journal_mode=WAL")  # the last try's error, if any, is the answer
