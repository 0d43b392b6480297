"""A simulated client that only calls back at `next_check_ms` gets every timed trigger at
its due moment (within 10 ms of simulated time), for every kind of timed condition,
natively and in the component. No polling: each callback is one the engine announced."""

from __future__ import annotations

import pytest

from tests.factories import T0, Session, ev, loaded

TOLERANCE_MS = 10

# kind -> (pack, opening events, when it is due (ms after T0))
CASES = {
    "dwell": ("""
pack: t
triggers:
  - {id: x, when: [{dwell: ">= 3s"}], action: {content: c}}
""", [ev("page_view", 0)], 3000),
    "session_time": ("""
pack: t
triggers:
  - {id: x, when: [{session_time: "> 7s"}], action: {content: c}}
""", [ev("page_view", 0), ev("page_view", 2000, url="/b")], 7001),
    "since": ("""
pack: t
triggers:
  - {id: x, when: [{since: {event: {type: custom, name: add_to_cart}, gte: 4s}}], action: {content: c}}
""", [ev("page_view", 0), ev("custom", 500, name="add_to_cart")], 4500),
    "absent": ("""
pack: t
triggers:
  - {id: x, when: [{absent: {event: input, after: focus, gte: 5s}}], action: {content: c}}
""", [ev("page_view", 0), ev("focus", 1200, target="#email")], 6200),
    "sustained": ("""
pack: t
triggers:
  - {id: x, when: [{sustained: {for: 5s, when: [{scroll_depth: ">= 80%"}]}}], action: {content: c}}
""", [ev("page_view", 0), ev("scroll", 700, depth=0.85, y=2000)], 5700),
    "velocity_below": ("""
pack: t
triggers:
  - {id: x, when: [{dwell: ">= 500ms"}, {scroll_velocity: {lt: 100, window: 2s}}], action: {content: c}}
""", [ev("page_view", 0), ev("scroll", 300, depth=0.5, y=1500), ev("scroll", 900, depth=0.6, y=1800)],
        2900),
    "spike_below": ("""
pack: t
triggers:
  - {id: x, when: [{pages: ">= 1"}, {velocity_spike: {lt: 0.5, window: 1s, baseline: session}}], action: {content: c}}
""", [ev("page_view", 0), ev("scroll", 400, depth=0.5, y=800), ev("scroll", 800, depth=0.6, y=1600)],
        # baseline 2000 px/s; the 400-800 ms move alone (800 px/s, 0.4x) once the first
        # leaves the 1 s window at 1400
        1400),
    "count_below": ("""
pack: t
triggers:
  - {id: x, when: [{dwell: ">= 1s"}, {count: {event: click, window: 3s, lt: 2}}], action: {content: c}}
""", [ev("page_view", 0), ev("click", 200, target="#a"), ev("click", 600, target="#a")], 3200),
    "mouse_entropy_calm": ("""
pack: t
triggers:
  - {id: x, when: [{dwell: ">= 100ms"}, {mouse_entropy: {lte: 0.5, window: 2s}}], action: {content: c}}
""", [ev("page_view", 0), ev("mousemove", 100, x=0, y=0), ev("mousemove", 200, x=10, y=0),
      ev("mousemove", 300, x=10, y=10), ev("mousemove", 400, x=0, y=10)],
        # three directions (1.58 bits) until the 300 ms move leaves the 2 s window: one left
        2300),
    "avg_window": ("""
pack: t
triggers:
  - {id: x, when: [{dwell: ">= 100ms"}, {avg: {field: hover.duration_ms, window: 4s, lte: 300ms}}], action: {content: c}}
""", [ev("page_view", 0), ev("hover", 500, target="#a", duration_ms=2000),
      ev("hover", 1500, target="#b", duration_ms=100)], 4500),
    "cooldown": ("""
pack: t
triggers:
  - {id: x, when: [{dwell: ">= 0s"}], cap: {per_page: unlimited, cooldown: 8s}, action: {content: c}}
""", [ev("page_view", 0)], 8000),
    "queued": ("""
pack: t
triggers:
  - {id: x, on: {type: custom, name: cart_abandon}, action: {content: c, tier: queued, delay: 3s}}
""", [ev("page_view", 0), ev("custom", 250, name="cart_abandon")], 3250),
    "sequence_step": ("""
pack: t
sequences:
  - id: x
    start: {type: custom, name: cart_abandon}
    steps:
      - {id: one, after: 2s, action: {content: c}}
""", [ev("page_view", 0), ev("custom", 300, name="cart_abandon")], 2300),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_client_following_next_check_gets_the_trigger_on_time(decider, kind):
    pack, opening, due = CASES[kind]
    first_now = max(e["ts_ms"] for e in opening) - T0
    if kind == "cooldown":  # first firing at once, then the cooldown is what is timed
        visit = Session(loaded(decider, pack), url="/")
        assert visit.send(opening, 0)["actions"]
        response = visit.send([], 10)
        assert response["actions"] == []
        fired_at = response["next_check_ms"] - T0
        assert visit.send([], fired_at)["actions"]
    else:
        fired_at, calls = simulate_fire(decider, pack, opening, first_now)
        assert fired_at is not None, f"{kind}: never fired"
        assert calls <= 4, f"{kind}: {calls} calls: the client was made to poll"
    assert abs(fired_at - due) <= TOLERANCE_MS, f"{kind}: fired at {fired_at}, due {due}"


def simulate_fire(decider, pack: str, opening: list, first_now: int) -> tuple[int | None, int]:
    visit = Session(loaded(decider, pack), url="/")
    now = first_now
    response = visit.send(opening, now)
    calls = 1
    while not any(a["trigger"].split("/")[0] == "x" for a in response["actions"]):
        if response["next_check_ms"] is None or calls > 20:
            return None, calls
        now = response["next_check_ms"] - T0
        response = visit.send([], now)
        calls += 1
    return now, calls
