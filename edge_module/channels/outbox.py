"""The channel outbox: deliveries waiting to be sent, in SQLite (WAL) in EDGE_STATE_DIR.

A decision that fires a push, email or webhook action adds its records here before its
session state is stored, so an edge killed at any moment after the decision still sends
them after a restart (at least once: a record sent but not yet marked when the edge dies
is sent again, under the same idempotency key). Records are claimed with a lease (their
`next_ms` moves to the lease's end, `owner` names the claiming process), so the worker
processes sharing the file never send one at the same time, and `next_ms` alone says when
a record may be claimed. A lease whose owner has died (a killed edge, a crashed worker) is
released as soon as a live process notices (`release_orphans`), not at the lease's end:
the file is on this machine (EDGE_STATE_DIR), so a process id says who is alive. A record
that cannot be delivered is set aside (table `set_aside`, the oldest removed beyond a
bound) with its reason: an operator can read it there, and move it back (`requeue`).

A settled record (sent, set aside or cancelled) keeps its key, without its body, for
`keep_ms`: the same firing added again (a replayed state) is then ignored, not resent.

Commits are durable against a killed process (WAL with synchronous=NORMAL), not against
the machine losing power.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sqlite_wal import use_wal

SETTLED = 2**62  # the next_ms of a settled record: never claimed again
CHUNK = 2_000  # rows changed per transaction by bulk work (a decision's add waits for it)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    channel TEXT NOT NULL,
    session TEXT NOT NULL DEFAULT '',
    due_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    settled_ms INTEGER,
    owner INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_next ON outbox (next_ms);
CREATE INDEX IF NOT EXISTS outbox_session ON outbox (session);
CREATE TABLE IF NOT EXISTS set_aside (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    channel TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS set_aside_at ON set_aside (at_ms);
"""


class OutboxError(Exception):
    """The outbox's file could not be read or written."""


@dataclass(frozen=True)
class Claimed:
    key: str
    body: str
    channel: str
    due_ms: int
    attempts: int  # sends tried before this one


