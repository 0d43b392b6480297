"""Labelled visitor populations of several shapes, for `trigger-engine evaluate`.

`python -m loadtest.generators --shape NAME --sessions N --seed S --out FILE` writes one
session a line: `{"session_id", "intent": "high"|"low", "requests": [wire decide requests in
time order], "convert_p_if_nudged", "convert_p_baseline"}`.

The shapes are hard on purpose and unlike each other, so a learning loop cannot be tuned to
one: every signal's distribution overlaps between intents, devices behave differently (page
length, scroll speed, dwell, no mouse on phones), intent shows only partly and through
different signals per shape, and the only label a learner gets is a conversion drawn from
realistic rates (a few % for low intent up to ~30 % for high) with a modest nudge effect
(+10..+50 % relative). None is tuned to make a method look good: the parameters are
plausible guesses, written before any method was run on them.

- `latent`: intent first (25 % high), then behaviour: intent moves dwell, depth, scroll
  pace, hovers, mouse calm, back-scrolling, the seat calculator and pages a little each,
  with its own noise, and an engagement unrelated to intent moves dwell, depth and
  scrolling together (some people just read more). No single signal separates the intents
  (AUC 0.57-0.79); together they do better, so a learner has something to find that one
  or two static thresholds cannot use.
- `archetypes`: a mixture of skimmers, comparers, readers, bouncers and deciders, each
  with its own share of high intent (about 20 % high) and device mix.
- `heavy_tail`: heavy-tailed (Pareto) dwell and nearly the same depth for everyone; intent
  lives mostly in hovers over the plans, calm mouse paths and slow scrolling (about 15 %).
- `leavers`: high-intent visitors scroll slowly and often leave for /checkout before
  reaching the depth they were heading for; low-intent browsers read everything (30 %).

Longer than most modules on purpose: the four shapes are meant to be read side by side,
over the page, event and request builders they share.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edge_module.replay_client import T0

START_MS = T0  # sessions start from here
PAGE_PX = {"mobile": 9000, "tablet": 6000, "desktop": 4200}  # a page's height in px
COUNTRIES = (("DE", 0.3), ("US", 0.25), ("FR", 0.15), ("GB", 0.15), ("BR", 0.1), ("JP", 0.05))
REFERRERS = (None, None, "https://www.google.com/", "https://news.example.com/",
             "https://partner.example.org/deals")
PLANS = ("#plan-basic", "#plan-pro", "#plan-team", "#faq", "#cta-trial")


@dataclass
class PageVisit:
    """What a visitor does on one page: how long, how deep (and how fast they get there),
    how their mouse moves, what they hover and click."""

    url: str
    dwell_ms: int
    depth: float  # the deepest point the visitor is heading for, 0..1
    reach_ms: int  # when they would get there; leaving earlier stops them short
    scroll_every_ms: int = 700  # mean gap between scroll events while scrolling
    mouse_per_s: float = 0.0  # mousemove events per second (0: a touch screen)
    entropy: float = 0.5  # 0: straight mouse paths, 1: a new direction every move
    back_scroll: float = 0.1  # chance a scroll event moves up instead of down
    hovers: list[tuple[int, str, int]] = field(default_factory=list)  # (at, target, ms)
    acts: list[tuple[int, str, str]] = field(default_factory=list)  # (at, type, target)
    customs: list[tuple[int, str]] = field(default_factory=list)  # (at, name)


@dataclass
class Visitor:
    device: str
    high: bool
    pages: list[PageVisit]
    p_baseline: float
    p_nudged: float
    country: str = "DE"
    local_hour: int = 12
    referrer: str | None = None


def clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(x, hi))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def pick(rng: random.Random, table: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([k for k, _ in table], [w for _, w in table])[0]


def conversion_rates(rng: random.Random, high: bool, lift: tuple[float, float] = (0.1, 0.5)
                     ) -> tuple[float, float]:
    """(baseline, if nudged): a few % for low intent, ~8..32 % for high; the nudge adds
    a modest relative lift."""
    base = rng.uniform(0.08, 0.32) if high else rng.uniform(0.005, 0.05)
    return round(base, 4), round(min(1.0, base * (1 + rng.uniform(*lift))), 4)


def events_of(page: PageVisit, start: int, device: str, rng: random.Random
              ) -> list[dict[str, Any]]:
    """The page's events from its page_view at `start`, in time order."""
    out: list[dict[str, Any]] = [{"type": "page_view", "ts_ms": start, "url": page.url}]
    px = PAGE_PX[device]
    t, pos = 0, 0.0
    if page.depth > 0 and page.reach_ms > 0:
        while True:
            t += max(50, int(rng.expovariate(1.0 / page.scroll_every_ms)))
            if t >= page.dwell_ms:
                break
            goal = page.depth * min(1.0, t / page.reach_ms) ** rng.uniform(0.7, 1.3)
            if rng.random() < page.back_scroll:
                pos = clamp(pos - rng.uniform(0.02, 0.12), 0.0, 1.0)
            else:
                pos = clamp(max(pos, goal + rng.gauss(0, 0.02)), 0.0, page.depth)
            out.append({"type": "scroll", "ts_ms": start + t, "depth": round(pos, 3),
                        "y": int(pos * px)})
    if page.mouse_per_s > 0:
        x, y = rng.uniform(200, 1000), rng.uniform(100, 600)
        angle = rng.uniform(0, 2 * math.pi)
        t = 0
        while True:
            t += max(20, int(rng.expovariate(page.mouse_per_s / 1000.0)))
            if t >= page.dwell_ms:
                break
            if rng.random() < page.entropy:
                angle = rng.uniform(0, 2 * math.pi)
            step = rng.uniform(8, 60)
            x = clamp(x + step * math.cos(angle), 0, 1600)
            y = clamp(y + step * math.sin(angle), 0, 1000)
            out.append({"type": "mousemove", "ts_ms": start + t, "x": int(x), "y": int(y)})
    for at, target, ms in page.hovers:
        if at < page.dwell_ms:
            out.append({"type": "hover", "ts_ms": start + at, "target": target,
                        "duration_ms": ms})
    for at, kind, target in page.acts:
        if at < page.dwell_ms:
            out.append({"type": kind, "ts_ms": start + at, "target": target})
    for at, name in page.customs:
        if at < page.dwell_ms:
            out.append({"type": "custom", "ts_ms": start + at, "name": name})
    out.sort(key=lambda e: e["ts_ms"])
    return out


