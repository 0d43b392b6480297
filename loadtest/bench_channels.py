"""Push deliveries, timed end to end: `python -m loadtest.bench_channels [--visits N]`.

Starts the stack (`loadtest.stack`, packs `channels`: the README's pricing nudge sent as a
push) with a signed webhook to a receiver on loopback, plays the README's pricing visit N
times, and reports how long each decision took over HTTP and how long after its answer the
receiver had the push (signature checked), with p50, p99 and max.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
import urllib.request
from typing import Any

from loadtest.bench import pct
from loadtest.stack import edge_stack, free_port
from loadtest.webhook_receiver import Receiver


def _decide(url: str, session: str) -> dict[str, Any]:
    t0 = int(time.time() * 1000) - 3200
    body = {"session_id": session, "now_ms": t0 + 3200,
            "context": {"url": "/pricing", "device": "desktop"},
            "events": [{"type": "page_view", "ts_ms": t0, "url": "/pricing"},
                       {"type": "scroll", "ts_ms": t0 + 1000, "depth": 0.8, "y": 1400}]}
    req = urllib.request.Request(url + "/v1/decide", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=200)
    args = parser.parse_args(argv)
    secret = secrets.token_hex(32)
    receiver = Receiver(free_port(), secret).start()
    decide_ms: list[float] = []
    delivery_ms: list[float] = []
    try:
        with edge_stack("channels", {"EDGE_CHANNEL_WEBHOOK_URL": receiver.url,
                                     "EDGE_CHANNEL_WEBHOOK_SECRET": secret}) as stack:
            for n in range(args.visits):
                started = time.perf_counter()
                answer = _decide(stack.url, f"bench-{n}")
                answered = time.perf_counter()
                assert answer["actions"] == [], "a push reached the page"
                deadline = answered + 10
                while (call := receiver.first(answer["decision_id"])) is None and \
                        time.perf_counter() < deadline:
                    time.sleep(0.0005)
                if call is None:
                    raise SystemExit(f"visit {n}: no push within 10 s")
                decide_ms.append((answered - started) * 1000)
                delivery_ms.append((call.at - answered) * 1000)
    finally:
        receiver.stop()
    figures = {}
    for name, values in (("decide (HTTP round trip)", decide_ms),
                         ("push at the receiver after the answer", delivery_ms)):
        figures[name] = {"p50": pct(values, 0.5), "p99": pct(values, 0.99), "max": max(values)}
        print(f"{name:40s} p50 {pct(values, 0.5):7.2f} ms  p99 {pct(values, 0.99):7.2f} ms  "
              f"max {max(values):7.2f} ms  ({len(values)} visits)")
    keys = receiver.keys()
    print(f"signed pushes received: {len(keys)} calls, {len(set(keys))} keys, for "
          f"{args.visits} visits; none on the page")
    return figures


if __name__ == "__main__":
    main()
