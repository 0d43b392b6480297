"""Per-request latency of the edge function (build/edge-function.wasm) under `jco serve`.

`python -m loadtest.bench_edge_function [--requests 2000] [--url http://127.0.0.1:8090]`
against a running `./build.sh edge-function --serve`. One client on one keep-alive
connection, requests one after another: each visit is the README's pricing scenario (page
view, scroll to 0.8, asked at +3.2 s; the nudge) then asked again with the token (the cap:
nothing), so half the decisions open and seal a non-empty token. Reports the round trip the
client saw and the function's own `latency_us`, p50/p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from urllib.parse import urlsplit

from edge_module.replay_client import T0
from loadtest.bench import pct as percentile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8090")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    where = urlsplit(args.url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    events = [{"type": "page_view", "ts_ms": T0, "url": "/pricing"},
              {"type": "scroll", "ts_ms": T0 + 1000, "depth": 0.8, "y": 1400}]

    def post(body: dict) -> dict:
        conn.request("POST", "/v1/decide", json.dumps(body),
                     {"Content-Type": "application/json"})
        answer = conn.getresponse()
        doc = json.loads(answer.read())
        if answer.status != 200:
            raise SystemExit(f"{answer.status}: {doc}")
        return doc

    round_trips: list[float] = []
    inside: list[float] = []
    token = ""
    nudged = [0, 0]  # first asks, second asks that got an action
    for n in range(args.warmup + args.requests):
        session = f"bench-{n // 2}"
        if n % 2 == 0:
            body = {"session_id": session, "now_ms": T0 + 3200, "events": events,
                    "context": {"url": "/pricing"}}
        else:
            body = {"session_id": session, "now_ms": T0 + 4000, "events": [],
                    "context": {"url": "/pricing"}, "state_token": token}
        started = time.perf_counter()
        doc = post(body)
        elapsed = (time.perf_counter() - started) * 1000
        token = doc["state_token"]
        nudged[n % 2] += bool(doc["actions"])
        if n >= args.warmup:
            round_trips.append(elapsed)
            inside.append(doc["latency_us"] / 1000)
    print(f"{args.requests} requests to {args.url}/v1/decide (after {args.warmup} warm-up); "
          f"nudged: {nudged[0]} first asks, {nudged[1]} second asks (the cap: expected 0)")
    for name, values in (("round trip (client)", round_trips),
                         ("latency_us (inside the function)", inside)):
        print(f"  {name:34s} p50 {percentile(values, 0.5):6.2f} ms  "
              f"p99 {percentile(values, 0.99):6.2f} ms  mean {statistics.fmean(values):6.2f} ms")


if __name__ == "__main__":
    main()
