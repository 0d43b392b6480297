"""The core reports what it saw (issue #12, contract A): the session vector and the values
its conditions measured equal those recomputed here, independently, from the raw events,
natively and inside the real component; snapshots that do not learn pay nothing."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_module.core import decide, decide_packed, load_snapshot, pack, unpack
from edge_module.core.session import MAX_SESSION_BYTES, STATE_VERSION, Session
from tests.factories import T0, envelope
from tests.report_snapshots import LEARNING, PLAIN, text

_ids = itertools.count()

# -- an independent recomputation of contract A's session vector -----------------------------


def sector(dx: float, dy: float) -> int:
    """One of 8 direction sectors, 45 degrees each, counted from the negative x axis."""
    return int((math.atan2(dy, dx) + math.pi) / (2 * math.pi) * 8) % 8


def expected_vector(events: list[dict[str, Any]], start: int, now: int) -> dict[str, Any]:
    """The session vector at `now` from every event of the visit, in time order."""
    pv, depth, pages = start, 0.0, {"/"}
    page_samples: list[tuple[int, float]] = [(start, 0.0)]
    px = ms = 0.0
    scrolls = moves = hovers = forms = 0
    hover_ms = 0.0
    sectors = [0] * 8
    last_xy = None
    focused: dict[str, int] = {}
    last_input = None
    out: dict[str, Any] = {}
    for e in events:
        kind, ts = e["type"], e["ts_ms"]
        if kind == "page_view":
            pv, depth = ts, 0.0
            pages.add(e["url"])
            page_samples = [(ts, 0.0)]
        elif kind == "scroll":
            scrolls += 1
            depth = max(depth, e["depth"])
            prev_ts, prev_y = page_samples[-1]
            px += abs(e["y"] - prev_y)
            ms += min(max(ts - prev_ts, 0), 1000)
            page_samples.append((ts, e["y"]))
        elif kind == "mousemove":
            moves += 1
            if last_xy is not None and (e["x"], e["y"]) != last_xy:
                sectors[sector(e["x"] - last_xy[0], e["y"] - last_xy[1])] += 1
            last_xy = (e["x"], e["y"])
        elif kind == "hover":
            hovers += 1
            hover_ms += e["duration_ms"]
        elif kind in ("focus", "input", "submit", "blur"):
            forms += 1
            target = e["target"]
            if kind == "focus":
                focused[target] = ts
            elif kind == "input":
                if target in focused:
                    out["focus_to_input_ms"] = ts - focused.pop(target)
                last_input = ts
            elif kind == "submit" and last_input is not None:
                out["input_to_submit_ms"] = ts - last_input
    n = sum(sectors)
    entropy = -sum(c / n * math.log2(c / n) for c in sectors if c) if n else 0.0
    velocity = sum(abs(page_samples[i][1] - page_samples[i - 1][1])
                   for i in range(1, len(page_samples)) if now - 1000 < page_samples[i][0] <= now)
    out.update({"dwell_ms": now - pv, "session_ms": now - start, "depth": depth,
                "scroll_px": px, "scroll_speed": px * 1000 / ms if ms else 0.0,
                "scroll_events": scrolls, "velocity": velocity, "mouse_entropy": entropy,
                "mouse_moves": moves, "hover_ms": hover_ms, "hovers": hovers,
                "pages": len(pages), "form_events": forms})
    return out


# -- visits: batches of events in time order ------------------------------------------------

TARGETS = ("#email", "#name", "#cta")


@st.composite
def visits(draw: Any) -> list[tuple[list[dict[str, Any]], int]]:
    """2-4 batches of events (the first opens "/"), each with the decision's `now`."""
    t = T0
    batches = []
    first = True
    for _ in range(draw(st.integers(2, 4))):
        events: list[dict[str, Any]] = []
        if first:
            events.append({"type": "page_view", "ts_ms": t, "url": "/"})
            first = False
        for _ in range(draw(st.integers(0, 12))):
            t += draw(st.integers(0, 1500))
            kind = draw(st.sampled_from(("scroll", "scroll", "mousemove", "mousemove", "hover",
                                         "focus", "input", "submit", "blur", "page_view")))
            e: dict[str, Any] = {"type": kind, "ts_ms": t}
            if kind == "scroll":
                e["depth"] = draw(st.floats(0, 1))
                e["y"] = draw(st.integers(0, 5000))
            elif kind == "mousemove":
                e["x"], e["y"] = draw(st.integers(0, 400)), draw(st.integers(0, 400))
            elif kind == "hover":
                e["target"] = draw(st.sampled_from(TARGETS))
                e["duration_ms"] = draw(st.floats(0, 5000))
            elif kind == "page_view":
                e["url"] = draw(st.sampled_from(("/", "/pricing", "/cart")))
            else:
                e["target"] = draw(st.sampled_from(TARGETS))
            events.append(e)
        t += draw(st.integers(0, 4000))
        batches.append((events, t))
    return batches


