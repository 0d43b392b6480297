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
that cannot be delivered is set aside (table `set_aside`, bounded: anonymous records go
first, so no visitor's made-up sessions push out a verified customer's) with its reason:
an operator can read it there, and move it back (`requeue`).

What a record may take is decided in the transaction that adds it (`admit`), against
counts SQLite triggers keep exact in table `tally` for every process sharing the file:
waiting records in all, waiting records of anonymous recipients (no verified CRM id: the
ones any visitor can make up), and a session's and a verified recipient's waiting ones.

A conversion's cancel is kept too (table `cancels`: a session and the latest moment it
converted at): a record decided before that moment and due after it is settled as
cancelled when it is added, so a record and its session's cancel may reach the file in
either order (from two worker processes, each waiting in memory for the write lock).

A settled record (sent, set aside or cancelled) keeps its key, without its body, for
`keep_ms` and up to a bound (`purge`): the same firing added again (a replayed state) is
then ignored, not resent.

Commits are durable against a killed process (WAL with synchronous=NORMAL), not against
the machine losing power.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sqlite_wal import use_wal

SETTLED = 2**62  # the next_ms of a settled record: never claimed again
CHUNK = 2_000  # rows changed per transaction by bulk work (a decision's add waits for it)

TABLES = (
    """CREATE TABLE IF NOT EXISTS outbox (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        channel TEXT NOT NULL,
        session TEXT NOT NULL DEFAULT '',
        due_ms INTEGER NOT NULL,
        next_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        settled_ms INTEGER,
        owner INTEGER,
        recipient TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS set_aside (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        channel TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        recipient TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS cancels (
        session TEXT PRIMARY KEY,
        at_ms INTEGER NOT NULL
    )""",
)
# columns added since the first outbox files: (table, column, its definition)
COLUMNS = (("outbox", "owner", "INTEGER"),
           ("outbox", "recipient", "TEXT NOT NULL DEFAULT ''"),
           ("set_aside", "recipient", "TEXT NOT NULL DEFAULT ''"))
INDEXES = (
    "DROP INDEX IF EXISTS outbox_session",  # replaced by outbox_session_next
    "CREATE INDEX IF NOT EXISTS outbox_next ON outbox (next_ms)",
    "CREATE INDEX IF NOT EXISTS outbox_session_next ON outbox (session, next_ms)",
    "CREATE INDEX IF NOT EXISTS outbox_recipient ON outbox (recipient, next_ms) "
    "WHERE recipient != ''",
    "CREATE INDEX IF NOT EXISTS outbox_settled ON outbox (settled_ms) "
    "WHERE settled_ms IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS set_aside_at ON set_aside (at_ms)",
    "CREATE INDEX IF NOT EXISTS set_aside_recipient ON set_aside (recipient, at_ms)",
    "CREATE INDEX IF NOT EXISTS cancels_at ON cancels (at_ms)",
)
# The tally: 'pending' (records waiting: next_ms below SETTLED), 'anonymous' (of those, the
# ones without a verified recipient) and 'settled' (keys kept of settled records).
_P = f"next_ms < {SETTLED}"
TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS tally_insert AFTER INSERT ON outbox BEGIN
        UPDATE tally SET n = n + 1 WHERE name =
            CASE WHEN NEW.{_P} THEN 'pending' ELSE 'settled' END;
        UPDATE tally SET n = n + 1 WHERE name = 'anonymous' AND NEW.{_P}
            AND NEW.recipient = '';
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS tally_delete AFTER DELETE ON outbox BEGIN
        UPDATE tally SET n = n - 1 WHERE name =
            CASE WHEN OLD.{_P} THEN 'pending' ELSE 'settled' END;
        UPDATE tally SET n = n - 1 WHERE name = 'anonymous' AND OLD.{_P}
            AND OLD.recipient = '';
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS tally_update AFTER UPDATE OF next_ms, recipient ON outbox
        WHEN (OLD.{_P}) != (NEW.{_P}) OR OLD.recipient != NEW.recipient BEGIN
        UPDATE tally SET n = n - 1 WHERE name =
            CASE WHEN OLD.{_P} THEN 'pending' ELSE 'settled' END;
        UPDATE tally SET n = n - 1 WHERE name = 'anonymous' AND OLD.{_P}
            AND OLD.recipient = '';
        UPDATE tally SET n = n + 1 WHERE name =
            CASE WHEN NEW.{_P} THEN 'pending' ELSE 'settled' END;
        UPDATE tally SET n = n + 1 WHERE name = 'anonymous' AND NEW.{_P}
            AND NEW.recipient = '';
    END""",
)


class OutboxError(Exception):
    """The outbox's file could not be read or written; `damaged` when SQLite found it is
    not a database or is malformed (not when it was only locked, or busy)."""

    def __init__(self, message: str, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


# SQLITE_CORRUPT and SQLITE_NOTADB (primary codes; extended ones keep them in the low byte)
_DAMAGE_CODES = (11, 26)


def _damaged(exc: sqlite3.Error) -> bool:
    """Whether `exc` says the file itself is damaged (not locked, busy, or missing)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if type(code) is int and code & 0xFF in _DAMAGE_CODES:
        return True
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text)