class Outbox:
    def __init__(self, path: Path, max_set_aside: int = 10_000, busy_timeout_s: float = 2.0,
                 ) -> None:
        self.path = path
        self.max_set_aside = max(0, max_set_aside)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()  # one connection per thread (sqlite3's rule)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._run(self._create)

    @staticmethod
    def _create(c: sqlite3.Connection) -> None:
        c.executescript(SCHEMA)
        columns = {row[1] for row in c.execute("PRAGMA table_info(outbox)")}
        if "owner" not in columns:  # an outbox written before leases had owners
            c.execute("ALTER TABLE outbox ADD COLUMN owner INTEGER")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s,
                                   isolation_level=None)
            use_wal(conn)  # the host's workers open the outbox at once
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _run(self, work: Any) -> Any:
        try:
            return work(self._conn())
        except sqlite3.Error as exc:
            raise OutboxError(f"channel outbox {self.path}: {exc}") from None

    def _write(self, work: Any) -> Any:
        """`work` in one transaction (taken at once: writers never deadlock on upgrade)."""
        def tx(c: sqlite3.Connection) -> Any:
            c.execute("BEGIN IMMEDIATE")
            try:
                out = work(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return out
        return self._run(tx)

    def add(self, records: list[dict[str, Any]]) -> int:
        """Add records (a key present, waiting or settled, is kept as it is); how many
        were new."""
        rows = [(r["key"], json.dumps(r, separators=(",", ":"), ensure_ascii=False),
                 r["channel"] or "", r.get("session_id") or "", r["due_ms"], r["due_ms"])
                for r in records]

        def insert(c: sqlite3.Connection) -> int:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO outbox (key, body, channel, session, due_ms, "
                          "next_ms) VALUES (?, ?, ?, ?, ?, ?)", rows)
            return c.total_changes - before
        return int(self._write(insert))

    def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[Claimed]:
        """Up to `limit` records due by `now_ms`, leased to the caller for `lease_ms`."""
        def take(c: sqlite3.Connection) -> list[Claimed]:
            rows = c.execute("SELECT key, body, channel, due_ms, attempts FROM outbox "
                             "WHERE next_ms <= ? ORDER BY next_ms LIMIT ?",
                             (now_ms, limit)).fetchall()
            c.executemany("UPDATE outbox SET next_ms = ?, owner = ? WHERE key = ?",
                          [(now_ms + lease_ms, os.getpid(), row[0]) for row in rows])
            return [Claimed(*row) for row in rows]
        return list(self._write(take)) if limit > 0 else []

    def release_orphans(self, now_ms: int, *, starting: bool = False) -> int:
        """Make records leased by processes no longer alive claimable now; how many. A
        process `starting` also releases leases under its own id (a process id reused after
        the one that held it was killed, as a container restart gives the same id)."""
        def release(c: sqlite3.Connection) -> int:
            owners = [row[0] for row in c.execute(
                "SELECT DISTINCT owner FROM outbox WHERE owner IS NOT NULL AND next_ms > ? "
                "AND next_ms < ?", (now_ms, SETTLED))]
            dead = [o for o in owners
                    if (starting and o == os.getpid()) or (o != os.getpid() and not _alive(o))]
            before = c.total_changes
            c.executemany("UPDATE outbox SET next_ms = ?, owner = NULL WHERE owner = ? "
                          "AND next_ms > ? AND next_ms < ?",
                          [(now_ms, o, now_ms, SETTLED) for o in dead])
            return c.total_changes - before
        return int(self._write(release))

    def _settle(self, c: sqlite3.Connection, key: str, now_ms: int) -> bool:
        """Settle a record not settled yet; whether it was (a late answer to a send that
        was taken over, or cancelled meanwhile, changes nothing)."""
        before = c.total_changes
        c.execute("UPDATE outbox SET next_ms = ?, settled_ms = ?, body = '', owner = NULL "
                  "WHERE key = ? AND next_ms < ?", (SETTLED, now_ms, key, SETTLED))
        return c.total_changes > before

    def sent(self, key: str, now_ms: int) -> None:
        self._write(lambda c: self._settle(c, key, now_ms))

    def retry(self, key: str, next_ms: int, error: str) -> None:
        """Try again at `next_ms`, if this process still holds the record's lease (not
        settled by another send of it, nor claimed by another process meanwhile)."""
        self._write(lambda c: c.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_ms = ?, last_error = ?, "
            "owner = NULL WHERE key = ? AND owner = ? AND next_ms < ?",
            (next_ms, error[:500], key, os.getpid(), SETTLED)))

    def set_aside(self, item: Claimed, reason: str, now_ms: int) -> None:
        self._write(lambda c: self._move_aside(
            c, [(item.key, item.body, item.channel, reason)], now_ms))

    def expire(self, now_ms: int, max_age_ms: int) -> list[tuple[str, str]]:
        """Set aside, in bulk, the claimable records more than `max_age_ms` past due (an
        edge down for days: stale reminders, not sent; without this each would wait its
        turn ahead of the fresh ones); their (key, channel), at most CHUNK at a time."""
        def move(c: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = c.execute("SELECT key, body, channel, due_ms FROM outbox WHERE next_ms <= ? "
                             "AND due_ms <= ? LIMIT ?",
                             (now_ms, now_ms - max_age_ms, CHUNK)).fetchall()
            moved = self._move_aside(c, [(k, b, ch, f"expired: {(now_ms - due) // 1000} s "
                                          "past due") for k, b, ch, due in rows], now_ms)
            return [(k, ch) for k, _b, ch, _r in moved]
        return list(self._write(move))

    def _move_aside(self, c: sqlite3.Connection, rows: list[tuple[str, str, str, str]],
                    now_ms: int) -> list[tuple[str, str, str, str]]:
        """Settle each (key, body, channel, reason) not settled yet (another send of it may
        have been first) and keep it in `set_aside`, the oldest there removed beyond the
        bound; the ones moved."""
        moved = [row for row in rows if self._settle(c, row[0], now_ms)]
        c.executemany("INSERT OR REPLACE INTO set_aside (key, body, channel, reason, at_ms) "
                      "VALUES (?, ?, ?, ?, ?)",
                      [(k, b, ch, reason[:500], now_ms) for k, b, ch, reason in moved])
        excess = c.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0] - self.max_set_aside
        if excess > 0:
            c.execute("DELETE FROM set_aside WHERE key IN (SELECT key FROM set_aside "
                      "ORDER BY at_ms LIMIT ?)", (excess,))
        return moved

    def cancel_session(self, session_id: str, now_ms: int) -> int:
        """Settle the session's deliveries not yet due (never claimed); how many."""
        def drop(c: sqlite3.Connection) -> int:
            before = c.total_changes
            c.execute("UPDATE outbox SET next_ms = ?, settled_ms = ?, body = '' "
                      "WHERE session = ? AND due_ms > ? AND attempts = 0 AND next_ms < ? "
                      "AND owner IS NULL",
                      (SETTLED, now_ms, session_id, now_ms, SETTLED))
            return c.total_changes - before
        return int(self._write(drop))

    def purge(self, now_ms: int, keep_ms: int) -> int:
        """Forget the keys of records settled more than `keep_ms` ago; how many. In chunks:
        a day of keys at once would hold the write lock for seconds, and decisions adding
        their records wait for it."""
        def forget(c: sqlite3.Connection) -> int:
            before = c.total_changes
            c.execute("DELETE FROM outbox WHERE key IN (SELECT key FROM outbox WHERE "
                      "next_ms = ? AND settled_ms < ? LIMIT ?)",
                      (SETTLED, now_ms - keep_ms, CHUNK))
            return c.total_changes - before
        total = 0
        while (n := int(self._write(forget))) > 0:
            total += n
            if n < CHUNK:
                break
        return total

    def requeue(self, now_ms: int) -> int:
        """Move every set-aside record back to be sent now; how many."""
        def back(c: sqlite3.Connection) -> int:
            rows = c.execute("SELECT key, body, channel FROM set_aside").fetchall()
            c.executemany(
                "INSERT OR REPLACE INTO outbox (key, body, channel, session, due_ms, next_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(k, b, ch, json.loads(b).get("session_id") or "", now_ms, now_ms)
                 for k, b, ch in rows])
            c.execute("DELETE FROM set_aside")
            return len(rows)
        return int(self._write(back))

    def next_due(self) -> int | None:
        """When the earliest record may be claimed (due, retry or end of lease)."""
        row = self._run(lambda c: c.execute("SELECT MIN(next_ms) FROM outbox").fetchone())
        return None if row[0] is None or row[0] >= SETTLED else int(row[0])

    def counts(self) -> tuple[int, int]:
        """(records waiting, records set aside)."""
        return self._run(lambda c: (
            c.execute("SELECT COUNT(*) FROM outbox WHERE next_ms < ?", (SETTLED,)).fetchone()[0],
            c.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0]))

    def set_aside_records(self) -> list[tuple[dict[str, Any], str]]:
        rows = self._run(lambda c: c.execute(
            "SELECT body, reason FROM set_aside ORDER BY at_ms").fetchall())
        return [(json.loads(body), reason) for body, reason in rows]


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (where we cannot tell, assume
    it does: its lease then simply runs out)."""
    if sys.platform == "win32" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, under another user
        return True
    return True
