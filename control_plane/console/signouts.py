"""Console sessions that were signed out, kept on the server until they would have expired.

The console's session is a signed cookie: clearing it in the browser that signs out does
not stop a copy taken before (a shared machine, a proxy log, malware) from working until
the cookie expires. Each session gets a random id at sign-in; signing out records it here,
and a page asked for with a recorded id is refused. A record is kept only as long as the
cookie could still be valid (its sign-in time plus the session's lifetime), so the table
holds at most the sign-outs of the last few hours. SQLite in the data folder: shared by
every process of the control plane and kept across restarts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_module.sqlite_wal import use_wal

TIMEOUT_S = 2.0
KEEP_AFTER_S = 86_400


class SignOuts:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._db() as db:
            use_wal(db)  # a page's check never waits on a write
            db.execute("CREATE TABLE IF NOT EXISTS signed_out (sid TEXT PRIMARY KEY, "
                       "until_s INTEGER NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS signed_out_until ON signed_out (until_s)")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        if db is None:
            # a page waits at most this long for the table: then it says so (503)
            db = self._local.db = sqlite3.connect(self.path, timeout=TIMEOUT_S,
                                                  isolation_level=None)
        yield db

    def record(self, sid: str, until_s: int) -> None:
        """Session `sid` is signed out; its cookie could be valid until `until_s`.
        sqlite3.Error when the table cannot be written."""
        now = int(time.time())
        with self._db() as db:
            # a day past their end: a clock stepped forward and back must not lose them
            db.execute("DELETE FROM signed_out WHERE until_s < ?", (now - KEEP_AFTER_S,))
            db.execute("INSERT OR REPLACE INTO signed_out (sid, until_s) VALUES (?, ?)",
                       (sid, max(until_s, now)))

    def signed_out(self, sid: str) -> bool:
        """sqlite3.Error when the table cannot be read."""
        with self._db() as db:
            return db.execute("SELECT 1 FROM signed_out WHERE sid = ?",
                              (sid,)).fetchone() is not None