def close(a: Any, b: Any) -> bool:
    return a == pytest.approx(b, rel=1e-9, abs=1e-9)


def check_visit(decider: Any, batches: list[tuple[list[dict[str, Any]], int]]) -> None:
    session = f"visitor-{next(_ids)}"
    state = None
    seen: list[dict[str, Any]] = []
    for events, now in batches:
        req = {"session_id": session, "now_ms": now, "context": {"url": "/"}, "events": events}
        out = decider.decide(envelope(req, state))
        response, state = out.response, out.state
        seen.extend(events)
        want = expected_vector(seen, T0, now)
        got = response["report"]["session"]
        assert set(got) == set(want), (got, want)
        for name, value in want.items():
            assert close(got[name], value), (name, got[name], value)
        # the values the conditions measured are the vector's own
        deep = response["report"]["triggers"].get("deep")
        if deep is not None:  # reported while not capped on this page
            assert deep["values"]["deep#0"] == want["dwell_ms"]
            assert close(deep["values"]["deep#1"], want["depth"])
            assert close(deep["values"]["deep#2"], want["velocity"])
        keen = response["report"]["triggers"].get("keen")
        if keen is not None:
            z = -2.0 + 0.5 * want["dwell_ms"] / 1000 + 2.0 * want["depth"]
            assert close(keen["values"]["keen#0"], 1 / (1 + math.exp(-z)))
            assert close(keen["intent"], keen["values"]["keen#0"])
        assert Session.from_state(state, 0).accounted_bytes() <= MAX_SESSION_BYTES


@given(visits())
@settings(max_examples=40, deadline=None)
def test_the_reported_features_are_those_of_the_raw_events_natively(batches):
    from tests.factories import NativeDecider

    decider = NativeDecider()
    assert decider.load(text(LEARNING)).ok
    check_visit(decider, batches)


@given(batches=visits())
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_reported_features_are_those_of_the_raw_events_in_the_component(new_instance,
                                                                            batches):
    from tests.factories import ComponentDecider

    decider = ComponentDecider(new_instance())
    assert decider.load(text(LEARNING)).ok
    check_visit(decider, batches)


# -- who reports, and what it costs --------------------------------------------------------------

def visit_request(session: str) -> dict[str, Any]:
    return {"session_id": session, "now_ms": T0 + 4000, "context": {"url": "/"},
            "events": [{"type": "page_view", "ts_ms": T0, "url": "/"},
                       {"type": "scroll", "ts_ms": T0 + 500, "depth": 0.9, "y": 800},
                       {"type": "mousemove", "ts_ms": T0 + 600, "x": 1, "y": 1},
                       {"type": "mousemove", "ts_ms": T0 + 700, "x": 9, "y": 4},
                       {"type": "hover", "ts_ms": T0 + 800, "target": "#cta",
                        "duration_ms": 300},
                       {"type": "focus", "ts_ms": T0 + 900, "target": "#email"}]}


