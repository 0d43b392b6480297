"""The edge's decision log: one record per decision and per outcome a client reports,
made safe to leave the edge (hashed session ids, no CRM attributes, no query strings),
buffered in memory (bounded) and spooled to disk in gzip JSON-lines batches (fsync'd).

The spool is what makes telemetry lossless: a batch file is complete once renamed into
`spool/`, so a `kill -9` loses at most the records not yet flushed (one flush interval),
never a spooled one. The shipper (`telemetry.py`) deletes a file only once the control
plane has stored it; ingest dedupes by record id, so a retried batch never counts twice.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..core.engine import MAX_TIME_MS  # the same bound as the decisions' timestamps

log = logging.getLogger("edge.decision_log")

OUTCOME_TYPES = ("impression", "click", "dismiss", "conversion")
SPOOL_SUFFIX = ".jsonl.gz"
BATCH_RECORDS = 2000  # per file: a batch stays well under the control plane's body limit
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class OutcomeError(ValueError):
    """A malformed outcome report: `field` names what is wrong (an HTTP 400)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def hash_session(salt: str, session_id: str) -> str:
    """The session id as it leaves the edge: sha256 with the deployment's salt."""
    return hashlib.sha256(f"{salt}\x1f{session_id}".encode()).hexdigest()[:32]


def strip_query(url: Any) -> str | None:
    """A URL without its query string and fragment (they may carry personal data)."""
    if type(url) is not str:
        return None
    return url.split("#", 1)[0].split("?", 1)[0]


def request_features(events: Any) -> dict[str, Any]:
    """The signal values the host can compute cheaply from one batch of events (the core
    does not return the values its conditions saw): the deepest scroll, the earliest
    page_view (dwell = decision time - page_view), total hover time, event count."""
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
                d = ev.get("depth")
                if type(d) in (int, float) and (depth is None or d > depth):
                    depth = d
            elif kind == "page_view":
                ts = ev.get("ts_ms")
                if type(ts) is int and (page_view is None or ts < page_view):
                    page_view = ts
            elif kind == "hover":
                ms = ev.get("duration_ms")
                if type(ms) in (int, float):
                    hover += ms
    out: dict[str, Any] = {"events": count}
    if depth is not None:
        out["scroll_depth"] = depth
    if page_view is not None:
        out["page_view_ms"] = page_view
    if hover:
        out["hover_ms"] = hover
    return out


def decision_record(request: dict[str, Any], response: dict[str, Any], now_ms: int,
                    salt: str, edge_id: str) -> dict[str, Any]:
    """The log record of one decision, with nothing sensitive in it."""
    ctx = request.get("context")
    ctx = ctx if type(ctx) is dict else {}
    context = {k: ctx[k] for k in ("device", "country", "local_hour") if k in ctx}
    context["url"] = strip_query(ctx.get("url"))
    if ctx.get("referrer") is not None:
        context["referrer"] = strip_query(ctx.get("referrer"))
    return {
        "kind": "decision", "id": response["decision_id"], "edge_id": edge_id,
        "ts_ms": now_ms, "session": hash_session(salt, request["session_id"]),
        "revision": response.get("revision"),
        "fired": [a.get("trigger") for a in response.get("actions", ())],
        "suppressed": list(response.get("suppressed", ())), "arm": response.get("arm"),
        "latency_us": response.get("latency_us"), "context": context,
        "features": request_features(request.get("events")),
    }


def outcome_record(body: Any, now_ms: int, salt: str, edge_id: str) -> dict[str, Any]:
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
    if type(ts) is not int or not 0 <= ts <= MAX_TIME_MS:
        raise OutcomeError(f"ts_ms must be a non-negative integer (ms since epoch), at most "
                           f"{MAX_TIME_MS}", "ts_ms")
    return {"kind": "outcome", "id": uuid.uuid4().hex, "edge_id": edge_id, "ts_ms": ts,
            "session": hash_session(salt, session_id), "decision_id": body.get("decision_id"),
            "trigger": body.get("trigger"), "type": kind}


def load_salt(configured: str, state_dir: Path) -> str:
    """The deployment's salt: configured (shared by a fleet), else one kept in state_dir."""
    if configured:
        return configured
    path = state_dir / "telemetry.salt"
    if not path.exists():
        # Worker processes may start together: each writes its own temporary file and
        # links it into place; the first link wins and every process reads that salt.
        state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".salt-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: last writer wins
                os.replace(tmp, path)
                return path.read_text().strip()
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path.read_text().strip()


class DecisionLog:
    """Records in memory (at most `max_buffer`), flushed to the spool as batch files."""

    def __init__(self, spool_dir: Path, salt: str, edge_id: str, max_buffer: int = 10_000,
                 max_spool_bytes: int = 256 * 1024 * 1024) -> None:
        self.spool_dir = spool_dir
        self.salt = salt
        self.edge_id = edge_id
        self.max_buffer = max_buffer
        self.max_spool_bytes = max_spool_bytes
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one writer of batch files at a time
        self._seq = 0
        self.recorded = 0  # records taken by this process (decisions and outcomes)
        self.spooled = 0  # records written to the spool by this process
        self.dropped = 0  # records refused because the spool was full
        spool_dir.mkdir(parents=True, exist_ok=True)
        for partial in spool_dir.glob("*.tmp"):  # a batch cut short by a crash: never renamed
            partial.unlink(missing_ok=True)

    def record(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(rec)
            self.recorded += 1
            full = len(self._buffer) >= self.max_buffer
        if full:  # memory stays bounded: the recording thread flushes
            self.flush()

    def decision(self, request: dict[str, Any], response: dict[str, Any], now_ms: int) -> None:
        self.record(decision_record(request, response, now_ms, self.salt, self.edge_id))

    def outcome(self, body: Any, now_ms: int) -> dict[str, Any]:
        rec = outcome_record(body, now_ms, self.salt, self.edge_id)
        self.record(rec)
        return rec

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self) -> Path | None:
        """Write the buffered records as one batch file (fsync'd, then renamed into place)."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return None
            if self.spool_bytes() > self.max_spool_bytes:
                self.dropped += len(batch)
                log.error("telemetry spool over %d bytes: %d record(s) dropped",
                          self.max_spool_bytes, len(batch))
                return None
            final = None
            written = 0
            try:
                for start in range(0, len(batch), BATCH_RECORDS):
                    final = self._write(batch[start:start + BATCH_RECORDS])
                    written = start + BATCH_RECORDS
                _fsync_dir(self.spool_dir)
            except OSError as exc:
                # the disk refused (full, I/O error): keep what was not written for the
                # next flush, within the memory bound, rather than lose it silently
                unwritten = batch[written:]
                with self._lock:
                    room = max(0, self.max_buffer - len(self._buffer))
                    self._buffer[:0] = unwritten[:room]
                self.dropped += max(0, len(unwritten) - room)
                log.error("telemetry spool write failed (%s): %d record(s) kept for retry, "
                          "%d dropped", exc, min(len(unwritten), room),
                          max(0, len(unwritten) - room))
                self.spooled += min(written, len(batch))
                return final
            self.spooled += len(batch)
            return final

    def _write(self, batch: list[dict[str, Any]]) -> Path:
        data = gzip.compress(b"".join(_dumps(r).encode() + b"\n" for r in batch), 6)
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}"
        tmp = self.spool_dir / (name + ".tmp")
        final = self.spool_dir / (name + SPOOL_SUFFIX)
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


def read_batch(path: Path) -> list[dict[str, Any]]:
    """The records of one spooled batch file."""
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()
            if line.strip()]


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
