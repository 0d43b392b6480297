"""A synthetic recording for `trigger-engine simulate`: JSON Lines of decide requests.

Visitors browse a small shop (pricing, products, blog, cart, checkout), scroll, move the
mouse, hover the call to action, add to cart and sometimes abandon it. Their client sends
a page_view at once and batches the other events, one request a second, as the edge's
JavaScript client does. Sessions start a fraction of a second apart, so their lines
interleave; each session's lines are in time order. Seeded: the same arguments give the
same file.

    python -m loadtest.synthetic_sessions --sessions 1000 -o sessions.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

from edge_module.replay_client import T0

FLUSH_MS = 1000  # the client's batching interval
PAGES = (("/pricing", 30), ("/products/{n}", 25), ("/blog/{n}", 15), ("/", 10),
         ("/cart", 12), ("/checkout", 8))
DEVICES = ("desktop", "mobile", "tablet")


def _page(rng: random.Random) -> str:
    url = rng.choices([p for p, _ in PAGES], weights=[w for _, w in PAGES])[0]
    return url.format(n=rng.randint(1, 40))


def _page_events(rng: random.Random, url: str, start: int) -> tuple[list[dict[str, Any]], int]:
    """One page view: its events, and when the visitor leaves."""
    stay = rng.randint(1500, 25_000)
    deepest = rng.uniform(0.1, 1.0)
    events: list[dict[str, Any]] = [{"type": "page_view", "ts_ms": start, "url": url}]
    t, depth = start, 0.0
    while True:
        t += rng.randint(250, 900)
        if t >= start + stay:
            break
        roll = rng.random()
        if roll < 0.55:
            depth = min(deepest, depth + rng.uniform(0.02, 0.15))
            events.append({"type": "scroll", "ts_ms": t, "depth": round(depth, 3),
                           "y": round(depth * 3200)})
        elif roll < 0.85:
            events.append({"type": "mousemove", "ts_ms": t, "x": rng.randint(0, 1400),
                           "y": rng.randint(0, 900)})
        elif roll < 0.93:
            events.append({"type": "hover", "ts_ms": t, "target": "#cta",
                           "duration_ms": rng.randint(100, 1500)})
        elif roll < 0.97:
            events.append({"type": "click", "ts_ms": t, "target": rng.choice(["#cta", "#buy"])})
        elif url.startswith("/products/"):
            events.append({"type": "custom", "ts_ms": t, "name": "add_to_cart"})
    end = start + stay
    if url == "/cart" and rng.random() < 0.35:
        events.append({"type": "custom", "ts_ms": end - 1, "name": "cart_abandon"})
    return events, end


def session_requests(rng: random.Random, sid: str, start: int) -> list[tuple[int, str]]:
    """One visitor's requests as (now_ms, JSON line), in time order."""
    device = rng.choice(DEVICES)
    lines: list[tuple[int, str]] = []
    t = start
    for _ in range(rng.choices([1, 2, 3, 4, 5], weights=[25, 30, 25, 12, 8])[0]):
        url = _page(rng)
        events, end = _page_events(rng, url, t)
        context = {"url": url, "device": device}
        # The page_view goes at once; the rest in batches sent FLUSH_MS after their first event.
        batches: list[tuple[int, list[dict[str, Any]]]] = [(t, [events[0]])]
        pending: list[dict[str, Any]] = []
        send_at = t
        for ev in events[1:]:
            if pending and ev["ts_ms"] >= send_at:
                batches.append((send_at, pending))
                pending = []
            if not pending:
                send_at = ev["ts_ms"] + FLUSH_MS
            pending.append(ev)
        if pending:
            batches.append((min(send_at, end), pending))
        for now, batch in batches:
            body = {"session_id": sid, "now_ms": now, "context": context, "events": batch}
            lines.append((now, json.dumps(body, separators=(",", ":"))))
        t = end + rng.randint(200, 3000)
    return lines


def generate(sessions: int, seed: int = 1) -> list[str]:
    """The recording's lines, ordered by time across sessions."""
    rng = random.Random(seed)
    rows: list[tuple[int, int, str]] = []
    start = T0
    for i in range(sessions):
        start += rng.randint(0, 400)
        for now, line in session_requests(rng, f"syn-{seed}-{i}", start):
            rows.append((now, i, line))
    rows.sort(key=lambda r: (r[0], r[1]))  # stable per session: its lines keep their order
    return [line for _, _, line in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-o", "--out", help="write here instead of stdout")
    args = parser.parse_args()
    text = "".join(line + "\n" for line in generate(args.sessions, args.seed))
    if args.out:
        with open(args.out, "w") as out:
            out.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