def requests_of(v: Visitor, session_id: str, start_ms: int, rng: random.Random
                ) -> list[dict[str, Any]]:
    """The decide requests a browser SDK sends for the visit: one batch about every
    second (each visitor's own rhythm, jittered), carrying the events since the last."""
    events: list[dict[str, Any]] = []
    t = start_ms
    for page in v.pages:
        events.extend(events_of(page, t, v.device, rng))
        t += page.dwell_ms
    end = t
    base: dict[str, Any] = {"device": v.device, "country": v.country,
                            "local_hour": v.local_hour}
    if v.referrer:
        base["referrer"] = v.referrer
    rhythm = rng.uniform(800, 1400)
    requests: list[dict[str, Any]] = []
    url, i, cut = v.pages[0].url, 0, start_ms
    while cut < end:
        cut = min(end, cut + int(rhythm * rng.uniform(0.7, 1.3)))
        batch = []
        while i < len(events) and events[i]["ts_ms"] <= cut:
            batch.append(events[i])
            if events[i]["type"] == "page_view":
                url = events[i]["url"]
            i += 1
        requests.append({"session_id": session_id, "now_ms": cut,
                         "context": {"url": url, **base}, "events": batch})
    return requests


def dwell_path(rng: random.Random, pricing: PageVisit, before: float, after: float,
               high: bool, device: str) -> list[PageVisit]:
    """The pricing visit with other pages around it (/, /features before; /checkout
    after, more often for high intent)."""
    pages = []
    if rng.random() < before:
        pages.append(PageVisit("/", int(rng.lognormvariate(8.5, 0.6)), rng.uniform(0, 0.6),
                               int(rng.uniform(2000, 8000)), mouse_per_s=pricing.mouse_per_s,
                               entropy=pricing.entropy))
        if rng.random() < 0.5:
            pages.append(PageVisit("/features", int(rng.lognormvariate(9.2, 0.7)),
                                   rng.uniform(0.1, 0.9), int(rng.uniform(4000, 20000)),
                                   mouse_per_s=pricing.mouse_per_s, entropy=pricing.entropy))
    pages.append(pricing)
    if rng.random() < after:
        checkout = PageVisit("/checkout", int(rng.lognormvariate(9.0, 0.5)), rng.uniform(0, 0.5),
                             4000, mouse_per_s=pricing.mouse_per_s, entropy=pricing.entropy)
        at = int(rng.uniform(1500, 4000))
        checkout.acts = [(at, "focus", "#email"), (at + int(rng.uniform(400, 3000)), "input",
                                                     "#email")]
        pages.append(checkout)
    return pages