@dataclass(frozen=True)
class Claimed:
    key: str
    body: str
    channel: str
    due_ms: int
    attempts: int  # sends tried before this one
    recipient: str = ""  # the verified CRM id it is addressed to ('' anonymous)


@dataclass(frozen=True)
class Limits:
    """What waiting records may take: `pending` in all; `anonymous` of them without a
    verified recipient; `per_session` of one session (one with an id) and `per_recipient`
    addressed to one verified CRM id."""
    pending: int
    anonymous: int
    per_session: int
    per_recipient: int


def recipient(record: dict[str, Any]) -> str:
    """The verified CRM id a record is addressed to; '' for an anonymous one."""
    crm_id = record.get("crm_id")
    return crm_id if record.get("crm_id_verified") is True and type(crm_id) is str else ""


class Outbox:
    def __init__(self, path: Path, max_set_aside: int = 10_000, busy_timeout_s: float = 2.0,
                 *, create: bool = True, read_only: bool = False,
                 open_wait_s: float | None = None) -> None:
        """The outbox in `path`, made (or upgraded) if needed, waiting up to `open_wait_s`
        (default: the busy timeout) for another writer; with `create` false, OutboxError
        unless the file already is one (an operator's command must not turn another SQLite
        file into an outbox); `read_only`: never written, nor locked for writing (an
        operator's `list`)."""
        self.path = path
        self.max_set_aside = max(0, max_set_aside)
        self._busy_timeout_s = busy_timeout_s
        self._read_only = read_only
        self._local = threading.local()  # one connection per thread (sqlite3's rule)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        else:  # read-only first: not even switched to WAL unless it is an outbox
            try:
                with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                             uri=True)) as c:
                    tables = {row[0] for row in c.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.Error as exc:
                raise OutboxError(f"channel outbox {path}: {exc}", _damaged(exc)) from None
            if not {"outbox", "set_aside"} <= tables:
                raise OutboxError(f"{path}: not a channel outbox (no outbox and set_aside "
                                  "tables)")
        if not read_only:
            self._write(self._create, open_wait_s)

    @staticmethod
    def _create(c: sqlite3.Connection) -> None:
        for statement in TABLES:
            c.execute(statement)
        for table, column, definition in COLUMNS:
            if column not in {row[1] for row in c.execute(f"PRAGMA table_info({table})")}:
                c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                if column == "recipient":  # a file written before recipients were kept
                    c.execute(f"UPDATE {table} SET recipient = json_extract(body, '$.crm_id') "
                              "WHERE body != '' AND json_valid(body) AND "
                              "json_extract(body, '$.crm_id_verified') = 1 AND "
                              "json_type(body, '$.crm_id') = 'text'")
        for statement in INDEXES:
            c.execute(statement)
        if not c.execute("SELECT 1 FROM sqlite_master WHERE name = 'tally'").fetchone():
            c.execute("CREATE TABLE tally (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            c.execute(f"INSERT INTO tally SELECT 'pending', COUNT(*) FROM outbox WHERE {_P}")
            c.execute(f"INSERT INTO tally SELECT 'anonymous', COUNT(*) FROM outbox WHERE {_P} "
                      "AND recipient = ''")
            c.execute(f"INSERT INTO tally SELECT 'settled', COUNT(*) FROM outbox "
                      f"WHERE NOT {_P}")
        for statement in TRIGGERS:
            c.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None and self._read_only:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                   timeout=self._busy_timeout_s, isolation_level=None)
            self._local.conn = conn
        elif conn is None:
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
            raise OutboxError(f"channel outbox {self.path}: {exc}", _damaged(exc)) from None

    def _write(self, work: Any, wait_s: float | None = None) -> Any:
        """`work` in one transaction (taken at once: writers never deadlock on upgrade),
        waiting at most `wait_s` (default: the busy timeout) for another writer's."""
        def tx(c: sqlite3.Connection) -> Any:
            if wait_s is not None:
                c.execute(f"PRAGMA busy_timeout = {max(0, int(wait_s * 1000))}")
            try:
                c.execute("BEGIN IMMEDIATE")
            finally:
                if wait_s is not None:
                    c.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            try:
                out = work(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return out
        return self._run(tx)

    def add(self, records: list[dict[str, Any]]) -> int:
        """Add records, without limits (a key present, waiting or settled, is kept as it
        is); how many were new."""
        return self.admit(records, None)[0]

    def admit(self, records: list[dict[str, Any]], limits: Limits | None,
              wait_s: float | None = None) -> tuple[int, list[tuple[dict[str, Any], str]]]:
        """Add the records `limits` leave room for, in one transaction (a key present,
        waiting or settled, is kept as it is, and counts as neither); (how many were new,
        [(record, why not) of the ones refused]). The reasons: `outbox_full`,
        `outbox_full_anonymous`, `session_full`, `recipient_full`, and `cancelled`: its
        session converted at or after the record's decision and before it falls due (the
        cancel reached the file first); such a record is kept settled (its key: not added
        again)."""
        def insert(c: sqlite3.Connection) -> tuple[int, list[tuple[dict[str, Any], str]]]:
            added, refused = 0, []
            for r in records:
                if c.execute("SELECT 1 FROM outbox WHERE key = ?", (r["key"],)).fetchone():
                    continue
                session, to = r.get("session_id") or "", recipient(r)
                at = _cancelled_at(c, session, r)
                if at is not None:
                    c.execute("INSERT INTO outbox (key, body, channel, session, due_ms, "
                              "next_ms, settled_ms, recipient) VALUES (?, '', ?, ?, ?, ?, ?, ?)",
                              (r["key"], r["channel"] or "", session, r["due_ms"], SETTLED, at,
                               to))
                    refused.append((r, "cancelled"))
                    continue
                why = self._full(c, limits, session, to) if limits is not None else None
                if why is not None:
                    refused.append((r, why))
                    continue
                c.execute("INSERT INTO outbox (key, body, channel, session, due_ms, next_ms, "
                          "recipient) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (r["key"], json.dumps(r, separators=(",", ":"), ensure_ascii=False),
                           r["channel"] or "", session, r["due_ms"], r["due_ms"], to))
                added += 1
            return added, refused
        return self._write(insert, wait_s)

    @staticmethod
    def _full(c: sqlite3.Connection, limits: Limits, session: str, to: str) -> str | None:
        tally = dict(c.execute("SELECT name, n FROM tally").fetchall())
        if tally["pending"] >= limits.pending:
            return "outbox_full"
        if not to and tally["anonymous"] >= limits.anonymous:
            return "outbox_full_anonymous"
        if session and c.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE session = ? AND {_P} "
                "LIMIT ?)", (session, limits.per_session)).fetchone()[0] >= limits.per_session:
            return "session_full"
        if to and c.execute(
                f"SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE recipient = ? AND {_P} "
                "LIMIT ?)", (to, limits.per_recipient)).fetchone()[0] >= limits.per_recipient:
            return "recipient_full"
        return None

    def claim(self, now_ms: int, limit: int, lease_ms: int) -> list[Claimed]:
        """Up to `limit` records due by `now_ms`, leased to the caller for `lease_ms`."""
        def take(c: sqlite3.Connection) -> list[Claimed]:
            rows = c.execute("SELECT key, body, channel, due_ms, attempts, recipient "
                             "FROM outbox WHERE next_ms <= ? ORDER BY next_ms LIMIT ?",
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
            # rowcount, not total_changes: that counts the tally's trigger updates too
            return c.executemany("UPDATE outbox SET next_ms = ?, owner = NULL WHERE owner = ? "
                                 "AND next_ms > ? AND next_ms < ?",
                                 [(now_ms, o, now_ms, SETTLED) for o in dead]).rowcount \
                if dead else 0
        return int(self._write(release))

    def _settle(self, c: sqlite3.Connection, key: str, now_ms: int) -> bool:
        """Settle a record not settled yet; whether it was (a late answer to a send that
        was taken over, or cancelled meanwhile, changes nothing)."""
        return c.execute("UPDATE outbox SET next_ms = ?, settled_ms = ?, body = '', "
                         "owner = NULL WHERE key = ? AND next_ms < ?",
                         (SETTLED, now_ms, key, SETTLED)).rowcount > 0

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
            c, [(item.key, item.body, item.channel, reason, item.recipient)], now_ms))

    def expire(self, now_ms: int, max_age_ms: int) -> list[tuple[str, str]]:
        """Set aside, in bulk, the claimable records more than `max_age_ms` past due (an
        edge down for days: stale reminders, not sent; without this each would wait its
        turn ahead of the fresh ones); their (key, channel), at most CHUNK at a time."""
        def move(c: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = c.execute("SELECT key, body, channel, due_ms, recipient FROM outbox "
                             "WHERE next_ms <= ? AND due_ms <= ? LIMIT ?",
                             (now_ms, now_ms - max_age_ms, CHUNK)).fetchall()
            moved = self._move_aside(c, [(k, b, ch, f"expired: {(now_ms - due) // 1000} s "
                                          "past due", to) for k, b, ch, due, to in rows],
                                     now_ms)
            return [(row[0], row[2]) for row in moved]
        return list(self._write(move))

    def _move_aside(self, c: sqlite3.Connection, rows: list[tuple[str, str, str, str, str]],
                    now_ms: int) -> list[tuple[str, str, str, str, str]]:
        """Settle each (key, body, channel, reason, recipient) not settled yet (another
        send of it may have been first) and keep it in `set_aside`; the ones moved. Beyond
        the bound the oldest anonymous records there go first: a record addressed to a
        verified recipient is removed only by more such records than the bound holds."""
        moved = [row for row in rows if self._settle(c, row[0], now_ms)]
        c.executemany("INSERT OR REPLACE INTO set_aside (key, body, channel, reason, at_ms, "
                      "recipient) VALUES (?, ?, ?, ?, ?, ?)",
                      [(k, b, ch, reason[:500], now_ms, to) for k, b, ch, reason, to in moved])
        excess = c.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0] - self.max_set_aside
        for anonymous_only in (True, False):
            if excess <= 0:
                break
            which = "WHERE recipient = ''" if anonymous_only else ""
            excess -= c.execute(f"DELETE FROM set_aside WHERE key IN (SELECT key FROM "
                                f"set_aside {which} ORDER BY at_ms LIMIT ?)",
                                (excess,)).rowcount
        return moved

    def cancel_session(self, session_id: str, now_ms: int, wait_s: float | None = None) -> int:
        """Settle the session's deliveries not yet due at `now_ms` (never claimed), and keep
        the cancel (its latest moment) for the ones added later (`admit`); how many."""
        def drop(c: sqlite3.Connection) -> int:
            c.execute("INSERT INTO cancels (session, at_ms) VALUES (?, ?) ON CONFLICT "
                      "(session) DO UPDATE SET at_ms = max(at_ms, excluded.at_ms)",
                      (session_id, now_ms))
            return c.execute("UPDATE outbox SET next_ms = ?, settled_ms = ?, body = '' "
                             "WHERE session = ? AND due_ms > ? AND attempts = 0 AND "
                             "next_ms < ? AND owner IS NULL",
                             (SETTLED, now_ms, session_id, now_ms, SETTLED)).rowcount
        return int(self._write(drop, wait_s))

    def purge(self, now_ms: int, keep_ms: int, max_keys: int | None = None) -> int:
        """Forget the keys of records settled more than `keep_ms` ago, and beyond
        `max_keys` kept the oldest ones sooner; how many. In chunks: a day of keys at once
        would hold the write lock for seconds, and writers wait for it."""
        def forget(c: sqlite3.Connection) -> int:
            n = c.execute("DELETE FROM outbox WHERE key IN (SELECT key FROM outbox WHERE "
                          "next_ms = ? AND settled_ms < ? LIMIT ?)",
                          (SETTLED, now_ms - keep_ms, CHUNK)).rowcount
            if n == 0 and max_keys is not None:  # the old ones gone: now beyond the bound
                excess = c.execute("SELECT n FROM tally WHERE name = 'settled'").fetchone()[0] \
                    - max_keys
                if excess > 0:
                    n = c.execute("DELETE FROM outbox WHERE key IN (SELECT key FROM outbox "
                                  "WHERE settled_ms IS NOT NULL AND next_ms = ? ORDER BY "
                                  "settled_ms LIMIT ?)", (SETTLED, min(excess, CHUNK))).rowcount
            return n
        def forget_cancels(c: sqlite3.Connection) -> int:
            n = c.execute("DELETE FROM cancels WHERE session IN (SELECT session FROM cancels "
                          "WHERE at_ms < ? LIMIT ?)", (now_ms - keep_ms, CHUNK)).rowcount
            if n == 0 and max_keys is not None:
                excess = c.execute("SELECT COUNT(*) FROM cancels").fetchone()[0] - max_keys
                if excess > 0:
                    n = c.execute("DELETE FROM cancels WHERE session IN (SELECT session FROM "
                                  "cancels ORDER BY at_ms LIMIT ?)",
                                  (min(excess, CHUNK),)).rowcount
            return n
        total = 0
        while (n := int(self._write(forget))) > 0:
            total += n
        while int(self._write(forget_cancels)) > 0:  # conversions' cancels: kept as long
            pass
        return total

    def requeue(self, now_ms: int, limits: Limits | None = None) -> tuple[int, dict[str, int]]:
        """Move the set-aside records back to be sent now, the oldest first, as far as
        `limits` leave room (the bounds a decision's records meet); (how many moved,
        {why not: how many stayed set aside})."""
        def back(c: sqlite3.Connection) -> tuple[int, dict[str, int]]:
            rows = c.execute("SELECT key, body, channel, recipient FROM set_aside "
                             "ORDER BY at_ms").fetchall()
            moved, kept = 0, {}
            for k, b, ch, to in rows:
                session = _session_of(b)
                why = self._full(c, limits, session, to) if limits is not None else None
                if why is not None:
                    kept[why] = kept.get(why, 0) + 1
                    continue
                # a delete and an insert, not INSERT OR REPLACE: the tally's triggers see both
                c.execute("DELETE FROM outbox WHERE key = ?", (k,))
                c.execute("INSERT INTO outbox (key, body, channel, session, due_ms, next_ms, "
                          "recipient) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (k, b, ch, session, now_ms, now_ms, to))
                c.execute("DELETE FROM set_aside WHERE key = ?", (k,))
                moved += 1
            return moved, kept
        moved, kept = self._write(back)
        return int(moved), dict(kept)

    def next_due(self) -> int | None:
        """When the earliest record may be claimed (due, retry or end of lease)."""
        row = self._run(lambda c: c.execute("SELECT MIN(next_ms) FROM outbox").fetchone())
        return None if row[0] is None or row[0] >= SETTLED else int(row[0])

    def counts(self) -> tuple[int, int]:
        """(records waiting, records set aside)."""
        return self._run(lambda c: (
            c.execute("SELECT n FROM tally WHERE name = 'pending'").fetchone()[0],
            c.execute("SELECT COUNT(*) FROM set_aside").fetchone()[0]))

    def tally(self) -> dict[str, int]:
        """{'pending', 'anonymous' (of those), 'settled' (keys kept)}: records in the file."""
        return dict(self._run(lambda c: c.execute("SELECT name, n FROM tally").fetchall()))

    def set_aside_records(self) -> list[tuple[dict[str, Any] | str, str]]:
        """(record, reason) of each set-aside record, the oldest first; a body that is not
        a JSON object (a file edited by hand) is given as its text."""
        rows = self._run(lambda c: c.execute(
            "SELECT body, reason FROM set_aside ORDER BY at_ms").fetchall())
        return [(_record(body), reason) for body, reason in rows]


def _record(body: str) -> dict[str, Any] | str:
    try:
        record = json.loads(body)
    except ValueError:
        return body
    return record if type(record) is dict else body


def _cancelled_at(c: sqlite3.Connection, session: str, record: dict[str, Any]) -> int | None:
    """The moment `session` converted, if that cancels `record`: at or after the record's
    decision (`decided_ms`), before it falls due."""
    decided = record.get("decided_ms")
    if not session or type(decided) is not int:
        return None
    row = c.execute("SELECT at_ms FROM cancels WHERE session = ?", (session,)).fetchone()
    return int(row[0]) if row and decided <= row[0] < record["due_ms"] else None


def _session_of(body: str) -> str:
    record = _record(body)
    session = record.get("session_id") if type(record) is dict else None
    return session if type(session) is str else ""


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
