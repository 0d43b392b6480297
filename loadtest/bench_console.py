"""How fast the console's pages are with a month of telemetry: `python -m loadtest.bench_console`.

Fills a control plane's telemetry store with DAYS of synthetic traffic for TRIGGERS
triggers (sessions spread over every hour, a few decisions each; some fire a trigger, and
impressions, clicks, dismissals and conversions follow at plausible rates; 10 % of the
sessions held out), starts the control plane (waitress, as `trigger-engine serve` does),
signs in and times each page over HTTP (median and max of --repeat loads). With
--screenshots DIR it then saves the pages as PNGs (loadtest/console_screenshots.py).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

HOUR_MS = 3_600_000
PAGES = ("/triggers?period=30d", "/triggers?period=30d&trigger=t-07", "/experiments?period=30d",
         "/learning?period=30d", "/audit?period=30d", "/packs", "/fleet")


def synthetic_telemetry(days: int = 30, triggers: int = 50, sessions_per_hour: int = 200,
                        seed: int = 7, end_ms: int | None = None) -> list[dict[str, Any]]:
    """Decision and outcome records, as edges ship them, for `days` ending at `end_ms`."""
    rng = random.Random(seed)
    end = end_ms if end_ms is not None else int(time.time() * 1000)
    start = end - days * 24 * HOUR_MS
    names = [f"t-{i:02d}" for i in range(triggers)]
    weights = [1 / (i + 1) for i in range(triggers)]  # a few triggers fire most
    records: list[dict[str, Any]] = []
    n = 0
    for hour in range(days * 24):
        for _ in range(sessions_per_hour):
            n += 1
            session = f"s{n}"
            t = start + hour * HOUR_MS + rng.randrange(HOUR_MS - 120_000)
            device = rng.choice(("desktop", "desktop", "mobile", "tablet"))
            arm = rng.choices(("adaptive", "static", "holdout"), (45, 45, 10))[0]
            fired = rng.choices(names, weights)[0] if rng.random() < 0.3 else None
            for k in range(3):
                rec = {"kind": "decision", "id": f"{session}-{k}", "session": session,
                       "ts_ms": t + k * 4000, "revision": str(1 + hour // 240), "arm": arm,
                       "latency_us": rng.randrange(150, 900), "fired": [], "suppressed": [],
                       "context": {"device": device, "url": "/pricing"}}
                if k == 1 and fired:
                    if arm == "holdout":
                        rec["suppressed"] = [{"trigger": fired, "reason": "holdout"}]
                    else:
                        rec["fired"] = [fired]
                records.append(rec)
            shown = fired and arm != "holdout"
            if shown:
                records.append({"kind": "outcome", "id": f"{session}-i", "session": session,
                                "ts_ms": t + 4500, "decision_id": f"{session}-1",
                                "trigger": fired, "type": "impression"})
                if rng.random() < 0.2:
                    records.append({"kind": "outcome", "id": f"{session}-c", "session": session,
                                    "ts_ms": t + 9000, "decision_id": f"{session}-1",
                                    "trigger": fired, "type": "click"})
                elif rng.random() < 0.15:
                    records.append({"kind": "outcome", "id": f"{session}-x", "session": session,
                                    "ts_ms": t + 7000, "decision_id": f"{session}-1",
                                    "trigger": fired, "type": "dismiss"})
            if rng.random() < (0.07 if shown else 0.05):
                records.append({"kind": "outcome", "id": f"{session}-v", "session": session,
                                "ts_ms": t + 60_000, "decision_id": f"{session}-2",
                                "type": "conversion"})
    return records


def _serve(config: dict[str, Any]) -> tuple[str, Any]:
    from control_plane import create_app
    from control_plane.http_server import make_server

    server = make_server(create_app(config), "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--triggers", type=int, default=50)
    parser.add_argument("--sessions-per-hour", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--screenshots", metavar="DIR",
                        help="then publish an experiment pack and save PNGs of the console "
                             "pages into DIR (loadtest/console_screenshots.py)")
    args = parser.parse_args(argv)
    from control_plane.auth import ensure_token_file
    from control_plane.config import load
    from control_plane.distribution.keys import KeyRing
    from control_plane.telemetry.telemetry_store import TelemetryStore

    with tempfile.TemporaryDirectory(prefix="bench-console-") as work:
        config = {**load(), "DATA_DIR": f"{work}/control", "STORE_DIR": f"{work}/store",
                  "KEYS_DIR": f"{work}/keys", "TRUSTED_KEYS": f"{work}/trusted",
                  "RECALIBRATE_INTERVAL_S": 0}
        token = ensure_token_file(config["DATA_DIR"], "publisher")
        if args.screenshots:  # they publish a pack, which is signed
            KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"]).ensure()
        t0 = time.perf_counter()
        records = synthetic_telemetry(args.days, args.triggers, args.sessions_per_hour)
        store = TelemetryStore(Path(config["DATA_DIR"]) / "telemetry.sqlite3")
        for i in range(0, len(records), 50_000):
            store.ingest(records[i:i + 50_000])
        decisions = sum(r["kind"] == "decision" for r in records)
        print(f"{len(records):,} records ({decisions:,} decisions) for {args.triggers} "
              f"triggers over {args.days} days, stored in {time.perf_counter() - t0:.0f} s")
        base, server = _serve(config)
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        form = opener.open(base + "/sign-in").read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        opener.open(base + "/sign-in", urllib.parse.urlencode(
            {"csrf": csrf, "token": token, "name": "bench", "next": "/triggers"}).encode())
        figures = {}
        for page in PAGES:
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                try:
                    with opener.open(base + page) as resp:
                        resp.read()
                        status = resp.status
                except urllib.error.HTTPError as err:
                    status = err.code
                times.append((time.perf_counter() - t) * 1000)
            figures[page] = {"status": status, "p50_ms": statistics.median(times),
                             "max_ms": max(times)}
            print(f"{page:42} {status}  p50 {figures[page]['p50_ms']:7.0f} ms  "
                  f"max {figures[page]['max_ms']:7.0f} ms")
        if args.screenshots:
            from .console_screenshots import capture, publish

            publish(base, token, args.triggers)
            for path in capture(base, token, args.screenshots):
                print(f"{path}  {path.stat().st_size / 1024:.0f} KiB")
        server.close()
    return figures


if __name__ == "__main__":
    main()
