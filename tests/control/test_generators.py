"""The labelled populations of loadtest.generators: reproducible, accepted by the real
decision core, and as hard as promised (overlapping signals, per-device behaviour,
realistic conversion rates, a modest nudge effect)."""

from __future__ import annotations

import bisect
import json
import statistics
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from control_plane.rulepack import compile_snapshot, load_pack_set
from edge_module.core import decide, load_snapshot
from loadtest import generators

RULES = Path(__file__).resolve().parents[2] / "rules"
SHAPES = sorted(generators.SHAPES)


@cache
def population(shape: str, n: int = 600, seed: int = 5) -> list[dict[str, Any]]:
    return list(generators.sessions(shape, n, seed))


def pricing_peaks(session: dict[str, Any]) -> tuple[int, float]:
    """The longest dwell and deepest scroll a request moment on /pricing shows."""
    dwell, depth, url, pv, seen = 0, 0.0, None, 0, 0.0
    for req in session["requests"]:
        for ev in req["events"]:
            if ev["type"] == "page_view":
                url, pv, seen = ev["url"], ev["ts_ms"], 0.0
            elif ev["type"] == "scroll":
                seen = max(seen, ev["depth"])
        if url == "/pricing":
            dwell, depth = max(dwell, req["now_ms"] - pv), max(depth, seen)
    return dwell, depth


def auc(high: list[float], low: list[float]) -> float:
    """P(a high-intent value > a low-intent one), ties counted half."""
    low = sorted(low)
    wins = sum(bisect.bisect_left(low, x) + (bisect.bisect_right(low, x)
                                             - bisect.bisect_left(low, x)) / 2 for x in high)
    return wins / (len(high) * len(low))


@pytest.mark.parametrize("shape", SHAPES)
def test_a_seed_gives_the_same_population_and_another_seed_another(shape: str) -> None:
    first = list(generators.sessions(shape, 20, seed=3))
    assert first == list(generators.sessions(shape, 20, seed=3))
    assert first != list(generators.sessions(shape, 20, seed=4))


@pytest.mark.parametrize("shape", SHAPES)
def test_sessions_are_labelled_wire_requests_the_core_accepts(shape: str) -> None:
    snap = load_snapshot(json.dumps(compile_snapshot(
        load_pack_set([RULES], check_content=False).packs, "1", 0)))
    for session in population(shape)[:40]:
        assert set(session) == {"session_id", "intent", "requests", "convert_p_if_nudged",
                                "convert_p_baseline"}
        assert session["intent"] in ("high", "low")
        state, last = None, 0
        for req in session["requests"]:
            assert req["session_id"] == session["session_id"]
            assert {"url", "device", "country", "local_hour"} <= set(req["context"])
            assert all(last < ev["ts_ms"] <= req["now_ms"] for ev in req["events"])
            last = req["now_ms"]
            state = decide(snap, req, state)["state"]  # raises on anything it refuses


@pytest.mark.parametrize("shape", SHAPES)
def test_batches_come_about_every_second_and_visits_span_pages(shape: str) -> None:
    gaps = [b["now_ms"] - a["now_ms"] for s in population(shape)
            for a, b in zip(s["requests"], s["requests"][1:])]
    assert 700 <= statistics.mean(gaps) <= 1500
    assert len(set(gaps)) > 100  # a rhythm per visitor, jittered
    urls = [{r["context"]["url"] for r in s["requests"]} for s in population(shape)]
    assert sum(len(u) > 1 for u in urls) > len(urls) * 0.2
    assert sum("/pricing" in u for u in urls) > len(urls) * 0.6
    high = [u for u, s in zip(urls, population(shape)) if s["intent"] == "high"]
    assert all("/pricing" in u for u in high)  # a pricing trigger can reach every one


@pytest.mark.parametrize("shape", SHAPES)
def test_neither_dwell_nor_depth_alone_separates_intent(shape: str) -> None:
    peaks = [(s["intent"] == "high", pricing_peaks(s)) for s in population(shape)]
    for i in (0, 1):
        high = [p[i] for h, p in peaks if h]
        low = [p[i] for h, p in peaks if not h]
        assert 0.5 < auc(high, low) < 0.9


@pytest.mark.parametrize("shape", SHAPES)
def test_devices_behave_differently(shape: str) -> None:
    by_device: dict[str, list[tuple[int, float]]] = {}
    for s in population(shape):
        peaks = pricing_peaks(s)
        if peaks[0]:
            by_device.setdefault(s["requests"][0]["context"]["device"], []).append(peaks)
    assert set(by_device) == {"mobile", "desktop", "tablet"}
    mobile, desktop = by_device["mobile"], by_device["desktop"]
    dwell_ratio = statistics.median(d for d, _ in desktop) / statistics.median(
        d for d, _ in mobile)
    depth_gap = abs(statistics.median(x for _, x in desktop)
                    - statistics.median(x for _, x in mobile))
    assert dwell_ratio > 1.15 or depth_gap > 0.05


@pytest.mark.parametrize("shape", SHAPES)
def test_conversions_are_rare_intent_is_a_minority_and_the_nudge_helps_modestly(
        shape: str) -> None:
    people = population(shape)
    high = [s for s in people if s["intent"] == "high"]
    low = [s for s in people if s["intent"] == "low"]
    assert 0.10 <= len(high) / len(people) <= 0.35
    assert 0.005 <= statistics.mean(s["convert_p_baseline"] for s in low) <= 0.06
    assert 0.05 <= statistics.mean(s["convert_p_baseline"] for s in high) <= 0.35
    for s in people:
        lift = s["convert_p_if_nudged"] / s["convert_p_baseline"]
        assert 1.09 <= lift <= 1.51


def test_the_command_lists_shapes_and_writes_json_lines(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert generators.main(["--list"]) == 0
    assert set(SHAPES) <= {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    out = tmp_path / "leavers.jsonl"
    assert generators.main(["--shape", "leavers", "--sessions", "7", "--seed", "2",
                            "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == list(generators.sessions("leavers", 7, 2))