def other_pages(rng: random.Random) -> list[PageVisit]:
    """A visit that never reaches /pricing."""
    pages = [PageVisit("/", int(rng.lognormvariate(9.0, 0.8)), rng.uniform(0, 0.8),
                       int(rng.uniform(3000, 15000)), mouse_per_s=rng.uniform(0, 4))]
    if rng.random() < 0.5:
        pages.append(PageVisit("/features", int(rng.lognormvariate(9.3, 0.8)),
                               rng.uniform(0, 1), int(rng.uniform(3000, 20000)),
                               mouse_per_s=pages[0].mouse_per_s))
    return pages


def context_of(rng: random.Random) -> tuple[str, int, str | None]:
    return pick(rng, COUNTRIES), rng.randrange(24), rng.choice(REFERRERS)


def mouse_rate(rng: random.Random, device: str) -> float:
    return 0.0 if device == "mobile" else rng.uniform(2, 8) if device == "desktop" \
        else rng.uniform(0, 1.5)


def hovers(rng: random.Random, count: int, dwell: int, mean_ms: float
           ) -> list[tuple[int, str, int]]:
    return sorted((int(rng.uniform(0, max(1, dwell))), rng.choice(PLANS),
                   int(rng.expovariate(1 / mean_ms))) for _ in range(count))


def poisson(rng: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-min(lam, 30.0))
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


# --- the shapes -----------------------------------------------------------------------

def latent(rng: random.Random) -> Visitor:
    """Intent first, then behaviour: intent moves every signal a little, each with its own
    noise, and a general engagement that has nothing to do with intent moves dwell, depth
    and scrolling together (some people just read more)."""
    device = pick(rng, (("mobile", 0.5), ("desktop", 0.38), ("tablet", 0.12)))
    country, hour, referrer = context_of(rng)
    high = rng.random() < 0.25
    h = 1.0 if high else 0.0
    g = rng.gauss(0, 1)  # engagement, independent of intent
    mu = {"mobile": 2.2, "tablet": 2.5, "desktop": 2.7}[device]  # log seconds
    dwell = int(1000 * math.exp(mu + 0.45 * g + 0.55 * h + rng.gauss(0, 0.45)))
    c = {"mobile": 0.6, "tablet": 0.1, "desktop": -0.3}[device]
    depth = round(sigmoid(c + 0.7 * g + 1.0 * h + rng.gauss(0, 0.8)), 3)
    reach = int(dwell * rng.uniform(0.3, 1.2))
    gap = rng.lognormvariate(6.5 + 0.5 * h - 0.15 * g, 0.35) * (0.7 if device == "mobile"
                                                                 else 1.0)
    count = poisson(rng, math.exp(-0.6 + 1.0 * h + 0.2 * g)) if device != "mobile" else 0
    pricing = PageVisit("/pricing", dwell, depth, max(reach, 500), scroll_every_ms=int(gap),
                        mouse_per_s=mouse_rate(rng, device),
                        entropy=clamp(0.62 - 0.18 * h + rng.gauss(0, 0.16), 0.05, 1.0),
                        back_scroll=0.2 if high and rng.random() < 0.6 else 0.08,
                        hovers=hovers(rng, count, dwell, 1500 if high else 800))
    if rng.random() < (0.45 if high else 0.08):  # tries the seat calculator
        at = int(dwell * rng.uniform(0.2, 0.8))
        pricing.acts = [(at, "focus", "#seats"), (at + int(rng.uniform(300, 2500)), "input",
                                                  "#seats")]
    pages = dwell_path(rng, pricing, 0.3 + 0.3 * h + 0.1 * clamp(g, -1, 1), 0.08 + 0.1 * h,
                       high, device)
    if not high and rng.random() < 0.2:
        pages = other_pages(rng)
    base, nudged = conversion_rates(rng, high)
    return Visitor(device, high, pages, base, nudged, country, hour, referrer)


