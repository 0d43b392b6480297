"""The decision log's records on their way out: buffered in memory (bounded) and spooled to
disk in gzip JSON-lines batch files (fsync'd, cut by bytes), for the shipper
(`telemetry.py`) to send.

The spool is what makes telemetry lossless: a batch file is complete once renamed into
`spool/`, so a `kill -9` loses at most the records not yet flushed (one flush interval),
never a spooled one. The shipper deletes a file only once the control plane has answered
for it; ingest dedupes by record id, so a retried batch never counts twice. Whatever is
dropped is counted by reason (`dropped_by_reason`).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from .decision_log import RecordLimits, decision_record

log = logging.getLogger("edge.decision_log")

SPOOL_SUFFIX = ".jsonl.gz"
BATCH_RECORDS = 2000  # per file, at most (files are also cut by bytes: `max_batch_bytes`)
DEFAULT_BATCH_BYTES = 768 * 1024  # EDGE_TELEMETRY_BATCH_BYTES: under the ingest body limit
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode
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
        self._flushing = 0  # records taken from the buffer and not yet in a batch file
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

    def decision(self, request: dict[str, Any], response: dict[str, Any], now_ms: int,
                 stored_state: bytes | None = None) -> None:
        """Record one decision; `stored_state` is the session state it started from (the
        context a request without one was decided with is kept there)."""
        self.record(decision_record(request, response, now_ms, self.salt, self.edge_id,
                                    self.limits, stored_state))

    def pending(self) -> int:
        """Records not yet in a batch file, those a flush is writing included: /healthz
        shows 0 only once every record taken is in the spool or shipped."""
        with self._lock:
            return len(self._buffer) + self._flushing

    def flush(self) -> Path | None:
        """Write the buffered records as batch files (fsync'd, then renamed into place);
        the last one written. Never raises: what cannot be written now is kept for the
        next flush (within the memory bound) or counted as dropped."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                self._flushing = len(batch)
            if not batch:
                return None
            try:
                return self._spool(batch)
            except Exception:  # a surprise must not cost the whole batch
                log.exception("telemetry flush failed; %d record(s) kept for the next flush",
                              len(batch))
                self._keep(batch, "flush_failed")
                return None
            finally:
                with self._lock:
                    self._flushing = 0

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
        except Exception as exc:
            # the disk refused (full, I/O error) or a surprise: keep what was not written
            # for the next flush, within the memory bound, rather than lose it silently;
            # the files already written stay, so none of their records is spooled twice
            self.spooled += done
            log.error("telemetry spool write failed (%s: %s); %d record(s) kept",
                      type(exc).__name__, exc, len(lines) - done,
                      exc_info=not isinstance(exc, OSError))
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
    """The non-blank lines of one spooled batch file (OSError/EOFError if unreadable,
    damaged compressed data included: zlib raises its own error)."""
    try:
        data = gzip.decompress(path.read_bytes())
    except zlib.error as exc:
        raise OSError(f"{path.name}: damaged gzip data ({exc})") from None
    return [line for line in data.splitlines() if line.strip()]


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
