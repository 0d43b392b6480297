"""What visitors send: event batches as a browser SDK would, for the load tests.

A page's timeline is generated up front (`page_timeline`): the page view, scroll events
sampled as a throttled listener fires them (every 100-250 ms while the visitor scrolls),
mouse moves sampled every 100-200 ms on pointer devices only, hovers over calls to action,
form fields (focus, input per keystroke burst, blur, then submit) and the site's custom
events (add_to_cart, cart_abandon, purchase). The SDK flushes what happened since its last
flush every second, at most `MAX_BATCH` events at a time, and calls back at `next_check_ms`
when the edge announces one. Timestamps are offsets from the page view; the caller adds the
real clock.

`throughput_body` is the fixed-shape batch of the max-throughput scenario: 20 realistic
events (scrolls, mouse moves, a hover, a click, a custom event) on a session with history.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from edge_module.replay_client import T0

MAX_BATCH = 20  # the SDK flushes at most this many events per request
FLUSH_MS = 1000  # ... and at least this often while something happened

# Device mix of a typical retail site (desktop share higher in B2B).
DEVICES = (("mobile", 0.55), ("desktop", 0.38), ("tablet", 0.07))
# Visits per local hour: a quiet night, a morning rise, lunch and evening peaks.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 9, 10, 9, 8, 8, 8, 9, 10, 11, 11, 9, 6, 4)
COUNTRIES = (("DE", 0.3), ("US", 0.25), ("FR", 0.15), ("GB", 0.15), ("NL", 0.1), ("SE", 0.05))
REFERRERS = ("https://www.google.com/", "https://duckduckgo.com/", "https://news.example/",
             "", "", "https://ads.example/click")
PRODUCTS = ("trail-shoe", "rain-jacket", "daypack-22l", "merino-tee", "headlamp")


def weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in table], [w for _, w in table])[0]


def visitor_context(rng: random.Random) -> dict[str, Any]:
    """A visitor's context: device, local hour, country, referrer, CRM attributes."""
    return {
        "device": weighted(rng, DEVICES),
        "local_hour": rng.choices(range(24), HOUR_WEIGHTS)[0],
        "country": weighted(rng, COUNTRIES),
        "referrer": rng.choice(REFERRERS),
        "attributes": {"returning": rng.random() < 0.3, "segment": rng.choice("abc")},
    }


@dataclass
class Page:
    """One page of a journey: its URL and the events it produces, offsets in ms."""

    url: str
    stay_ms: int
    events: list[dict[str, Any]] = field(default_factory=list)


def _reading(rng: random.Random, events: list[dict[str, Any]], pointer: bool, start: int,
             stay_ms: int, max_depth: float, page_height: int = 3000) -> None:
    """Scrolls down to `max_depth` in bursts, mouse moves between them, hovers over CTAs."""
    t = start + rng.randint(300, 900)
    depth = 0.0
    while t < start + stay_ms - 200 and depth < max_depth:
        # one scroll burst: the throttled listener fires every 100-250 ms
        for _ in range(rng.randint(2, 6)):
            depth = min(max_depth, depth + rng.uniform(0.03, 0.09))
            events.append({"type": "scroll", "ts_ms": t, "depth": round(depth, 3),
                           "y": int(depth * page_height)})
            t += rng.randint(100, 250)
        pause_end = t + rng.randint(400, 1500)
        if pointer:
            x, y = rng.randint(100, 1200), rng.randint(100, 700)
            while t < pause_end:  # sampled mouse moves while reading
                x += rng.randint(-60, 60)
                y += rng.randint(-40, 40)
                events.append({"type": "mousemove", "ts_ms": t, "x": x, "y": y})
                t += rng.randint(100, 200)
            if rng.random() < 0.35:
                events.append({"type": "hover", "ts_ms": t, "target": rng.choice(
                    ("#cta", "#plan-pro", "#add-to-cart", "#cta-1")),
                    "duration_ms": rng.randint(200, 1600)})
        t = pause_end


def _form(rng: random.Random, events: list[dict[str, Any]], start: int,
          fields: tuple[str, ...]) -> int:
    """Fills the form fields (focus, bursts of input, blur) and submits; returns the end."""
    t = start
    for name in fields:
        events.append({"type": "focus", "ts_ms": t, "target": name})
        for _ in range(rng.randint(1, 4)):  # input events are debounced per typing burst
            t += rng.randint(300, 900)
            events.append({"type": "input", "ts_ms": t, "target": name})
        t += rng.randint(100, 400)
        events.append({"type": "blur", "ts_ms": t, "target": name})
        t += rng.randint(200, 700)
    events.append({"type": "submit", "ts_ms": t, "target": "#checkout-form"})
    return t