ARCHETYPES = {  # name: (share of high intent, device weights mobile/desktop/tablet)
    "skimmer": (0.10, (0.6, 0.3, 0.1)),
    "comparer": (0.38, (0.3, 0.55, 0.15)),
    "reader": (0.25, (0.4, 0.45, 0.15)),
    "bouncer": (0.03, (0.7, 0.2, 0.1)),
    "decider": (0.65, (0.4, 0.5, 0.1)),
}
ARCHETYPE_MIX = (("skimmer", 0.28), ("comparer", 0.17), ("reader", 0.2), ("bouncer", 0.27),
                 ("decider", 0.08))


def archetypes(rng: random.Random) -> Visitor:
    """A mixture of kinds of visitor, each with its own odds of intent."""
    kind = pick(rng, ARCHETYPE_MIX)
    share, weights = ARCHETYPES[kind]
    device = pick(rng, tuple(zip(("mobile", "desktop", "tablet"), weights)))
    country, hour, referrer = context_of(rng)
    high = rng.random() < share
    slow = 1.0 if device == "desktop" else 0.75 if device == "tablet" else 0.6
    mouse = mouse_rate(rng, device)
    if kind == "skimmer":  # fast and deep, little time
        dwell = int(rng.uniform(3000, 14000) / slow ** 0.5)
        page = PageVisit("/pricing", dwell, rng.uniform(0.6, 1.0), int(dwell * rng.uniform(0.3, 0.7)),
                         scroll_every_ms=300, mouse_per_s=mouse, entropy=rng.uniform(0.5, 1.0))
    elif kind == "comparer":  # back and forth, hovers the plans, middle depth
        dwell = int(rng.lognormvariate(10.0, 0.5) * slow)
        page = PageVisit("/pricing", dwell, rng.uniform(0.4, 0.9),
                         int(dwell * rng.uniform(0.4, 1.3)), scroll_every_ms=900,
                         mouse_per_s=mouse, entropy=rng.uniform(0.2, 0.7), back_scroll=0.3,
                         hovers=hovers(rng, poisson(rng, 3 if device != "mobile" else 0.3),
                                       dwell, 1500))
    elif kind == "reader":  # slow and deep
        dwell = int(rng.lognormvariate(10.3, 0.6) * slow)
        page = PageVisit("/pricing", dwell, rng.uniform(0.55, 1.0),
                         int(dwell * rng.uniform(0.6, 1.1)), scroll_every_ms=1400,
                         mouse_per_s=mouse, entropy=rng.uniform(0.1, 0.6),
                         hovers=hovers(rng, poisson(rng, 1), dwell, 800))
    elif kind == "bouncer":
        dwell = int(rng.uniform(1000, 7000))
        page = PageVisit("/pricing", dwell, rng.uniform(0.0, 0.45), int(rng.uniform(1000, 5000)),
                         scroll_every_ms=600, mouse_per_s=mouse, entropy=rng.uniform(0.4, 1.0))
    else:  # decider: knows the plan, a short look, then the trial button
        dwell = int(rng.uniform(4000, 20000) * slow)
        page = PageVisit("/pricing", dwell, rng.uniform(0.25, 0.75),
                         int(dwell * rng.uniform(0.5, 1.0)), scroll_every_ms=800,
                         mouse_per_s=mouse, entropy=rng.uniform(0.05, 0.4),
                         acts=[(int(dwell * 0.9), "click", "#cta-trial")])
    if high:  # intent nudges behaviour a little within each kind, not much
        page.dwell_ms = int(page.dwell_ms * rng.uniform(1.0, 1.4))
        page.depth = clamp(page.depth + rng.uniform(0.0, 0.1), 0.0, 1.0)
    page.depth = round(page.depth, 3)
    before = {"comparer": 0.8, "reader": 0.5, "decider": 0.2}.get(kind, 0.3)
    pages = dwell_path(rng, page, before, 0.5 if kind == "decider" else 0.05 + 0.1 * high,
                       high, device)
    if kind == "comparer" and rng.random() < 0.4:  # comes back to the plans
        again = PageVisit("/pricing", int(rng.uniform(3000, 15000)), rng.uniform(0.2, 0.8),
                          int(rng.uniform(2000, 9000)), mouse_per_s=mouse,
                          entropy=page.entropy)
        pages.insert(pages.index(page) + 1, PageVisit("/features", int(rng.uniform(4000, 20000)),
                                                      rng.uniform(0.2, 0.9), 6000,
                                                      mouse_per_s=mouse))
        pages.insert(pages.index(page) + 2, again)
    if not high and rng.random() < 0.15:
        pages = other_pages(rng)
    base, nudged = conversion_rates(rng, high)
    return Visitor(device, high, pages, base, nudged, country, hour, referrer)


