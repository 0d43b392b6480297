"""Telemetry to Kinesis (fleets): the ingest API puts records on a stream, read back from a
real Kinesis-protocol server on loopback (moto), nothing patched."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from tests.s3_server import running_s3
from tests.servers import EDGE_TOKEN, control_client


@contextmanager
def kinesis_sink(tmp_path) -> Iterator[tuple[Any, str, Any]]:
    """A control plane whose telemetry sink is a new Kinesis stream: (kinesis, stream, client)."""
    with running_s3() as moto:  # moto's server speaks every AWS protocol, Kinesis too
        kinesis = boto3.client("kinesis", endpoint_url=moto.endpoint, region_name="us-east-1")
        stream = f"telemetry-{uuid.uuid4().hex[:8]}"  # the moto server outlives a test
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        yield kinesis, stream, control_client(tmp_path, token=EDGE_TOKEN,
                                              TELEMETRY_SINK=f"kinesis://{stream}",
                                              KINESIS_ENDPOINT_URL=moto.endpoint)


def test_ingested_records_land_on_the_kinesis_stream(tmp_path):
    with kinesis_sink(tmp_path) as (kinesis, stream, client):
        assert client.post("/v1/telemetry",
                           data=_outcomes(["o0", "o1", "o2"])).get_json()["accepted"] == 3
        assert _stream_ids(kinesis, stream) == ["o0", "o1", "o2"]


class Throttling:
    """The real Kinesis client (moto on loopback) behind a stand-in for what moto cannot
    do: throttle. The first `refusals` put_records calls refuse their last record with
    ProvisionedThroughputExceededException, as Kinesis does per record under load."""

    def __init__(self, client, refusals: int) -> None:
        self.client = client
        self.refusals = refusals
        self.calls = 0

    def put_records(self, StreamName: str, Records: list) -> dict:  # noqa: N803 - boto3's
        self.calls += 1
        if self.refusals <= 0:
            return self.client.put_records(StreamName=StreamName, Records=Records)
        self.refusals -= 1
        head = Records[:-1]
        done = self.client.put_records(StreamName=StreamName, Records=head)["Records"] \
            if head else []
        return {"FailedRecordCount": 1, "Records": [*done, {
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": "Rate exceeded for shard"}]}


def _stream_ids(kinesis, stream: str) -> list[str]:
    shard = kinesis.describe_stream(StreamName=stream)[
        "StreamDescription"]["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [json.loads(r["Data"])["id"] for r in kinesis.get_records(ShardIterator=it)["Records"]]


def _outcomes(ids) -> bytes:
    return b"".join(json.dumps({"kind": "outcome", "id": i, "session": "s", "ts_ms": 1,
                                "type": "click"}).encode() + b"\n" for i in ids)


def test_throttled_records_are_retried_and_a_stream_that_keeps_refusing_is_a_503(tmp_path):
    with kinesis_sink(tmp_path) as (kinesis, stream, client):
        sink = client.application.extensions["telemetry_sink"]
        sink.backoff_s = 0.001
        sink.client = Throttling(sink.client, refusals=2)  # a short burst: retried, then in
        answer = client.post("/v1/telemetry", data=_outcomes(["o0", "o1", "o2"]))
        assert answer.status_code == 200 and answer.get_json()["accepted"] == 3
        assert sorted(_stream_ids(kinesis, stream)) == ["o0", "o1", "o2"]
        # throttled for longer than the retries last: the edge is told to send it again
        # (a 503 keeps its batch in the spool), not that the batch is bad (lost for good)
        sink.client = Throttling(sink.client.client, refusals=1000)
        answer = client.post("/v1/telemetry", data=_outcomes(["o3", "o4"]))
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert answer.get_json()["error"]["code"] == "sink_unavailable"


def test_bad_records_are_rejected_one_by_one_and_the_rest_reach_the_stream(tmp_path):
    with kinesis_sink(tmp_path) as (kinesis, stream, client):
        bad = [{"kind": "decision", "id": "d", "session": "s", "ts_ms": 1,
                "context": {"device": {"x": 1}}},
               {"kind": "decision", "id": "h", "session": "s", "ts_ms": 1,
                "context": {"local_hour": 2**63}}]
        body = _outcomes(["o0"]) + b"{nope\n" + b"".join(
            json.dumps(r).encode() + b"\n" for r in bad) + _outcomes(["o1"])
        answer = client.post("/v1/telemetry", data=body)
        assert answer.status_code == 200
        doc = answer.get_json()
        assert doc["accepted"] == 2 and [r["index"] for r in doc["rejected"]] == [1, 2, 3]
        assert doc["rejected_by_code"] == {"invalid_json": 1, "invalid_record": 2}
        assert sorted(_stream_ids(kinesis, stream)) == ["o0", "o1"]


def test_a_session_longer_than_kinesis_takes_is_keyed_by_its_digest(tmp_path):
    from control_plane.telemetry.telemetry_sink import _partition_key

    long_a, long_b = "a" * 4096, "a" * 4095 + "b"
    assert _partition_key("s-1") == "s-1"  # as before: a session's records on one shard
    assert len(_partition_key(long_a)) <= 256 and _partition_key(long_a) == _partition_key(long_a)
    assert _partition_key(long_a) != _partition_key(long_b)
    with kinesis_sink(tmp_path) as (kinesis, stream, client):
        record = {"kind": "outcome", "id": "o-long", "session": long_a, "ts_ms": 1,
                  "type": "click"}
        assert client.post("/v1/telemetry", data=json.dumps(record).encode()
                           ).get_json()["accepted"] == 1
        assert _stream_ids(kinesis, stream) == ["o-long"]
