"""The telemetry store: decision and outcome records from the edges, in SQLite (WAL).

Ingest is idempotent: every record carries an id made at the edge, and a record already
stored is ignored, so a batch the edge retries (its answer was lost) never counts twice.
Ingest checks records one by one (`check_record`): a bad record is rejected alone, with
its index and a reason, and the rest of the batch is stored.
The schema grows by ordered migrations; `schema_version` says how many have run.

Longer than most modules on purpose: the record checks, the schema's migrations and the
queries that read them belong to one schema and change together.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge_module.sqlite_wal import use_wal

T = TypeVar("T")

INT_MAX = 2**63 - 1  # SQLite's INTEGER
MAX_SAFE_INT = 2**53  # an integer in features or a report: beyond it, no float holds it
# How far ahead of this machine's clock a record may be (edges' clocks drift; an edge
# sending microseconds for milliseconds is refused, not kept in every period for good)
MAX_FUTURE_MS = 86_400_000
MAX_FIELD_CHARS = 4096  # CONTROL_TELEMETRY_MAX_FIELD_CHARS: one string field of a record
MAX_JSON_CHARS = 16 * 1024  # features or suppressed of one record, as stored JSON
# a decision's `report` (issue #12) as stored JSON: the edge bounds it to 16 triggers of 16
# values with names of at most 128 characters, ~45 KiB at worst
MAX_REPORT_CHARS = 64 * 1024
MAX_FIRED = 1000  # triggers named in one decision record
PRUNE_BATCH = 5000  # rows deleted per write transaction by `prune`


class TelemetryError(ValueError):
    """A malformed record: `code` says what kind of fault, `line` is its 1-based position
    in the batch."""

    def __init__(self, message: str, line: int | None = None,
                 code: str = "invalid_record") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.code = code


class SinkUnavailable(RuntimeError):
    """The sink could not take the batch now (a stream throttling, unreachable): the edge
    should send it again later (HTTP 503)."""


@dataclass(frozen=True)
class Unparsable:
    """A batch line that is not JSON: rejected like any bad record, at its index."""

    message: str


@dataclass(frozen=True)
class Refused:
    """A record the caller may not send (another edge's, with a bound edge token):
    rejected like any bad record, at its index."""

    code: str
    message: str


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


def _v5(db: sqlite3.Connection) -> None:
    # What the decision core saw (its `report`, JSON; NULL: the edge sent none): the
    # learning loop reads the values the conditions measured, not a second definition.
    _run(db, "ALTER TABLE decisions ADD COLUMN report TEXT")


# Ordered: a new schema change is a new function at the end, never an edit of an old one.
def _v6(db: sqlite3.Connection) -> None:
    # The learning loop's numbers behind each recalibration (JSON): recall estimate and its
    # bound, firing shares, background rate, the guardrail's comparison.
    _run(db, "ALTER TABLE recalibrations ADD COLUMN details TEXT")


def _v7(db: sqlite3.Connection) -> None:
    # The content variant a firing showed (NULL: its content has no variants, or an edge
    # from before variants): reports break each trigger down by it.
    _run(db, "ALTER TABLE fires ADD COLUMN variant TEXT")


def _v8(db: sqlite3.Connection) -> None:
    # One row per session, kept at ingest (`_store`): when it began, the experiment arm its
    # decisions name (`mixed` when more than one; the reports then read its decisions), its
    # last decision naming an arm and its last outside the holdout. A report over a month
    # counts sessions here instead of reading every decision of the month on each request.
    # Firings carry their decision's latency (the same instant, so the same period).
    _run(db, """
        CREATE TABLE sessions (
            session TEXT PRIMARY KEY, first_ts INTEGER NOT NULL, arm TEXT, arm_ts INTEGER,
            mixed INTEGER NOT NULL DEFAULT 0, open_ts INTEGER) WITHOUT ROWID;
        INSERT INTO sessions (session, first_ts, arm, arm_ts, mixed, open_ts)
            SELECT session, min(ts_ms), min(arm),
                   max(CASE WHEN arm IS NOT NULL THEN ts_ms END), count(DISTINCT arm) > 1,
                   max(CASE WHEN arm IS NULL OR arm != 'holdout' THEN ts_ms END)
            FROM decisions GROUP BY session;
        CREATE INDEX sessions_arm ON sessions (arm_ts, arm, mixed);
        CREATE INDEX sessions_open ON sessions (open_ts);
        CREATE INDEX decisions_suppressed ON decisions (ts_ms) WHERE suppressed != '[]';
        ALTER TABLE fires ADD COLUMN latency_us INTEGER;
        UPDATE fires SET latency_us = (
            SELECT latency_us FROM decisions WHERE decisions.id = fires.decision_id);
    """)


def _v9(db: sqlite3.Connection) -> None:
    # Why a channel firing was never sent (`unverified_recipient`...; NULL: handed on, or
    # an edge from before): it reached nobody, so the reports keep it out of the fires.
    _run(db, "ALTER TABLE fires ADD COLUMN undelivered TEXT")


def _v10(db: sqlite3.Connection) -> None:
    # What the reports read of every firing in a period: the firings of a period are found
    # by ts_ms, and the triggers and variants a report folds to their most fired
    # (reports.most_fired) are counted from an index holding them and ts_ms, in their
    # order, without the table. Without them each of a report's GROUP BYs read and sorted
    # the whole table: 7 s of an 11.8 s report over 397k firings, and four reports held
    # every thread. Devices and revisions have no index of their own (0.3-0.4 s each over
    # that store): every index is paid for at every ingest.
    _run(db, """
        CREATE INDEX IF NOT EXISTS fires_ts ON fires (ts_ms);
        CREATE INDEX IF NOT EXISTS fires_trigger_variant ON fires (trigger, variant, ts_ms);
    """)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4, _v5, _v6,
                                                                _v7, _v8, _v9, _v10)
ARMS = ("adaptive", "static", "holdout")


@dataclass(frozen=True)
class Rejected:
    """One record refused: its 0-based index in the batch, a code and a reason."""

    index: int
    code: str
    reason: str


@dataclass(frozen=True)
class Ingested:
    stored: int  # accepted: new records stored (or put on the stream)
    duplicates: int
    rejected: tuple[Rejected, ...] = field(default=())

    def answer(self, max_listed: int = 100) -> dict[str, Any]:
        """The ingest answer: counts, rejections by code (all of them) and the first
        `max_listed` rejections with index and reason."""
        return {"accepted": self.stored, "duplicates": self.duplicates,
                "rejected": [{"index": r.index, "code": r.code, "reason": r.reason}
                             for r in self.rejected[:max_listed]],
                "rejected_by_code": dict(Counter(r.code for r in self.rejected))}


def consistent(report: Callable[..., T]) -> Callable[..., T]:
    """`report(store, ...)` over one snapshot of its store (`TelemetryStore.snapshot`): its
    queries never see an ingest half-way (a session counted by one and not another)."""
    @functools.wraps(report)
    def run(store: TelemetryStore, *args: Any, **kwargs: Any) -> T:
        with store.snapshot():
            return report(store, *args, **kwargs)
    return run


class TelemetryStore:
    """SQLite at `path`; one connection per thread (waitress serves on several)."""

    def __init__(self, path: str | Path, max_field_chars: int = MAX_FIELD_CHARS) -> None:
        self.path = Path(path)
        self.max_field_chars = max_field_chars
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.connection() as db:
            use_wal(db)  # several processes may open a new store at once
            migrate(db)

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast
            self._local.db = db
        yield db

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One consistent view of the store for every read inside (a report's several
        queries): a read transaction on this thread's connection, so an ingest committed
        meanwhile is seen by all of them or by none. Re-entrant."""
        depth = getattr(self._local, "snapshot_depth", 0)
        with self.connection() as db:
            if depth == 0:
                db.execute("BEGIN")
            self._local.snapshot_depth = depth + 1
            try:
                yield
            finally:
                self._local.snapshot_depth = depth
                if depth == 0:
                    db.execute("COMMIT")

    def ingest(self, records: Iterable[Any]) -> Ingested:
        """Store the well-formed records not seen before (by id), in one transaction;
        each bad one is rejected alone, with its index and the reason."""
        rows, rejected = check_records(records, self.max_field_chars)
        try:
            return self._store(rows, rejected)
        except sqlite3.OperationalError as exc:  # disk full, locked, I/O: the store, not
            raise SinkUnavailable(f"telemetry store: {exc}") from None  # the batch (503)

    def _store(self, rows: list[tuple[int, dict[str, Any]]],
               rejected: list[Rejected]) -> Ingested:
        stored = 0
        sessions: dict[str, list[Any]] = {}
        with self.connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for index, rec in rows:
                    # a savepoint per record: one the database refuses leaves no half
                    db.execute("SAVEPOINT record")
                    try:
                        new = _insert(db, rec)
                    except (sqlite3.DataError, sqlite3.IntegrityError, OverflowError,
                            ValueError, TypeError) as exc:
                        db.execute("ROLLBACK TO record")
                        rejected.append(Rejected(index, "not_storable", str(exc)[:200]))
                    else:
                        stored += new
                        if new and rec["kind"] == "decision":
                            _fold_session(sessions, rec)
                    db.execute("RELEASE record")
                _count_sessions(db, sessions)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        rejected.sort(key=lambda r: r.index)
        return Ingested(stored, len(rows) - stored - _not_stored(rejected), tuple(rejected))

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

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """`query` one row at a time: a report that folds many rows into a few never holds
        them all (nor makes the garbage collector walk them)."""
        with self.connection() as db:
            return db.execute(sql, params)

    def prune(self, before_ms: int, batch: int = PRUNE_BATCH) -> dict[str, int]:
        """Delete the decisions, firings and outcomes stamped before `before_ms`, and the
        sessions whose last decision was; the recalibrations (the audit trail) stay.
        Returns the rows deleted per table.

        Each batch of `batch` rows is its own short write transaction, so an ingest waits
        for one batch at most, never for the whole prune. Rows are found by rowid (the
        order they were stored in, close to their time) below the first one stamped at or
        after `before_ms`, without an index on time: every index costs every ingest. A
        record stored late with an old stamp (an edge's spool after an outage) is deleted
        by a later prune, once newer rows are older than the cutoff too."""
        deleted: dict[str, int] = {}
        with self.connection() as db:
            for table in ("decisions", "fires", "outcomes"):
                # `+ts_ms`: no index on time (fires has one): the scan goes by rowid,
                # through the rows about to be deleted, and stops at the first one kept.
                first_kept = db.execute(f"SELECT rowid FROM {table} WHERE +ts_ms >= ? "
                                        "ORDER BY rowid LIMIT 1", (before_ms,)).fetchone()
                bound = first_kept[0] if first_kept else INT_MAX
                deleted[table] = self._delete_batches(db, (
                    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                    "WHERE rowid < ? AND ts_ms < ? ORDER BY rowid LIMIT ?)"),
                    (bound, before_ms, batch))
            # A session's last decision: open_ts (outside the holdout) or, for a session
            # only ever in the holdout, arm_ts; each found through its index.
            deleted["sessions"] = self._delete_batches(db, (
                "DELETE FROM sessions WHERE session IN (SELECT session FROM sessions "
                "WHERE open_ts < ? AND (arm_ts IS NULL OR arm_ts < ?) LIMIT ?)"),
                (before_ms, before_ms, batch)) + self._delete_batches(db, (
                "DELETE FROM sessions WHERE session IN (SELECT session FROM sessions "
                "WHERE open_ts IS NULL AND arm_ts < ? LIMIT ?)"), (before_ms, batch))
        return deleted

    @staticmethod
    def _delete_batches(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
        total = 0
        while True:
            db.execute("BEGIN IMMEDIATE")
            try:
                count = db.execute(sql, params).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            total += count
            if count < params[-1]:
                return total

    def record_recalibrations(self, rows: Iterable[dict[str, Any]]) -> None:
        with self.connection() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO recalibrations (ts_ms, trigger, model_key, segment, old, new, "
                "samples, objective, reason, revision, source, details) VALUES (:ts_ms, "
                ":trigger, :model_key, :segment, :old, :new, :samples, :objective, :reason, "
                ":revision, :source, :details)",
                [{"source": None, **row, "details": json.dumps(row["details"])
                  if row.get("details") else None} for row in rows])
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
            # read again under the write lock: another process opening the same store at
            # the same moment may have applied this step while this one waited for it
            version = int(db.execute("SELECT version FROM schema_version").fetchone()[0])
            if number > version:
                step(db)
                db.execute("UPDATE schema_version SET version = ?", (number,))
                version = number
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return version


def _not_stored(rejected: list[Rejected]) -> int:
    return sum(r.code == "not_storable" for r in rejected)


def check_records(records: Iterable[Any], max_chars: int = MAX_FIELD_CHARS
                  ) -> tuple[list[tuple[int, dict[str, Any]]], list[Rejected]]:
    """The well-formed records with their index, and the rejections of the others."""
    rows: list[tuple[int, dict[str, Any]]] = []
    rejected: list[Rejected] = []
    for index, rec in enumerate(records):
        try:
            rows.append((index, check_record(rec, index + 1, max_chars)))
        except TelemetryError as exc:
            rejected.append(Rejected(index, exc.code, exc.message))
    return rows, rejected


def check_record(rec: Any, line: int, max_chars: int = MAX_FIELD_CHARS) -> dict[str, Any]:
    """A record as it will be stored (its JSON fields serialised), or TelemetryError
    naming the first field that is wrong: a type, a length or a number out of range."""
    if isinstance(rec, Unparsable):
        raise TelemetryError(f"not JSON: {rec.message}", line, "invalid_json")
    if isinstance(rec, Refused):
        raise TelemetryError(rec.message, line, rec.code)
    if type(rec) is not dict:
        raise TelemetryError("a record is a JSON object", line)
    kind = rec.get("kind")
    if kind not in ("decision", "outcome"):
        raise TelemetryError("kind must be decision or outcome", line)
    for name in ("id", "session"):
        if type(rec.get(name)) is not str or not rec[name] or len(rec[name]) > max_chars:
            raise TelemetryError(f"{name} must be a non-empty string of at most {max_chars} "
                                 "characters", line)
    if type(rec.get("ts_ms")) is not int or not 0 <= rec["ts_ms"] <= INT_MAX:
        raise TelemetryError("ts_ms must be an integer from 0 to 2^63 - 1 (ms since epoch)",
                             line)
    if rec["ts_ms"] > time.time() * 1000 + MAX_FUTURE_MS:
        raise TelemetryError("ts_ms is more than a day ahead of this server's clock "
                             "(milliseconds since the epoch are expected)", line)
    row = {"kind": kind, "id": rec["id"], "session": rec["session"], "ts_ms": rec["ts_ms"],
           "edge_id": _text(rec, "edge_id", max_chars, line)}
    if kind == "outcome":
        row["decision_id"] = _text(rec, "decision_id", max_chars, line)
        row["trigger"] = _text(rec, "trigger", max_chars, line)
        row["type"] = _text(rec, "type", max_chars, line, required=True)
        return row
    ctx = rec.get("context")
    if ctx is None:
        ctx = {}
    elif type(ctx) is not dict:
        raise TelemetryError("context must be an object", line)
    revision = rec.get("revision")
    if type(revision) is int and -INT_MAX - 1 <= revision <= INT_MAX:
        revision = str(revision)
    row["revision"] = _text({"revision": revision}, "revision", max_chars, line)
    row["device"] = _text(ctx, "device", max_chars, line, "context.")
    row["country"] = _text(ctx, "country", max_chars, line, "context.")
    row["url"] = _text(ctx, "url", max_chars, line, "context.")
    hour = ctx.get("local_hour")
    if hour is not None and (type(hour) is not int or not 0 <= hour <= 23):
        raise TelemetryError("context.local_hour must be an integer from 0 to 23 or null", line)
    row["local_hour"] = hour
    latency = rec.get("latency_us")
    if latency is not None and (type(latency) is not int or not 0 <= latency <= INT_MAX):
        raise TelemetryError("latency_us must be an integer from 0 to 2^63 - 1 or null", line)
    row["latency_us"] = latency
    fired = rec.get("fired")
    if fired is None:
        fired = []
    if type(fired) is not list or len(fired) > MAX_FIRED or any(
            type(t) is not str or len(t) > max_chars for t in fired):
        raise TelemetryError(f"fired must be a list of at most {MAX_FIRED} trigger names "
                             f"of at most {max_chars} characters", line)
    row["fired"] = fired
    variants = rec.get("variants")
    if variants is None:
        variants = {}
    if type(variants) is not dict or len(variants) > MAX_FIRED or any(
            type(v) is not str or len(t) > max_chars or len(v) > max_chars
            for t, v in variants.items()):
        raise TelemetryError(f"variants must be an object of at most {MAX_FIRED} trigger names "
                             f"-> variant names, each of at most {max_chars} characters", line)
    row["variants"] = variants
    undelivered = rec.get("undelivered")
    if undelivered is None:
        undelivered = {}
    if type(undelivered) is not dict or len(undelivered) > MAX_FIRED or any(
            type(v) is not str or len(t) > max_chars or len(v) > max_chars
            or not _unicode(t) or not _unicode(v) for t, v in undelivered.items()):
        raise TelemetryError(f"undelivered must be an object of at most {MAX_FIRED} trigger "
                             f"names -> reasons, each valid Unicode of at most {max_chars} "
                             "characters", line)
    row["undelivered"] = undelivered
    row["suppressed"] = _json(rec, "suppressed", list, line)
    row["features"] = _json(rec, "features", dict, line)
    row["report"] = None if rec.get("report") is None else \
        _json(rec, "report", dict, line, MAX_REPORT_CHARS)
    row["arm"] = rec.get("arm") if rec.get("arm") in ARMS else None
    return row


def _text(rec: dict[str, Any], name: str, max_chars: int, line: int, prefix: str = "",
          required: bool = False) -> str | None:
    value = rec.get(name)
    if value is None and not required:
        return None
    if type(value) is not str or len(value) > max_chars:
        raise TelemetryError(f"{prefix}{name} must be a string of at most {max_chars} "
                             f"characters{'' if required else ' or null'}", line)
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate (\ud800): SQLite would refuse it
        raise TelemetryError(f"{prefix}{name} is not valid Unicode", line) from None
    return value


def _unicode(value: str) -> bool:
    """No lone surrogate (\\ud800) in `value`: SQLite would refuse to store it."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json(rec: dict[str, Any], name: str, kind: type, line: int,
          max_chars: int = MAX_JSON_CHARS) -> str:
    """A nested field as the JSON text stored: finite numbers, bounded size."""
    value = rec.get(name)
    if value is None:
        value = kind()
    if type(value) is not kind:
        raise TelemetryError(f"{name} must be a JSON {'list' if kind is list else 'object'}",
                             line)
    try:
        text = json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        raise TelemetryError(f"{name} holds a number that is not finite or is nested too "
                             "deep", line) from None
    if len(text) > max_chars:
        raise TelemetryError(f"{name} is over {max_chars} characters as JSON", line)
    if _has_huge_int(value):  # 10**400 is valid JSON, and no float: the learner raised on it
        raise TelemetryError(f"{name} holds an integer beyond 2^53 (an edge measures "
                             "nothing that large)", line)
    return text


def _has_huge_int(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is int and not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
            return True
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return False


def _insert(db: sqlite3.Connection, rec: dict[str, Any]) -> int:
    """One checked record (`check_record`): 1 if stored, 0 if its id was already."""
    if rec["kind"] == "outcome":
        cur = db.execute(
            "INSERT OR IGNORE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec["id"], rec["edge_id"], rec["ts_ms"], rec["session"],
             rec["decision_id"], rec["trigger"], rec["type"]))
        return cur.rowcount
    cur = db.execute(
        "INSERT OR IGNORE INTO decisions (id, edge_id, ts_ms, session, revision, device, "
        "country, local_hour, url, latency_us, fired, suppressed, features, arm, report) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rec["id"], rec["edge_id"], rec["ts_ms"], rec["session"], rec["revision"],
         rec["device"], rec["country"], rec["local_hour"], rec["url"], rec["latency_us"],
         json.dumps(rec["fired"]), rec["suppressed"], rec["features"], rec["arm"],
         rec["report"]))
    if cur.rowcount:
        db.executemany("INSERT OR IGNORE INTO fires (decision_id, trigger, session, ts_ms, "
                       "revision, device, variant, latency_us, undelivered) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(rec["id"], t, rec["session"], rec["ts_ms"], rec["revision"],
                         rec["device"], rec["variants"].get(t), rec["latency_us"],
                         rec["undelivered"].get(t))
                        for t in dict.fromkeys(rec["fired"])])
    return cur.rowcount


def _fold_session(sessions: dict[str, list[Any]], rec: dict[str, Any]) -> None:
    """A stored decision into its session's row of the batch: [first_ts, arm, mixed, arm_ts,
    open_ts] as the `sessions` table keeps them (`_v8`)."""
    ts, arm = rec["ts_ms"], rec["arm"]
    row = sessions.get(rec["session"])
    if row is None:
        sessions[rec["session"]] = [ts, arm, 0, None if arm is None else ts,
                                    None if arm == "holdout" else ts]
        return
    row[0] = min(row[0], ts)
    if arm is not None:
        if row[1] is None:
            row[1] = arm
        elif row[1] != arm:
            row[2] = 1
        row[3] = ts if row[3] is None else max(row[3], ts)
    if arm != "holdout":
        row[4] = ts if row[4] is None else max(row[4], ts)


def _count_sessions(db: sqlite3.Connection, sessions: dict[str, list[Any]]) -> None:
    """A batch's session rows merged into the table, whatever order decisions arrive in."""
    db.executemany(
        "INSERT INTO sessions (session, first_ts, arm, mixed, arm_ts, open_ts) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session) DO UPDATE SET "
        "first_ts = min(first_ts, excluded.first_ts), "
        "mixed = mixed OR excluded.mixed OR coalesce(arm != excluded.arm, 0), "
        "arm = coalesce(arm, excluded.arm), "
        "arm_ts = max(coalesce(arm_ts, excluded.arm_ts), coalesce(excluded.arm_ts, arm_ts)), "
        "open_ts = max(coalesce(open_ts, excluded.open_ts), coalesce(excluded.open_ts, open_ts))",
        [(session, *row) for session, row in sessions.items()])
