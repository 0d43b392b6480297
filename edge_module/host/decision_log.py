"""The edge's decision log: one record per decision and per outcome a client reports,
made safe to leave the edge (hashed session ids, no CRM attributes, no query strings, no
userinfo) and bounded field by field (`RecordLimits`), buffered in memory (bounded) and
spooled to disk in gzip JSON-lines batches (fsync'd, cut by bytes).

The spool is what makes telemetry lossless: a batch file is complete once renamed into
`spool/`, so a `kill -9` loses at most the records not yet flushed (one flush interval),
never a spooled one. The shipper (`telemetry.py`) deletes a file only once the control
plane has answered for it; ingest dedupes by record id, so a retried batch never counts
twice. Whatever is dropped is counted by reason (`dropped_by_reason`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.engine import MAX_TIME_MS  # the same bound as the decisions' timestamps
from ..core.features import SESSION_FEATURES
from ..core.urls import strip_url
from .host_secret import host_secret

log = logging.getLogger("edge.decision_log")

OUTCOME_TYPES = ("impression", "click", "dismiss", "conversion")
SPOOL_SUFFIX = ".jsonl.gz"
BATCH_RECORDS = 2000  # per file, at most (files are also cut by bytes: `max_batch_bytes`)
DEFAULT_BATCH_BYTES = 768 * 1024  # EDGE_TELEMETRY_BATCH_BYTES: under the ingest body limit
INT_MAX = 2**63 - 1  # SQLite's INTEGER: a logged integer beyond it could not be stored
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode


@dataclass(frozen=True)
class RecordLimits:
    """Bounds on every logged field: a record always fits the control plane's store."""

    max_chars: int = 128  # EDGE_TELEMETRY_MAX_FIELD_CHARS: device, country, ids, triggers
    max_url_chars: int = 1024  # EDGE_TELEMETRY_MAX_URL_CHARS: url, referrer (query stripped)
    max_items: int = 64  # EDGE_TELEMETRY_MAX_LIST_ITEMS: fired and suppressed entries
    max_report_triggers: int = 16  # EDGE_TELEMETRY_MAX_REPORT_TRIGGERS: triggers in `report`
    max_report_values: int = 16  # EDGE_TELEMETRY_MAX_REPORT_VALUES: values per trigger


class OutcomeError(ValueError):
    """A malformed outcome report: `field` names what is wrong (an HTTP 400)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def hash_session(salt: str, session_id: str) -> str:
    """The session id as it leaves the edge: sha256 with the deployment's salt."""
    return hashlib.sha256(f"{salt}\x1f{session_id}".encode("utf-8", "replace")).hexdigest()[:32]


# -- the logged record's shape: every field goes through one of these ------------------------

def text(value: Any, cap: int) -> str | None:
    """A string field: strings cut to `cap` characters (lone surrogates replaced, so it
    always encodes), numbers written out, anything else (objects, lists) null."""
    if type(value) is not str:
        if type(value) is float or (type(value) is int and -INT_MAX - 1 <= value <= INT_MAX):
            value = str(value)
        else:  # objects, lists, booleans, integers beyond 64 bits
            return None
    if len(value) > cap:
        value = value[:cap]
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def integer(value: Any, low: int = -INT_MAX - 1, high: int = INT_MAX) -> int | None:
    """An integer field within [low, high] (SQLite's 64 bits by default), else null."""
    return value if type(value) is int and low <= value <= high else None