def heavy_tail(rng: random.Random) -> Visitor:
    """Heavy-tailed dwell and near-identical depth; intent in hovers, mouse and speed."""
    device = pick(rng, (("mobile", 0.55), ("desktop", 0.33), ("tablet", 0.12)))
    country, hour, referrer = context_of(rng)
    high = rng.random() < 0.15
    scale = {"mobile": 2500, "tablet": 3500, "desktop": 4500}[device]
    dwell = int(min(scale * rng.paretovariate(1.3) * (1.15 if high else 1.0), 900_000))
    depth = round(clamp(rng.betavariate(2.2 + 0.4 * high, 1.8), 0.02, 1.0), 3)
    reach = int(rng.uniform(2000, 40000))
    # slow scrollers read: the gap between scroll events is longer for high intent
    gap = rng.lognormvariate(6.6 + (0.35 if high else 0.0), 0.45)
    mouse = mouse_rate(rng, device)
    entropy = clamp(rng.gauss(0.4 if high else 0.6, 0.18), 0.02, 1.0)
    count = poisson(rng, (2.5 if high else 0.9) * (0.2 if device == "mobile" else 1.0))
    page = PageVisit("/pricing", dwell, depth, reach, scroll_every_ms=int(gap),
                     mouse_per_s=mouse, entropy=entropy,
                     hovers=hovers(rng, count, dwell, 1800 if high else 900))
    pages = dwell_path(rng, page, 0.4, 0.06 + 0.08 * high, high, device)
    if not high and rng.random() < 0.25:
        pages = other_pages(rng)
    base, nudged = conversion_rates(rng, high, (0.1, 0.35))
    return Visitor(device, high, pages, base, nudged, country, hour, referrer)