def test_a_snapshot_that_does_not_learn_reports_nothing_and_its_state_does_not_grow(decider):
    assert decider.load(text(PLAIN)).ok
    out = decider.decide(envelope(visit_request("s-plain")))
    assert [a["trigger"] for a in out.response["actions"]] == ["plain"]
    assert "report" not in out.response
    # nothing kept for a report: no visit counts, no mouse position, no form fields
    assert not {"rv", "mp", "ms", "fo", "fi"} & set(out.state)
    learning = load_snapshot(text(LEARNING))
    assert learning.report and not load_snapshot(text(PLAIN)).report


def test_the_envelope_asks_for_a_report_on_any_snapshot(decider):
    assert decider.load(text(PLAIN)).ok
    env = json.loads(envelope(visit_request("s-asks")))
    env["report"] = True
    out = decider.decide(json.dumps(env))
    report = out.response["report"]
    assert report["session"]["hovers"] == 1 and report["session"]["mouse_moves"] == 2
    assert report["triggers"]["plain"] == {"values": {"plain#0": 4000, "plain#1": 0.9},
                                           "policy": "learned", "holds": True, "p_fire": 1.0}


def test_the_packed_envelope_asks_with_an_optional_fourth_item():
    snap = load_snapshot(text(PLAIN))
    for extra, reported in (((), False), ((False,), False), ((True,), True)):
        response, _state = unpack(decide_packed(snap, pack(
            (T0 + 4000, None, visit_request("s-packed"), *extra))))  # type: ignore[misc]
        assert ("report" in response) is reported
    with pytest.raises(Exception, match="packed envelope"):
        decide_packed(snap, pack((T0, None)))


def test_a_trigger_capped_by_this_very_decision_is_still_reported():
    snap = load_snapshot(text(LEARNING))
    out = decide(snap, visit_request("s-cap"), None)
    assert "deep" in [a["trigger"] for a in out["actions"]]
    assert out["report"]["triggers"]["deep"]["holds"] is True
    # the next decision on the same page: both fired, capped (once per page), not reported
    assert sorted(a["trigger"] for a in out["actions"]) == ["deep", "keen"]
    again = decide(snap, {"session_id": "s-cap", "now_ms": T0 + 5000}, out["state"])
    assert again["report"]["triggers"] == {}
    new_page = decide(snap, {"session_id": "s-cap", "now_ms": T0 + 6000, "events": [
        {"type": "page_view", "ts_ms": T0 + 6000, "url": "/"}]}, again["state"])
    assert set(new_page["report"]["triggers"]) == {"deep", "keen"}


def test_a_state_from_before_the_report_still_loads_and_counts_from_then_on():
    snap = load_snapshot(text(LEARNING))
    old = decide(load_snapshot(text(PLAIN)), visit_request("s-old"), None)["state"]
    assert old["v"] == STATE_VERSION and "rv" not in old
    out = decide(snap, {"session_id": "s-old", "now_ms": T0 + 6000,
                        "events": [{"type": "hover", "ts_ms": T0 + 5000, "target": "#a",
                                    "duration_ms": 10}]}, old)
    session = out["report"]["session"]
    assert session["session_ms"] == 6000 and session["hovers"] == 1  # the visit is kept
    assert session["depth"] == 0.9


def test_the_session_state_stays_within_its_byte_budget_while_reporting():
    snap = load_snapshot(text(LEARNING))
    state = None
    for n in range(60):  # many pages, hover targets and form fields: all visitor-chosen
        events = [{"type": "page_view", "ts_ms": T0 + n * 1000, "url": f"/p/{'x' * 100}{n}"}]
        events += [{"type": "hover", "ts_ms": T0 + n * 1000 + k, "target": f"#{'t' * 200}{n}-{k}",
                    "duration_ms": 5} for k in range(3)]
        events += [{"type": "focus", "ts_ms": T0 + n * 1000 + 5, "target": f"#{'f' * 200}{n}"}]
        out = decide(snap, {"session_id": "s-big", "now_ms": T0 + n * 1000 + 10,
                            "events": events}, state)
        state = out["state"]
        assert Session.from_state(state, 0).accounted_bytes() <= MAX_SESSION_BYTES
    assert out["report"]["session"]["hovers"] == 180  # the counts survive the forgetting