def number(value: Any) -> int | float | None:
    """A numeric field: a 64-bit integer or a finite float, else null."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    return integer(value)


def url(value: Any, cap: int) -> str | None:
    """A URL field: `strip_url` of it (no query, fragment or userinfo), cut to `cap`."""
    return text(strip_url(value), cap) if type(value) is str else None


def time_ms(value: Any) -> int:
    """A record's time: ms since epoch, clamped into [0, MAX_TIME_MS] (a record's time is
    required to store it)."""
    if type(value) is not int:
        return 0
    return min(max(value, 0), MAX_TIME_MS)


def _suppressed(items: Any, limits: RecordLimits) -> list[dict[str, str | None]]:
    if type(items) is not list:
        return []
    return [{"trigger": text(s.get("trigger"), limits.max_chars),
             "reason": text(s.get("reason"), limits.max_chars)}
            for s in items[:limits.max_items] if type(s) is dict]


def request_features(events: Any) -> dict[str, Any]:
    """The signal values the host can compute cheaply from one batch of events (kept for
    earlier readers: `report` holds what the core's conditions saw): the deepest scroll,
    the earliest page_view (dwell = decision time - page_view), total hover time, event count; all
    finite and within 64 bits."""
    depth = None
    page_view = None
    hover = 0
    count = 0
    if type(events) is list:
        for ev in events:
            if type(ev) is not dict:
                continue
            count += 1
            kind = ev.get("type")
            if kind == "scroll":
                d = number(ev.get("depth"))
                if d is not None and (depth is None or d > depth):
                    depth = d
            elif kind == "page_view":
                ts = integer(ev.get("ts_ms"), 0, MAX_TIME_MS)
                if ts is not None and (page_view is None or ts < page_view):
                    page_view = ts
            elif kind == "hover":
                ms = number(ev.get("duration_ms"))
                if ms is not None and ms > 0:
                    hover = min(hover + ms, MAX_TIME_MS)
    out: dict[str, Any] = {"events": count}
    if depth is not None:
        out["scroll_depth"] = depth
    if page_view is not None:
        out["page_view_ms"] = page_view
    if hover:
        out["hover_ms"] = hover
    return out


REPORT_POLICIES = ("learned", "explore", "holdout")
_SESSION = frozenset(SESSION_FEATURES)  # the session vector's names (contract A)


def _numbers(values: Any, most: int, cap: int, nulls: bool,
             names: frozenset[str] | None = None) -> dict[str, Any]:
    """At most `most` entries of name -> finite number (or null when `nulls`) out of
    `values`, names cut to `cap` (and among `names` if given); anything else dropped."""
    out: dict[str, Any] = {}
    if type(values) is not dict:
        return out
    for name, value in values.items():
        if len(out) >= most:
            break
        if type(name) is not str or type(value) is bool or (names is not None and
                                                            name not in names):
            continue
        kept = number(value)
        if kept is not None or (nulls and value is None):
            out[text(name, cap) or ""] = kept
    return out


def report_record(report: Any, limits: RecordLimits) -> dict[str, Any] | None:
    """The bounded, sanitised copy of the core's `report` (issue #12, contract A): finite
    numbers only, the session vector's own names, at most `max_report_triggers` triggers
    of at most `max_report_values` values each, names cut to `max_chars`; anything else
    is dropped."""
    if type(report) is not dict:
        return None
    cap = limits.max_chars
    triggers: dict[str, Any] = {}
    raw = report.get("triggers")
    for tid, entry in (raw.items() if type(raw) is dict else ()):
        if len(triggers) >= limits.max_report_triggers:
            break
        if type(tid) is not str or type(entry) is not dict:
            continue
        kept: dict[str, Any] = {
            "values": _numbers(entry.get("values"), limits.max_report_values, cap, True)}
        intent = number(entry.get("intent")) if type(entry.get("intent")) is not bool else None
        if intent is not None:
            kept["intent"] = intent
        if entry.get("policy") in REPORT_POLICIES:
            kept["policy"] = entry["policy"]
        if type(entry.get("holds")) is bool:
            kept["holds"] = entry["holds"]
        p_fire = number(entry.get("p_fire")) if type(entry.get("p_fire")) is not bool else None
        if p_fire is not None and 0 <= p_fire <= 1:
            kept["p_fire"] = p_fire
        triggers[text(tid, cap) or ""] = kept
    return {"session": _numbers(report.get("session"), len(_SESSION), cap, False, _SESSION),
            "triggers": triggers}


def decision_record(request: dict[str, Any], response: dict[str, Any], now_ms: int,
                    salt: str, edge_id: str, limits: RecordLimits = RecordLimits()
                    ) -> dict[str, Any]:
    """The log record of one decision: nothing sensitive in it, every field a bounded
    scalar (or a bounded list of them), whatever the visitor sent."""
    ctx = request.get("context")
    ctx = ctx if type(ctx) is dict else {}
    cap = limits.max_chars
    context: dict[str, Any] = {}
    for name in ("device", "country"):
        if name in ctx:
            context[name] = text(ctx[name], cap)
    if "local_hour" in ctx:
        context["local_hour"] = integer(ctx["local_hour"], 0, 23)
    context["url"] = url(ctx.get("url"), limits.max_url_chars)
    if ctx.get("referrer") is not None:
        context["referrer"] = url(ctx.get("referrer"), limits.max_url_chars)
    actions = response.get("actions")
    fired = [text(a.get("trigger"), cap) for a in actions[:limits.max_items]
             if type(a) is dict] if type(actions) is list else []
    session_id = request.get("session_id")
    record: dict[str, Any] = {
        "kind": "decision", "id": text(response.get("decision_id"), cap) or uuid.uuid4().hex,
        "edge_id": text(edge_id, cap), "ts_ms": time_ms(now_ms),
        "session": hash_session(salt, session_id if type(session_id) is str else ""),
        "revision": text(response.get("revision"), cap),
        "fired": fired, "suppressed": _suppressed(response.get("suppressed"), limits),
        "arm": text(response.get("arm"), cap),
        "latency_us": integer(response.get("latency_us")), "context": context,
        "features": request_features(request.get("events")),
    }
    report = report_record(response.get("report"), limits)
    if report is not None:
        record["report"] = report
    return record


def outcome_record(body: Any, now_ms: int, salt: str, edge_id: str,
                   limits: RecordLimits = RecordLimits()) -> dict[str, Any]:
    """Validate an outcome report (`OutcomeError` if malformed) and make its log record."""
    if type(body) is not dict:
        raise OutcomeError("the request body must be a JSON object")
    session_id = body.get("session_id")
    if type(session_id) is not str or not session_id:
        raise OutcomeError("session_id must be a non-empty string", "session_id")
    kind = body.get("type")
    if kind not in OUTCOME_TYPES:
        raise OutcomeError(f"type must be one of {', '.join(OUTCOME_TYPES)}", "type")
    for name in ("decision_id", "trigger"):
        value = body.get(name)
        if value is not None and (type(value) is not str or not value):
            raise OutcomeError(f"{name} must be a non-empty string when given", name)
    ts = body.get("ts_ms", now_ms)
    if type(ts) is float and ts.is_integer():  # JSON's 5536.0 is the integer 5536
        ts = int(ts)
    if type(ts) is not int or not 0 <= ts <= MAX_TIME_MS:
        raise OutcomeError(f"ts_ms must be a non-negative integer (ms since epoch), at most "
                           f"{MAX_TIME_MS}", "ts_ms")
    cap = limits.max_chars  # longer ids are cut as the decision record cuts fired triggers
    return {"kind": "outcome", "id": uuid.uuid4().hex, "edge_id": text(edge_id, cap),
            "ts_ms": ts, "session": hash_session(salt, session_id),
            "decision_id": text(body.get("decision_id"), cap),
            "trigger": text(body.get("trigger"), cap), "type": kind}


def load_salt(configured: str, state_dir: Path) -> str:
    """The deployment's salt: configured (shared by a fleet), else one kept in state_dir."""
    return configured or host_secret(state_dir / "telemetry.salt", 16)


MAX_REASONS = 32  # distinct drop reasons counted; more are counted as "other"


class DecisionLog:
    """Records in memory (at most `max_buffer`), flushed to the spool as batch files of at
    most `max_batch_bytes` (uncompressed: the compressed body is smaller still)."""

    def __init__(self, spool_dir: Path, salt: str, edge_id: str, max_buffer: int = 10_000,
                 max_spool_bytes: int = 256 * 1024 * 1024, *,
                 limits: RecordLimits | None = None,
                 max_batch_bytes: int | None = None) -> None:
        limits = limits or RecordLimits()
        max_batch_bytes = max_batch_bytes or DEFAULT_BATCH_BYTES
        self.spool_dir = spool_dir
        self.salt = salt
        self.edge_id = edge_id
        self.max_buffer = max_buffer
        self.max_spool_bytes = max_spool_bytes
        self.limits = limits
        self.max_batch_bytes = max_batch_bytes
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one writer of batch files at a time
        self._seq = 0
        self.recorded = 0  # records taken by this process (decisions and outcomes)
        self.spooled = 0  # records written to the spool by this process
        # records that will never reach the control plane, by reason (this log's and the
        # shipper's): nothing is lost without being counted here
        self.dropped_by_reason: Counter[str] = Counter()
        spool_dir.mkdir(parents=True, exist_ok=True)
        for partial in spool_dir.glob("*.tmp"):  # a batch cut short by a crash: never renamed
            partial.unlink(missing_ok=True)

    @property
    def dropped(self) -> int:
        """Records dropped, every reason together."""
        with self._lock:
            return sum(self.dropped_by_reason.values())

    def dropped_counts(self) -> dict[str, int]:
        """Records dropped, by reason."""
        with self._lock:
            return dict(self.dropped_by_reason)

    def drop(self, count: int, reason: str) -> None:
        """Count `count` records as lost for `reason` (a short code)."""
        if count <= 0:
            return
        reason = "".join(c if c.isalnum() or c in "_:-" else "_" for c in reason[:48]) or "other"
        with self._lock:
            if reason not in self.dropped_by_reason and len(self.dropped_by_reason) >= MAX_REASONS:
                reason = "other"
            self.dropped_by_reason[reason] += count

    def record(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(rec)
            self.recorded += 1
            full = len(self._buffer) >= self.max_buffer
        if full:  # memory stays bounded: the recording thread flushes
            self.flush()

    def decision(self, request: dict[str, Any], response: dict[str, Any], now_ms: int) -> None:
        self.record(decision_record(request, response, now_ms, self.salt, self.edge_id,
                                    self.limits))

    def outcome(self, body: Any, now_ms: int) -> dict[str, Any]:
        rec = outcome_record(body, now_ms, self.salt, self.edge_id, self.limits)
        self.record(rec)
        return rec

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self) -> Path | None:
        """Write the buffered records as batch files (fsync'd, then renamed into place);
        the last one written. Never raises: what cannot be written now is kept for the
        next flush (within the memory bound) or counted as dropped."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return None
            try:
                return self._spool(batch)
            except Exception:  # noqa: BLE001 - a surprise must not cost the whole batch
                log.exception("telemetry flush failed; %d record(s) kept for the next flush",
                              len(batch))
                self._keep(batch, "flush_failed")
                return None

    def _spool(self, batch: list[dict[str, Any]]) -> Path | None:
        if self.spool_bytes() > self.max_spool_bytes:
            self.drop(len(batch), "spool_full")
            log.error("telemetry spool over %d bytes: %d record(s) dropped",
                      self.max_spool_bytes, len(batch))
            return None
        lines: list[tuple[dict[str, Any], bytes]] = []
        for rec in batch:  # one record that cannot be written costs that record alone
            try:
                lines.append((rec, _dumps(rec).encode()))
            except (TypeError, ValueError, RecursionError):
                self.drop(1, "unserializable")
                log.error("telemetry record %.80r cannot be written; dropped", rec)
        final = None
        done = 0
        try:
            for chunk in self._chunks([line for _, line in lines]):
                final = self._write(chunk)
                done += len(chunk)
            _fsync_dir(self.spool_dir)
        except OSError as exc:
            # the disk refused (full, I/O error): keep what was not written for the
            # next flush, within the memory bound, rather than lose it silently
            self.spooled += done
            log.error("telemetry spool write failed (%s)", exc)
            self._keep([rec for rec, _ in lines[done:]], "spool_write_failed")
            return final
        self.spooled += done
        return final

    def _chunks(self, lines: list[bytes]) -> list[list[bytes]]:
        """Lines in batch files of at most BATCH_RECORDS and `max_batch_bytes` (a line
        longer than that alone in its file)."""
        chunks: list[list[bytes]] = []
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and (len(chunk) >= BATCH_RECORDS
                          or size + len(line) + 1 > self.max_batch_bytes):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            chunks.append(chunk)
        return chunks

    def _keep(self, records: list[dict[str, Any]], reason: str) -> None:
        """Put records back at the head of the buffer, as many as the bound allows; the
        rest are counted as dropped for `reason`."""
        with self._lock:
            room = max(0, self.max_buffer - len(self._buffer))
            self._buffer[:0] = records[:room]
        if len(records) > room:
            self.drop(len(records) - room, reason)
            log.error("telemetry buffer full: %d record(s) dropped (%s)",
                      len(records) - room, reason)

    def _write(self, lines: list[bytes]) -> Path:
        data = gzip.compress(b"".join(line + b"\n" for line in lines), 6)
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}"
        return write_batch_file(self.spool_dir, name, data)

    def spool_files(self) -> list[Path]:
        """Spooled batches, oldest first."""
        return sorted(self.spool_dir.glob("*" + SPOOL_SUFFIX))

    def spool_bytes(self) -> int:
        total = 0
        for path in self.spool_dir.glob("*" + SPOOL_SUFFIX):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total


def write_batch_file(folder: Path, name: str, data: bytes) -> Path:
    """`data` (gzip JSON lines) as `folder/name.jsonl.gz`, complete or not at all."""
    tmp = folder / (name + ".tmp")
    final = folder / (name + SPOOL_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return final


def read_lines(path: Path) -> list[bytes]:
    """The non-blank lines of one spooled batch file (OSError/EOFError if unreadable)."""
    return [line for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]


def read_batch(path: Path) -> list[dict[str, Any]]:
    """The records of one spooled batch file."""
    return [json.loads(line) for line in read_lines(path)]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
