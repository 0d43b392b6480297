"""Where ingested telemetry goes: the SQLite store (default) or a Kinesis stream (fleets,
through boto3; consumers aggregate downstream)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Protocol

from .telemetry_store import Ingested, TelemetryError, TelemetryStore, _check

KINESIS_BATCH = 500  # put_records takes at most 500 records per call


class TelemetrySink(Protocol):
    def ingest(self, records: Iterable[dict[str, Any]]) -> Ingested: ...


class KinesisSink:
    """Puts each record on a Kinesis stream, partitioned by session. Kinesis does not dedupe:
    the record id travels with it, and consumers drop ids they have seen."""

    def __init__(self, stream: str, endpoint_url: str | None = None) -> None:
        import boto3

        self.stream = stream
        self.client = boto3.client("kinesis", endpoint_url=endpoint_url or None)

    def ingest(self, records: Iterable[dict[str, Any]]) -> Ingested:
        rows = [_check(r, n) for n, r in enumerate(records, 1)]
        for start in range(0, len(rows), KINESIS_BATCH):
            pending = [{"Data": json.dumps(r, separators=(",", ":")).encode(),
                        "PartitionKey": r["session"]} for r in rows[start:start + KINESIS_BATCH]]
            for _ in range(5):  # partial failures (throttling) are retried, the rest kept
                answer = self.client.put_records(StreamName=self.stream, Records=pending)
                if not answer.get("FailedRecordCount"):
                    break
                pending = [rec for rec, res in zip(pending, answer["Records"])
                           if "ErrorCode" in res]
            else:
                raise TelemetryError(f"kinesis kept refusing {len(pending)} record(s)")
        return Ingested(len(rows), 0)


def make_sink(config: dict[str, Any], store: TelemetryStore) -> TelemetrySink:
    """The sink CONTROL_TELEMETRY_SINK names."""
    sink = str(config.get("TELEMETRY_SINK") or "sqlite")
    if sink.startswith("kinesis://"):
        return KinesisSink(sink[len("kinesis://"):],
                           config.get("KINESIS_ENDPOINT_URL") or config.get("S3_ENDPOINT_URL"))
    if sink != "sqlite":
        raise ValueError(f"CONTROL_TELEMETRY_SINK={sink!r}: expected sqlite or kinesis://STREAM")
    return store