def journey(rng: random.Random, device: str) -> list[Page]:
    """landing -> product(s) -> pricing -> cart -> checkout (purchase) or abandonment."""
    pointer = device == "desktop"
    pages: list[Page] = []

    def page(url: str, stay_ms: int, depth: float) -> Page:
        p = Page(url, stay_ms, [{"type": "page_view", "ts_ms": 0, "url": url}])
        _reading(rng, p.events, pointer, 0, stay_ms, depth)
        pages.append(p)
        return p

    page("/", rng.randint(2000, 6000), rng.uniform(0.2, 0.7))
    for _ in range(rng.choice((1, 1, 2))):
        product = page(f"/products/{rng.choice(PRODUCTS)}", rng.randint(3000, 9000),
                       rng.uniform(0.3, 1.0))
        if rng.random() < 0.6:
            at = product.stay_ms - rng.randint(300, 1000)
            product.events.append({"type": "click", "ts_ms": at, "target": "#add-to-cart"})
            product.events.append({"type": "custom", "ts_ms": at + 5, "name": "add_to_cart"})
    # On pricing some read to the end (the discount nudge fires after 3 s past 78 %).
    page("/pricing", rng.randint(2500, 9000), rng.choice((0.5, 0.85, 1.0)))
    cart = page("/cart", rng.randint(2000, 6000), rng.uniform(0.2, 0.6))
    if rng.random() < 0.45:  # abandonment: the site reports it, the reminder is due 3 s later
        cart.events.append({"type": "custom", "ts_ms": cart.stay_ms - 100,
                            "name": "cart_abandon"})
        page("/blog/shipping", rng.randint(4000, 8000), rng.uniform(0.3, 0.9))
        return _in_order(pages)
    checkout = Page("/checkout", 0, [{"type": "page_view", "ts_ms": 0, "url": "/checkout"}])
    end = _form(rng, checkout.events, rng.randint(800, 2000), ("#email", "#name", "#card"))
    checkout.events.append({"type": "custom", "ts_ms": end + 400, "name": "purchase"})
    checkout.stay_ms = end + 1000
    pages.append(checkout)
    return _in_order(pages)


def _in_order(pages: list[Page]) -> list[Page]:
    for p in pages:
        p.events.sort(key=lambda e: e["ts_ms"])
    return pages


def decide_body(session_id: str, url: str, context: dict[str, Any],
                events: list[dict[str, Any]], now_ms: int | None = None) -> bytes:
    req: dict[str, Any] = {"session_id": session_id, "context": {"url": url, **context},
                           "events": events}
    if now_ms is not None:
        req["now_ms"] = now_ms
    return json.dumps(req, separators=(",", ":")).encode()


THROUGHPUT_CONTEXT = {"device": "desktop", "local_hour": 14, "country": "DE",
                      "referrer": "https://www.google.com/"}


def throughput_events(start_ms: int) -> list[dict[str, Any]]:
    """20 events over one second of an engaged reader: 8 scrolls, 8 mouse moves, 2 hovers,
    a click and a custom event (the same shape as `./build.sh bench`'s batch)."""
    events: list[dict[str, Any]] = []
    for i in range(20):
        ts = start_ms + i * 50
        kind = i % 5
        if kind in (0, 1):
            events.append({"type": "scroll", "ts_ms": ts, "depth": round(min(1.0, 0.04 * i), 2),
                           "y": 40 * i})
        elif kind == 2:
            events.append({"type": "mousemove", "ts_ms": ts, "x": 10 * i, "y": 5 * i})
        elif kind == 3 and i < 10:
            events.append({"type": "hover", "ts_ms": ts, "target": "#cta-1", "duration_ms": 120})
        elif kind == 3:
            events.append({"type": "click", "ts_ms": ts, "target": "#cta-1"})
        else:
            events.append({"type": "custom", "ts_ms": ts, "name": "evt_1"})
    return events


def throughput_body(session_id: str, seq: int, now_ms: int | None = None,
                    url: str = "/pricing") -> bytes:
    """The `seq`-th batch of a session (a second of events each); `now_ms` None: derived."""
    start = T0 + seq * 1000
    return decide_body(session_id, url, THROUGHPUT_CONTEXT, throughput_events(start),
                       start + 1000 if now_ms is None else now_ms)
