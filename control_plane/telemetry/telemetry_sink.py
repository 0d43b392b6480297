"""Where ingested telemetry goes: the SQLite store (default) or a Kinesis stream (fleets,
through boto3; consumers aggregate downstream)."""

from __future__ import annotations

import hashlib
import json
import random
import time
from typing import Any, Iterable, Protocol

from .telemetry_store import (
    MAX_FIELD_CHARS,
    Ingested,
    Rejected,
    SinkUnavailable,
    TelemetryStore,
    check_records,
)

KINESIS_BATCH = 500  # put_records takes at most 500 records per call
KINESIS_BATCH_BYTES = 4 * 1024 * 1024  # ... and at most 5 MiB: a margin for the keys
KINESIS_TRIES = 6  # put_records calls per chunk while some records are throttled


class TelemetrySink(Protocol):
    def ingest(self, records: Iterable[Any]) -> Ingested: ...


class KinesisSink:
    """Puts each well-formed record on a Kinesis stream, partitioned by session; bad ones
    are rejected one by one, as the SQLite store does. Kinesis does not dedupe: the record
    id travels with it, and consumers drop ids they have seen. Records the stream still
    refuses after retries with backoff (throttling) make the batch SinkUnavailable (a 503):
    the edge keeps it and sends it again, so nothing is lost (and some may come twice)."""

    def __init__(self, stream: str, endpoint_url: str | None = None, client: Any = None,
                 max_field_chars: int = MAX_FIELD_CHARS, backoff_s: float = 0.05) -> None:
        self.stream = stream
        if client is None:
            import boto3

            client = boto3.client("kinesis", endpoint_url=endpoint_url or None)
        self.client = client
        self.max_field_chars = max_field_chars
        self.backoff_s = backoff_s

    def ingest(self, records: Iterable[Any]) -> Ingested:
        records = list(records)
        rows, rejected = check_records(records, self.max_field_chars)
        entries = []
        for index, rec in rows:  # the record as the edge sent it goes on the stream
            try:
                data = json.dumps(records[index], separators=(",", ":"), allow_nan=False)
            except (ValueError, TypeError, RecursionError) as exc:
                rejected.append(Rejected(index, "not_storable", str(exc)[:200]))
                continue
            entries.append({"Data": data.encode(), "PartitionKey": _partition_key(rec["session"])})
        for chunk in _chunks(entries):
            self._put(chunk)
        rejected.sort(key=lambda r: r.index)
        return Ingested(len(entries), 0, tuple(rejected))

    def _put(self, pending: list[dict[str, Any]]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(KINESIS_TRIES):
            if attempt:  # throttled: back off (full jitter) before the refused records
                time.sleep(random.uniform(0, self.backoff_s * 2 ** attempt))
            try:
                answer = self.client.put_records(StreamName=self.stream, Records=pending)
            except (BotoCoreError, ClientError) as exc:
                raise SinkUnavailable(f"kinesis stream {self.stream}: {exc}") from None
            if not answer.get("FailedRecordCount"):
                return
            pending = [rec for rec, res in zip(pending, answer["Records"])
                       if "ErrorCode" in res]
        raise SinkUnavailable(f"kinesis kept refusing {len(pending)} record(s) (throttled); "
                              "send the batch again later")


def _chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """put_records calls: at most KINESIS_BATCH records and KINESIS_BATCH_BYTES each."""
    chunks: list[list[dict[str, Any]]] = []
    chunk: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = len(entry["Data"]) + len(entry["PartitionKey"])
        if chunk and (len(chunk) >= KINESIS_BATCH or size + n > KINESIS_BATCH_BYTES):
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(entry)
        size += n
    if chunk:
        chunks.append(chunk)
    return chunks


def make_sink(config: dict[str, Any], store: TelemetryStore) -> TelemetrySink:
    """The sink CONTROL_TELEMETRY_SINK names, checking string fields against
    CONTROL_TELEMETRY_MAX_FIELD_CHARS."""
    max_chars = int(config.get("TELEMETRY_MAX_FIELD_CHARS") or MAX_FIELD_CHARS)
    store.max_field_chars = max_chars
    sink = str(config.get("TELEMETRY_SINK") or "sqlite")
    if sink.startswith("kinesis://"):
        return KinesisSink(sink[len("kinesis://"):],
                           config.get("KINESIS_ENDPOINT_URL") or config.get("S3_ENDPOINT_URL"),
                           max_field_chars=max_chars)
    if sink != "sqlite":
        raise ValueError(f"CONTROL_TELEMETRY_SINK={sink!r}: expected sqlite or kinesis://STREAM")
    return store


def _partition_key(session: str) -> str:
    """The session as Kinesis's partition key (one session's records on one shard, in
    order); one longer than Kinesis takes (256 characters) by its digest, or AWS refuses the
    whole PutRecords call for it."""
    if len(session) <= 256:
        return session
    return hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()
