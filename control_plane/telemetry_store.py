"""The telemetry store: decision and outcome records from the edges, in SQLite (WAL).

Ingest is idempotent: every record carries an id made at the edge, and a record already
stored is ignored, so a batch the edge retries (its answer was lost) never counts twice.
The schema grows by ordered migrations; `schema_version` says how many have run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


class TelemetryError(ValueError):
    """A malformed record: `line` is its 1-based position in the batch."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _run(db: sqlite3.Connection, script: str) -> None:
    """Statements one by one: executescript would commit the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _run(db, """
        CREATE TABLE decisions (
            id TEXT PRIMARY KEY, edge_id TEXT, ts_ms INTEGER NOT NULL, session TEXT NOT NULL,
            revision TEXT, device TEXT, country TEXT, local_hour INTEGER, url TEXT,
            latency_us INTEGER, fired TEXT NOT NULL, suppressed TEXT NOT NULL,
            features TEXT NOT NULL);
        CREATE INDEX decisions_session ON decisions (session, ts_ms);
        CREATE TABLE fires (
            decision_id TEXT NOT NULL, trigger TEXT NOT NULL, session TEXT NOT NULL,
            ts_ms INTEGER NOT NULL, revision TEXT, device TEXT,
            PRIMARY KEY (decision_id, trigger));
        CREATE INDEX fires_trigger ON fires (trigger, session);
        CREATE TABLE outcomes (
            id TEXT PRIMARY KEY, edge_id TEXT, ts_ms INTEGER NOT NULL, session TEXT NOT NULL,
            decision_id TEXT, trigger TEXT, type TEXT NOT NULL);
        CREATE INDEX outcomes_session ON outcomes (session, ts_ms);
    """)


def _v2(db: sqlite3.Connection) -> None:
    _run(db, """
        CREATE TABLE recalibrations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL,
            trigger TEXT NOT NULL, model_key TEXT NOT NULL, segment TEXT NOT NULL,
            old REAL, new REAL, samples INTEGER NOT NULL, objective REAL,
            reason TEXT NOT NULL, revision INTEGER);
    """)


def _v3(db: sqlite3.Connection) -> None:
    # The session's arm of the adaptive-threshold experiment (NULL: none ran).
    _run(db, "ALTER TABLE decisions ADD COLUMN arm TEXT")


def _v4(db: sqlite3.Connection) -> None:
    # What a recalibration started from: the served revision, its snapshot hash, the packs
    # (name: source hash) compiled into it, and whether it ran over a rollback (JSON).
    _run(db, "ALTER TABLE recalibrations ADD COLUMN source TEXT")


# Ordered: a new schema change is a new function at the end, never an edit of an old one.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4)
ARMS = ("adaptive", "static", "holdout")


@dataclass(frozen=True)
class Ingested:
    stored: int
    duplicates: int


class TelemetryStore:
    """SQLite at `path`; one connection per thread (waitress serves on several)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            migrate(db)

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast
            self._local.db = db
        yield db

    def ingest(self, records: Iterable[dict[str, Any]]) -> Ingested:
        """Store records not seen before (by id), in one transaction."""
        rows = [_check(r, n) for n, r in enumerate(records, 1)]
        stored = 0
        with self.connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for rec in rows:
                    stored += _insert(db, rec)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Ingested(stored, len(rows) - stored)

    def count(self, table: str) -> int:
        if table not in ("decisions", "outcomes", "fires", "recalibrations"):
            raise ValueError(table)
        with self.connection() as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def counts(self, edge_id: str | None = None, since_ms: int = 0) -> dict[str, int]:
        """Stored decision and outcome records (of one edge, from `since_ms` on)."""
        where, params = "ts_ms >= ?", [since_ms]
        if edge_id is not None:
            where += " AND edge_id = ?"
            params.append(edge_id)
        with self.connection() as db:
            return {table: int(db.execute(f"SELECT count(*) FROM {table} WHERE {where}",
                                          params).fetchone()[0])
                    for table in ("decisions", "outcomes")}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.connection() as db:
            return db.execute(sql, params).fetchall()

    def record_recalibrations(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.connection() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO recalibrations (ts_ms, trigger, model_key, segment, old, new, "
                "samples, objective, reason, revision, source) VALUES (:ts_ms, :trigger, "
                ":model_key, :segment, :old, :new, :samples, :objective, :reason, :revision, "
                ":source)", [{"source": None, **row} for row in rows])
            db.execute("COMMIT")


def migrate(db: sqlite3.Connection) -> int:
    """Run the migrations not yet applied, in order; returns the schema version."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        db.execute("INSERT INTO schema_version VALUES (0)")
        version = 0
    else:
        version = int(row[0])
    for number, step in enumerate(MIGRATIONS, 1):
        if number <= version:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute("UPDATE schema_version SET version = ?", (number,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        version = number
    return version


def _check(rec: Any, line: int) -> dict[str, Any]:
    if type(rec) is not dict:
        raise TelemetryError("a record is a JSON object", line)
    if rec.get("kind") not in ("decision", "outcome"):
        raise TelemetryError("kind must be decision or outcome", line)
    for name in ("id", "session"):
        if type(rec.get(name)) is not str or not rec[name]:
            raise TelemetryError(f"{name} must be a non-empty string", line)
    if type(rec.get("ts_ms")) is not int or not 0 <= rec["ts_ms"] < 2**63:
        raise TelemetryError("ts_ms must be an integer from 0 to 2^63 - 1 (ms since epoch)",
                             line)
    return rec


def _insert(db: sqlite3.Connection, rec: dict[str, Any]) -> int:
    if rec["kind"] == "outcome":
        cur = db.execute(
            "INSERT OR IGNORE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec["id"], rec.get("edge_id"), rec["ts_ms"], rec["session"],
             rec.get("decision_id"), rec.get("trigger"), str(rec.get("type"))))
        return cur.rowcount
    ctx = rec.get("context") or {}
    fired = [t for t in rec.get("fired") or () if isinstance(t, str)]
    revision = None if rec.get("revision") is None else str(rec["revision"])
    hour = ctx.get("local_hour")
    arm = rec.get("arm") if rec.get("arm") in ARMS else None
    cur = db.execute(
        "INSERT OR IGNORE INTO decisions (id, edge_id, ts_ms, session, revision, device, "
        "country, local_hour, url, latency_us, fired, suppressed, features, arm) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rec["id"], rec.get("edge_id"), rec["ts_ms"], rec["session"], revision,
         ctx.get("device"), ctx.get("country"), hour if type(hour) is int else None,
         ctx.get("url"), rec.get("latency_us"), json.dumps(fired),
         json.dumps(rec.get("suppressed") or []), json.dumps(rec.get("features") or {}), arm))
    if cur.rowcount:
        db.executemany("INSERT OR IGNORE INTO fires VALUES (?, ?, ?, ?, ?, ?)",
                       [(rec["id"], t, rec["session"], rec["ts_ms"], revision,
                         ctx.get("device")) for t in fired])
    return cur.rowcount
