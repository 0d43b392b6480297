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
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_module.channels.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from loadtest.bench import pct
from loadtest.stack import edge_stack, free_port


def _receiver(secret: bytes) -> tuple[ThreadingHTTPServer, dict[str, float], list[str]]:
    arrived: dict[str, float] = {}
    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            at = time.perf_counter()
            ok = verify(secret, self.headers.get(TIMESTAMP_HEADER),
                        self.headers.get(SIGNATURE_HEADER), raw)
            if ok:
                key = self.headers.get("Idempotency-Key", "")
                calls.append(key)
                arrived.setdefault(key, at)
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrived, calls


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
    server, arrived, calls = _receiver(secret.encode())
    url_hook = f"http://127.0.0.1:{server.server_address[1]}/nudges"
    decide_ms: list[float] = []
    delivery_ms: list[float] = []
    try:
        with edge_stack("channels", {"EDGE_CHANNEL_WEBHOOK_URL": url_hook,
                                     "EDGE_CHANNEL_WEBHOOK_SECRET": secret}) as stack:
            for n in range(args.visits):
                started = time.perf_counter()
                answer = _decide(stack.url, f"bench-{n}")
                answered = time.perf_counter()
                assert answer["actions"] == [], "a push reached the page"
                key = f"{answer['decision_id']}:pricing-discount"
                deadline = answered + 10
                while key not in arrived and time.perf_counter() < deadline:
                    time.sleep(0.0005)
                if key not in arrived:
                    raise SystemExit(f"visit {n}: no push within 10 s")
                decide_ms.append((answered - started) * 1000)
                delivery_ms.append((arrived[key] - answered) * 1000)
    finally:
        server.shutdown()
    figures = {}
    for name, values in (("decide (HTTP round trip)", decide_ms),
                         ("push at the receiver after the answer", delivery_ms)):
        figures[name] = {"p50": pct(values, 0.5), "p99": pct(values, 0.99), "max": max(values)}
        print(f"{name:40s} p50 {pct(values, 0.5):7.2f} ms  p99 {pct(values, 0.99):7.2f} ms  "
              f"max {max(values):7.2f} ms  ({len(values)} visits)")
    print(f"signed pushes received: {len(calls)} calls, {len(arrived)} keys, for "
          f"{args.visits} visits; none on the page")
    return figures


if __name__ == "__main__":
    main()
