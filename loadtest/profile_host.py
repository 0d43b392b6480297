"""Where a decision's time goes inside the edge host, measured in process.

`python -m loadtest.profile_host` builds the real host (`EdgeHost.build`: component,
instance pool, session store) over a published snapshot of the shipped packs plus the
30-trigger bench pack, then drives realistic 20-event batches through it three ways:

1. stage by stage, each stage timed alone: body decode + JSON parse, session get, packing
   the envelope (marshal), the component call, unpacking, session put, the response's
   id and JSON encoding;
2. the whole WSGI call (`EdgeApp.__call__`) with no server around it, so what the host's
   own code costs is known apart from the HTTP server;
3. optionally (`--cprofile`) the WSGI call under cProfile, the top functions by own time.

HTTP servers are compared over loopback with the whole stack instead:
`EDGE_SERVER=waitress|granian EDGE_THREADS=N ./build.sh loadtest 32 30 --scenario throughput
--generator wrk`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from edge_module.core.api import pack_envelope, unpack
from loadtest.bench import pct
from loadtest.stack import ROOT, write_packs
from loadtest.visitors import throughput_body


def build_host(work: Path, threads: int = 1) -> Any:
    """An in-process EdgeHost serving the shipped packs + the bench pack from `work`."""
    import os
    import subprocess
    import sys

    from edge_module.host.config import EdgeConfig
    from edge_module.host.edge_host import EdgeHost

    env = {**os.environ, "CONTROL_DATA_DIR": str(work / "control"),
           "TRIGGERS_STORE": str(work / "store"), "TRIGGERS_TRUSTED_KEYS": str(work / "trusted")}
    bin_dir = Path(sys.executable).parent
    for args in (["keys", "generate"], ["publish", str(write_packs(work / "packs", "both"))]):
        subprocess.run([str(bin_dir / "trigger-engine"), *args], env=env, check=True,
                       capture_output=True)
    config = EdgeConfig.from_env(
        {}, store=str(work / "store"), trusted_keys=work / "trusted", control_url="",
        state_dir=work / "edge", component=ROOT / "build" / "decision-engine.wasm",
        cache_dir=ROOT / "build" / "cache", threads=threads, sync_interval_s=60.0)
    return EdgeHost.build(config)


def timed(samples: dict[str, list[float]], name: str, fn: Callable[[], Any]) -> Any:
    t = time.perf_counter_ns()
    out = fn()
    samples.setdefault(name, []).append((time.perf_counter_ns() - t) / 1000)
    return out


def stages(app: Any, bodies: list[bytes]) -> dict[str, list[float]]:
    """Each step of `EdgeApp.decide_admitted`, timed alone (same order, same objects)."""
    samples: dict[str, list[float]] = {}
    for raw in bodies:
        t0 = time.perf_counter_ns()
        request = timed(samples, "parse JSON body (orjson)", lambda: orjson.loads(raw))
        sid = request["session_id"]
        state = timed(samples, "session get", lambda: app.sessions.get(sid))
        env = timed(samples, "pack envelope (marshal)",
                    lambda: pack_envelope(int(time.time() * 1000), state, request))
        result = timed(samples, "component call (pool.decide_packed)", lambda: app.pool.decide_packed(env))
        response, new_state = timed(samples, "unpack result", lambda: unpack(result.text))
        timed(samples, "session put", lambda: app.sessions.put(sid, new_state))

        def finish() -> bytes:
            decision_id = response["decision_id"] = os.urandom(16).hex()
            response["outcome_token"] = app.tokens.issue(sid, decision_id, "", 0)
            for action in response.get("actions") or ():
                action["outcome_token"] = app.tokens.issue(sid, decision_id,
                                                           action["trigger"], 0)
            response["latency_us"] = response["component_us"] = 0
            return orjson.dumps(response)

        timed(samples, "decision id, outcome tokens + encode (orjson)", finish)
        samples.setdefault("sum of the stages", []).append((time.perf_counter_ns() - t0) / 1000)
    return samples


def wsgi_calls(app: Any, bodies: list[bytes]) -> tuple[list[float], list[float]]:
    """The whole WSGI call per body: (wall us, the response's own latency_us)."""
    wall: list[float] = []
    server: list[float] = []
    for raw in bodies:
        environ = {"PATH_INFO": "/v1/decide", "REQUEST_METHOD": "POST",
                   "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)}
        t = time.perf_counter_ns()
        out = app(environ, lambda status, headers: None)
        wall.append((time.perf_counter_ns() - t) / 1000)
        server.append(json.loads(b"".join(out))["latency_us"])
    return wall, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--cprofile", action="store_true", help="also profile the WSGI calls")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="profile-host-"))
    host = build_host(work)
    app = host.app
    try:
        def batch(n: int) -> list[bytes]:
            return [throughput_body(f"p-{i % args.sessions}", i) for i in range(n)]

        stages(app, batch(min(1000, args.requests)))  # warm: sessions get their history
        rows = stages(app, batch(args.requests))
        wall, server = wsgi_calls(app, batch(args.requests))
        print(f"{'stage (one thread, no HTTP)':<36}{'p50 us':>9}{'p99 us':>9}{'mean us':>9}")
        for name, samples in list(rows.items()) + [("whole WSGI call (EdgeApp)", wall),
                                                   ("  its latency_us (server-side)", server)]:
            mean = sum(samples) / len(samples)
            print(f"{name:<36}{pct(samples, .5):>9.1f}{pct(samples, .99):>9.1f}{mean:>9.1f}")
        component = pct(rows["component call (pool.decide_packed)"], .5)
        print(f"server-side latency_us p50 / component call p50: "
              f"{pct(server, .5) / component:.2f}x")
        if args.cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            wsgi_calls(app, batch(args.requests))
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
            print(out.getvalue())
    finally:
        host.close()


if __name__ == "__main__":
    main()
