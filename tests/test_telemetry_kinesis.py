"""Telemetry to Kinesis (fleets): the ingest API puts records on a stream, read back from a
real Kinesis-protocol server on loopback (moto), nothing patched."""

from __future__ import annotations

import json

import boto3

from tests.s3_server import running_s3
from tests.servers import EDGE_TOKEN, control_client


def test_ingested_records_land_on_the_kinesis_stream(tmp_path):
    with running_s3() as moto:  # moto's server speaks every AWS protocol, Kinesis too
        kinesis = boto3.client("kinesis", endpoint_url=moto.endpoint, region_name="us-east-1")
        kinesis.create_stream(StreamName="telemetry", ShardCount=1)
        client = control_client(tmp_path, token=EDGE_TOKEN,
                                TELEMETRY_SINK="kinesis://telemetry",
                                KINESIS_ENDPOINT_URL=moto.endpoint)
        lines = b"".join(json.dumps({"kind": "outcome", "id": f"o{n}", "session": "s",
                                     "ts_ms": 1, "type": "click"}).encode() + b"\n"
                         for n in range(3))
        assert client.post("/v1/telemetry", data=lines).get_json()["stored"] == 3
        shard = kinesis.describe_stream(StreamName="telemetry")[
            "StreamDescription"]["Shards"][0]["ShardId"]
        it = kinesis.get_shard_iterator(StreamName="telemetry", ShardId=shard,
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=it)["Records"]
        got = [json.loads(r["Data"])["id"] for r in records]
        assert got == ["o0", "o1", "o2"]