def leavers(rng: random.Random) -> Visitor:
    """High-intent visitors head deep but slowly, and half leave for /checkout first."""
    device = pick(rng, (("mobile", 0.5), ("desktop", 0.4), ("tablet", 0.1)))
    country, hour, referrer = context_of(rng)
    high = rng.random() < 0.30
    speed = {"mobile": 0.7, "tablet": 0.85, "desktop": 1.0}[device]  # dwell multiplier
    mouse = mouse_rate(rng, device)
    if high:
        depth = rng.uniform(0.6, 1.0)
        reach = int(rng.uniform(10000, 45000) * speed)
        dwell = int(reach * rng.uniform(0.3, 0.9)) if rng.random() < 0.5 else \
            int(reach * rng.uniform(0.9, 1.6))
        entropy = rng.uniform(0.1, 0.7)
    else:
        browser = rng.random() < 0.35  # reads everything, buys nothing
        depth = rng.uniform(0.7, 1.0) if browser else rng.betavariate(1.5, 2.2)
        dwell = int(rng.lognormvariate(9.9 if browser else 9.2, 0.7) * speed)
        reach = int(dwell * rng.uniform(0.3, 1.0))
        entropy = rng.uniform(0.3, 1.0)
    page = PageVisit("/pricing", max(dwell, 800), round(depth, 3), max(reach, 500),
                     scroll_every_ms=int(rng.uniform(500, 1500)), mouse_per_s=mouse,
                     entropy=entropy, hovers=hovers(rng, poisson(rng, 1.2 if high else 0.8),
                                                    dwell, 1000))
    pages = dwell_path(rng, page, 0.5, 0.6 if high else 0.05, high, device)
    if not high and rng.random() < 0.3:
        pages = other_pages(rng)
    base, nudged = conversion_rates(rng, high, (0.15, 0.5))
    return Visitor(device, high, pages, base, nudged, country, hour, referrer)


SHAPES: dict[str, Callable[[random.Random], Visitor]] = {
    "latent": latent, "archetypes": archetypes, "heavy_tail": heavy_tail, "leavers": leavers}


def sessions(shape: str, count: int, seed: int = 0, start_ms: int = START_MS
             ) -> Iterator[dict[str, Any]]:
    """`count` labelled sessions of `shape`, reproducible from `seed`, starting a few
    seconds apart from `start_ms`."""
    make = SHAPES[shape]
    rng = random.Random(f"{shape}/{seed}")
    t = start_ms
    for i in range(count):
        v = make(rng)
        sid = f"{shape}-{seed}-{i}"
        yield {"session_id": sid, "intent": "high" if v.high else "low",
               "requests": requests_of(v, sid, t, rng),
               "convert_p_if_nudged": v.p_nudged, "convert_p_baseline": v.p_baseline}
        t += int(rng.expovariate(1 / 1500))


def write(out: TextIO, shape: str, count: int, seed: int = 0) -> int:
    n = 0
    for session in sessions(shape, count, seed):
        out.write(json.dumps(session, separators=(",", ":")) + "\n")
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.generators",
                                     description="Write labelled visitor sessions (JSON lines).")
    parser.add_argument("--shape", choices=sorted(SHAPES))
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="file to write (default: stdout)")
    parser.add_argument("--list", action="store_true", help="list the shapes and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in SHAPES.items():
            print(f"{name:<11} {(fn.__doc__ or '').strip()}")
        return 0
    if args.shape is None:
        parser.error("--shape is required (see --list)")
    if args.sessions < 0:
        parser.error("--sessions must be >= 0")
    try:
        if args.out is None:
            write(sys.stdout, args.shape, args.sessions, args.seed)
        elif args.out.is_symlink() or (args.out.exists() and not args.out.is_file()):
            with args.out.open("w") as f:  # /dev/stdout, a fifo, a link: written through
                write(f, args.shape, args.sessions, args.seed)
        else:  # a file: whole or not at all, written beside it and renamed when complete
            tmp = args.out.with_name(f".{args.out.name}.partial")
            try:
                with tmp.open("w") as f:
                    write(f, args.shape, args.sessions, args.seed)
                tmp.replace(args.out)
            finally:
                tmp.unlink(missing_ok=True)
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()  # no second complaint from the interpreter at exit
        return 0
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    except OSError as exc:
        parser.error(f"--out {args.out}: {exc.strerror or exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
