"""A simulated visitor population with known intent, producing wire-contract requests.

Each visitor has a device (mix 55 % mobile, 35 % desktop, 10 % tablet), a local hour
(evenings convert more) and a hidden intent. Intent drives behaviour: high-intent visitors
scroll deeper, dwell longer, scroll slower and move the mouse less randomly. Devices differ
in how deep everyone scrolls (a phone's page is long and thumbs flick), which is exactly
what one static threshold cannot serve: the reason adaptive thresholds exist.

`journey(visitor)` gives the batches a client would send (one per second of the visit);
`outcomes(visitor, shown)` what the visitor does with what was shown (the ground truth the
edge only sees as `POST /v1/outcome` reports).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

DEVICES = (("mobile", 0.55), ("desktop", 0.35), ("tablet", 0.10))
# (low-intent depth range, high-intent depth range) per device
DEPTH = {"mobile": ((0.30, 0.86), (0.88, 1.0)),
         "desktop": ((0.05, 0.68), (0.72, 1.0)),
         "tablet": ((0.20, 0.78), (0.80, 1.0))}
PAGE = "/pricing"


@dataclass(frozen=True)
class Visitor:
    session_id: str
    device: str
    local_hour: int
    high_intent: bool
    depth: float  # deepest scroll the visitor reaches, 0..1
    dwell_ms: int  # time on the page
    velocity: float  # px/s while scrolling
    entropy: float  # 0..1: how erratic the mouse is
    start_ms: int


def population(n: int, seed: int = 7, start_ms: int = 1_764_201_600_000,
               prefix: str = "v") -> list[Visitor]:
    """`n` visitors, reproducible from `seed`."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        device = rng.choices([d for d, _ in DEVICES], [w for _, w in DEVICES])[0]
        hour = rng.randrange(24)
        high = rng.random() < (0.35 if 18 <= hour <= 22 else 0.22)
        lo, hi = DEPTH[device][1 if high else 0]
        out.append(Visitor(
            f"{prefix}{seed}-{i}", device, hour, high, round(rng.uniform(lo, hi), 3),
            rng.randint(8_000, 30_000) if high else rng.randint(4_000, 25_000),
            rng.uniform(200, 600) if high else rng.uniform(500, 1500),
            rng.uniform(0.1, 0.5) if high else rng.uniform(0.4, 1.0),
            start_ms + i * 50))
    return out


def journey(v: Visitor) -> list[dict[str, Any]]:
    """The decide requests of the visit: page view, then a batch per second, the scroll
    rising to its deepest over the first 60 % of the visit."""
    rng = random.Random(v.session_id)
    context = {"url": PAGE, "device": v.device, "country": "DE", "local_hour": v.local_hour}
    batches = [{"session_id": v.session_id, "now_ms": v.start_ms, "context": context,
                "events": [{"type": "page_view", "ts_ms": v.start_ms, "url": PAGE}]}]
    seconds = max(1, v.dwell_ms // 1000)
    ramp = max(1.0, seconds * 0.6)
    for s in range(1, seconds + 1):
        t = v.start_ms + s * 1000
        depth = round(min(v.depth, v.depth * s / ramp), 3)
        events: list[dict[str, Any]] = [
            {"type": "scroll", "ts_ms": t - 500, "depth": depth, "y": int(depth * 4000)}]
        x, y = 400, 300
        for k in range(4):
            angle_jitter = 400 * v.entropy
            x += int(rng.uniform(-angle_jitter, angle_jitter))
            y += int(rng.uniform(-angle_jitter, angle_jitter))
            events.append({"type": "mousemove", "ts_ms": t - 400 + k * 100, "x": x, "y": y})
        batches.append({"session_id": v.session_id, "now_ms": t, "context": context,
                        "events": events})
    return batches


def outcomes(v: Visitor, shown: list[tuple[str, str, int, str | None]],
             last: tuple[str, str | None] | None = None) -> list[dict[str, Any]]:
    """What the visitor reports: an impression per action shown (trigger, decision id,
    when, the action's outcome token), then a click or a dismissal; high-intent visitors
    mostly convert, shown or not (a conversion nothing was shown for cites the last
    decision, `last`: its id and outcome token)."""
    rng = random.Random(v.session_id + "/outcomes")
    out = []
    for trigger, decision_id, at, token in shown:
        base = {"session_id": v.session_id, "decision_id": decision_id, "trigger": trigger,
                "outcome_token": token}
        out.append({**base, "type": "impression", "ts_ms": at})
        if v.high_intent and rng.random() < 0.7:
            out.append({**base, "type": "click", "ts_ms": at + 2000})
        elif not v.high_intent and rng.random() < 0.6:
            out.append({**base, "type": "dismiss", "ts_ms": at + 1500})
    if rng.random() < (0.85 if v.high_intent else 0.02):
        conversion = {"session_id": v.session_id, "type": "conversion",
                      "ts_ms": v.start_ms + v.dwell_ms}
        if shown:
            trigger, decision_id, _, token = shown[0]
            conversion.update(trigger=trigger, decision_id=decision_id, outcome_token=token)
        elif last is not None:
            conversion.update(trigger=None, decision_id=last[0], outcome_token=last[1])
        out.append(conversion)
    return out


Decide = Callable[[dict[str, Any]], dict[str, Any]]
Report = Callable[[dict[str, Any]], None]


@dataclass
class SessionResult:
    visitor: Visitor
    fired: bool


def run(visitors: list[Visitor], decide: Decide, report: Report,
        trigger: str | None = None) -> list[SessionResult]:
    """Drive each visitor's journey through `decide` and its outcomes through `report`;
    whether `trigger` (any, if None) was shown to each."""
    results = []
    for v in visitors:
        shown: list[tuple[str, str, int, str | None]] = []
        last = None
        for request in journey(v):
            response = decide(request)
            last = (response["decision_id"], response.get("outcome_token"))
            for action in response.get("actions", ()):
                if trigger is None or action["trigger"] == trigger:
                    shown.append((action["trigger"], response["decision_id"],
                                  request["now_ms"], action.get("outcome_token")))
        for body in outcomes(v, shown, last):
            report(body)
        results.append(SessionResult(v, bool(shown)))
    return results


def native_decider(snapshot_text: str, on_decision: Callable[..., None] | None = None) -> Decide:
    """The decision core called in-process, with the session state kept here, as the edge
    host keeps it; `on_decision(request, response, now_ms)` sees every decision."""
    import json
    import uuid

    from edge_module.core.api import decide_json
    from edge_module.core.snapshot import load_snapshot

    snap = load_snapshot(snapshot_text)
    states: dict[str, Any] = {}

    def decide(request: dict[str, Any]) -> dict[str, Any]:
        envelope = json.dumps({"now_ms": request["now_ms"],
                               "state": states.get(request["session_id"]), "request": request})
        response_text, state_text = decide_json(snap, envelope).split("\n", 1)
        states[request["session_id"]] = json.loads(state_text)
        response: dict[str, Any] = json.loads(response_text)
        response["decision_id"] = uuid.uuid4().hex
        response["latency_us"] = 0
        if on_decision is not None:
            on_decision(request, response, request["now_ms"])
        return response

    return decide
