"""Backtests over recorded sessions: fire counts, time to fire, overlaps, refused lines."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from control_plane.authoring.case_runner import compiled_snapshot
from control_plane.authoring.simulate import SimulationReport, TriggerStats, simulate
from control_plane.rulepack import load_pack
from loadtest.synthetic_sessions import generate
from tests.cases_decisions import SHOP
from tests.factories import T0

IDS = ["engaged", "clicked"]


def line(sid: str, now: int, *events: dict[str, Any], url: str = "/pricing") -> str:
    return json.dumps({"session_id": sid, "now_ms": T0 + now, "context": {"url": url},
                       "events": [{**e, "ts_ms": T0 + e["ts_ms"]} for e in events]})


def page_view(at: int, url: str = "/pricing") -> dict[str, Any]:
    return {"type": "page_view", "ts_ms": at, "url": url}


def scroll(at: int, depth: float) -> dict[str, Any]:
    return {"type": "scroll", "ts_ms": at, "depth": depth}


def click(at: int) -> dict[str, Any]:
    return {"type": "click", "ts_ms": at, "target": "#buy"}


def run(*lines: str) -> SimulationReport:
    return simulate(compiled_snapshot([load_pack(SHOP, "shop.yaml")]), IDS, lines)


def stats(report: SimulationReport, tid: str) -> TriggerStats:
    return next(t for t in report.triggers if t.trigger == tid)


def engaged_session(sid: str, start: int = 0) -> list[str]:
    return [line(sid, start + 1000, page_view(start), scroll(start + 500, 0.8)),
            line(sid, start + 10_000, {"type": "mousemove", "ts_ms": start + 9000})]


def test_fires_and_sessions_are_counted_per_trigger():
    report = run(*engaged_session("a"), *engaged_session("b"),
                 line("c", 1000, page_view(0), scroll(500, 0.2)))
    assert (report.sessions, stats(report, "engaged").fires, stats(report, "engaged").sessions,
            stats(report, "clicked").fires) == (3, 2, 2, 0)


def test_a_timed_trigger_fires_between_requests_when_next_check_comes_due():
    report = run(*engaged_session("a"))
    assert stats(report, "engaged").first_fire_ms == (3000,)
    assert report.callbacks == 1


def test_time_to_fire_is_measured_from_the_session_start():
    report = run(*engaged_session("a", start=60_000))
    assert stats(report, "engaged").first_fire_ms == (3000,)


def test_nothing_is_simulated_after_a_sessions_last_request():
    report = run(line("a", 1000, page_view(0), scroll(500, 0.8)))
    assert stats(report, "engaged").fires == 0


def test_sessions_interleaved_in_the_recording_keep_their_own_state():
    first, second = engaged_session("a"), engaged_session("b", start=200)
    report = run(first[0], second[0], first[1], second[1])
    assert stats(report, "engaged").first_fire_ms == (3000, 3000)


def test_the_overlap_matrix_counts_sessions_in_which_both_fired():
    both = [line("a", 1000, page_view(0), scroll(500, 0.8)),
            line("a", 5000, click(4000))]
    report = run(*both, *engaged_session("b"))
    assert report.overlap == ((2, 1), (1, 1))


def test_refused_and_unreadable_lines_are_counted_by_code_not_fatal():
    report = run("{not json", line("a", 1000, scroll(0, 1.5)), *engaged_session("b"))
    assert report.errors == {"invalid_json": 1, "invalid_event": 1}
    assert report.first_errors[0].startswith("line 1: not JSON")
    assert stats(report, "engaged").fires == 1


def test_percentiles_of_time_to_fire_are_nearest_rank():
    trig = TriggerStats("t", 10, 10, tuple(range(1000, 11_000, 1000)))
    assert (trig.percentile(0.5), trig.percentile(0.9), trig.percentile(1.0)) == (
        5000, 9000, 10_000)


def test_the_json_report_names_each_trigger_and_the_matrix_axes():
    doc = run(*engaged_session("a")).to_dict()
    assert doc["triggers"][0] == {"trigger": "engaged", "fires": 1, "sessions": 1,
                                  "time_to_fire_ms": {"p50": 3000, "p90": 3000, "max": 3000}}
    assert doc["overlap"] == {"triggers": IDS, "sessions": [[1, 0], [0, 0]]}


def test_the_synthetic_recording_is_the_same_for_the_same_seed():
    assert generate(20, seed=7) == generate(20, seed=7)
    assert generate(20, seed=7) != generate(20, seed=8)


def test_the_synthetic_recording_keeps_each_sessions_requests_in_time_order():
    times: dict[str, list[int]] = defaultdict(list)
    for text in generate(50):
        request = json.loads(text)
        times[request["session_id"]].append(request["now_ms"])
        assert all(e["ts_ms"] <= request["now_ms"] for e in request["events"])
    assert len(times) == 50
    assert all(t == sorted(t) for t in times.values())


def test_the_edge_accepts_every_request_of_the_synthetic_recording():
    report = run(*generate(50))
    assert report.errors == {}
    assert report.events > 0
