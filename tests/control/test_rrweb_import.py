"""`trigger-engine import rrweb`: recordings made by the real rrweb recorder in Chromium on the
demo store (tests/data/rrweb/, made by loadtest/record_rrweb.py) are converted into what the
browser SDK would have sent, checked against what Playwright really did on those pages."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from control_plane.authoring.rrweb_import import (
    CADENCE_MS,
    INPUT_SAMPLE_MS,
    MOUSE_SAMPLE_MS,
    CustomMapping,
    ImportReport,
    convert,
    import_recordings,
)
from control_plane.cli import cli

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
DATA = ROOT / "tests" / "data" / "rrweb"
RECORDINGS = ["pricing-reader", "half-reader", "cart-abandoner", "checkout-typist"]
ABANDON = "click:#abandon-cart=cart_abandon"


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def requests_of(name: str, *mappings: str) -> list[dict[str, Any]]:
    requests, _ = import_recordings([DATA / f"{name}.json"],
                                    mappings=[CustomMapping.parse(m) for m in mappings])
    return requests


def events_of(name: str, kind: str | None = None) -> list[dict[str, Any]]:
    events = [e for r in requests_of(name) for e in r["events"]]
    return [e for e in events if kind is None or e["type"] == kind]


def actions_of(name: str, kind: str) -> list[dict[str, Any]]:
    return [a for a in json.loads((DATA / f"{name}.actions.json").read_text())
            if a["action"] == kind]


# what the page really did ----------------------------------------------------------------

@pytest.mark.parametrize("name", RECORDINGS)
def test_each_page_loaded_is_a_page_view_of_its_path_when_it_loaded(name):
    views = events_of(name, "page_view")
    pages = actions_of(name, "page")
    assert [v["url"] for v in views] == [p["path"] for p in pages]
    for view, page in zip(views, pages, strict=True):
        assert 0 <= page["t"] - view["ts_ms"] < 1500  # rrweb starts before the page settles


@pytest.mark.parametrize("name", ["pricing-reader", "half-reader"])
def test_each_scroll_is_the_depth_the_page_had_at_that_position(name):
    scrolls = events_of(name, "scroll")
    for done in actions_of(name, "scroll"):
        depth = min(1.0, round((done["y"] + done["vh"]) / done["h"], 3))
        match = [s for s in scrolls if s["y"] == done["y"]]
        assert match, f"no scroll to y={done['y']}"
        assert match[0]["depth"] == pytest.approx(depth, abs=0.001)
        assert 0 <= done["t"] - match[0]["ts_ms"] < 500


def test_the_reader_reaches_the_bottom_and_the_half_reader_half_the_page():
    assert max(s["depth"] for s in events_of("pricing-reader", "scroll")) == 1.0
    assert max(s["depth"] for s in events_of("half-reader", "scroll")) == pytest.approx(0.5,
                                                                                       abs=0.01)


def test_a_click_names_the_element_clicked_at_the_time_it_was_clicked():
    clicks = events_of("cart-abandoner", "click")
    (done,) = actions_of("cart-abandoner", "click")
    assert [c["target"] for c in clicks] == [done["selector"]]
    assert done["t"] <= clicks[0]["ts_ms"] <= done["t_end"]


def test_typing_is_input_on_the_typed_field_while_it_was_typed_sampled_per_field():
    inputs = events_of("checkout-typist", "input")
    typed = actions_of("checkout-typist", "type")
    assert {i["target"] for i in inputs} == {f"#{t['field']}" for t in typed}
    for t in typed:
        own = [i["ts_ms"] for i in inputs if i["target"] == f"#{t['field']}"]
        assert own and all(t["t"] <= ts <= t["t_end"] for ts in own)
        assert all(b - a >= INPUT_SAMPLE_MS for a, b in pairwise(own))


def test_focus_moves_from_field_to_field_as_the_visitor_clicked_them():
    events = events_of("checkout-typist")
    moves = [(e["type"], e["target"]) for e in events if e["type"] in ("focus", "blur")]
    fields = [f"#{t['field']}" for t in actions_of("checkout-typist", "type")]
    expected = [("focus", fields[0])]
    for before, after in pairwise(fields):
        expected += [("blur", before), ("focus", after)]
    assert moves == expected


def test_no_typed_text_reaches_the_output():
    typed = {e["data"]["text"] for e in json.loads((DATA / "checkout-typist.json").read_text())
             if e["type"] == 3 and e["data"].get("source") == 5}
    requests = requests_of("checkout-typist")
    strings = [str(v) for r in requests for e in r["events"] for v in e.values()
               if not isinstance(v, (int, float))]
    assert typed and not [t for t in typed if len(t) >= 2 and any(t in s for s in strings)]
    assert '"text"' not in json.dumps(requests)


# batched as the SDK sends ----------------------------------------------------------------

@pytest.mark.parametrize("name", RECORDINGS)
def test_events_travel_in_batches_of_at_most_the_cadence(name):
    for request in requests_of(name, ABANDON):
        stamps = [e["ts_ms"] for e in request["events"]]
        assert stamps == sorted(stamps) and request["now_ms"] >= stamps[-1]
        assert request["now_ms"] - stamps[0] <= CADENCE_MS
        urgent = [e["ts_ms"] for e in request["events"]
                  if e["type"] in ("click", "page_view", "custom")]
        assert all(ts == request["now_ms"] for ts in urgent)  # sent at once


@pytest.mark.parametrize("name", ["pricing-reader", "half-reader"])
def test_mouse_moves_are_sampled_every_50_ms(name):
    stamps = [e["ts_ms"] for e in events_of(name, "mousemove")]
    assert stamps and all(b - a >= MOUSE_SAMPLE_MS for a, b in pairwise(stamps))


def test_the_custom_mapping_sends_the_sites_event_with_the_click():
    (request,) = [r for r in requests_of("cart-abandoner", ABANDON)
                  if any(e["type"] == "click" for e in r["events"])]
    kinds = [(e["type"], e.get("target") or e.get("name")) for e in request["events"]]
    assert kinds[-2:] == [("click", "#abandon-cart"), ("custom", "cart_abandon")]
    assert not [e for e in events_of("cart-abandoner") if e["type"] == "custom"]


def test_requests_are_what_the_edge_reads():
    for request in requests_of("cart-abandoner", ABANDON):
        assert set(request) == {"session_id", "now_ms", "context", "events"}
        assert request["session_id"] == "rrweb-cart-abandoner"
        assert request["context"]["url"].startswith("/")


# unknown and malformed ------------------------------------------------------------------

def recording(tmp_path: Path, events: Any, name: str = "odd.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(events))
    return path


def good_start() -> list[Any]:
    return [{"type": 4, "timestamp": 1000, "data": {"href": "http://x/pricing", "height": 500}},
            {"type": 2, "timestamp": 1001, "data": {"node": {"type": 0, "id": 1, "childNodes": []},
                                                    "initialOffset": {"top": 0, "left": 0}}},
            {"type": 5, "timestamp": 1002, "data": {"tag": "document-height",
                                                    "payload": {"height": 1000}}}]


def test_unknown_and_malformed_events_are_counted_not_fatal():
    events = good_start() + [
        {"type": 99, "timestamp": 1100, "data": {}},
        {"type": 3, "timestamp": 1200, "data": {"source": 42}},
        {"type": 3, "timestamp": 1300, "data": {"source": 3, "id": 1}},
        {"type": 3, "timestamp": 1400, "data": {"source": 1, "positions": "many"}},
        {"type": 3, "timestamp": 1500},
        "not an event",
        {"type": 3, "timestamp": 1600, "data": {"source": 3, "id": 1, "y": 500}},
    ]
    report = ImportReport()
    requests = convert(events, "s", report)
    assert sum(report.unknown.values()) == 2
    assert sum(report.malformed.values()) == 4
    depths = [e["depth"] for r in requests for e in r["events"] if e["type"] == "scroll"]
    assert depths == [0.5, 1.0]  # the good scroll after the bad ones still counts


def test_scrolls_without_a_document_height_are_counted_as_not_converted():
    events = good_start()[:2] + [{"type": 3, "timestamp": 1600,
                                  "data": {"source": 3, "id": 1, "y": 500}}]
    report = ImportReport()
    requests = convert(events, "s", report)
    assert report.not_converted["scroll without document height"] == 1
    assert [e["type"] for r in requests for e in r["events"]] == ["page_view"]


def test_the_command_summarises_on_stderr_and_writes_the_report(tmp_path):
    odd = recording(tmp_path, good_start() + [{"type": 99, "timestamp": 1100, "data": {}}])
    out, report = tmp_path / "sessions.jsonl", tmp_path / "report.json"
    result = invoke("import", "rrweb", odd, "-o", out, "--report", report)
    assert result.exit_code == 0, result.output
    assert "1 rrweb event(s) unknown (type 99: 1)" in result.stderr
    doc = json.loads(report.read_text())
    assert doc["unknown"] == {"type 99": 1}
    assert doc["recordings"][0]["session_id"] == "rrweb-odd"
    assert len(out.read_text().splitlines()) == doc["recordings"][0]["requests"]


def test_a_file_that_is_not_json_is_an_error_naming_the_file_and_position(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"type": 4, "timestamp": 1,\n  "data": {"href": ')
    result = invoke("import", "rrweb", broken, "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 2
    assert "broken.json: line 2, column" in result.output
    assert "Traceback" not in result.output


def test_a_json_document_that_is_not_a_list_of_events_is_an_error(tmp_path):
    result = invoke("import", "rrweb", recording(tmp_path, {"a": 1}), "-o", tmp_path / "o")
    assert result.exit_code != 0 and "odd.json: top level" in result.output


def test_a_malformed_custom_mapping_is_a_usage_error(tmp_path):
    result = invoke("import", "rrweb", DATA / "cart-abandoner.json", "-o", tmp_path / "o",
                    "--custom", "#abandon-cart=cart_abandon")
    assert result.exit_code == 2 and "EVENT:SELECTOR=NAME" in result.output


# then simulate ---------------------------------------------------------------------------

def simulated(tmp_path: Path, name: str, *options: str) -> dict[str, int]:
    out = tmp_path / f"{name}.jsonl"
    assert invoke("import", "rrweb", DATA / f"{name}.json", "-o", out, *options).exit_code == 0
    result = invoke("simulate", RULES, "--sessions", out, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["errors"] == {}
    return {t["trigger"]: t["sessions"] for t in doc["triggers"] if t["sessions"]}


def test_simulate_fires_the_discount_for_the_reader_who_read_to_the_bottom(tmp_path):
    assert simulated(tmp_path, "pricing-reader") == {"pricing-discount": 1}


def test_simulate_fires_nothing_for_the_reader_who_stopped_at_half(tmp_path):
    assert simulated(tmp_path, "half-reader") == {}


def test_simulate_reminds_the_cart_abandoner_with_the_custom_mapping(tmp_path):
    assert simulated(tmp_path, "cart-abandoner", "--custom", ABANDON) == {"checkout-reminder": 1}
    assert simulated(tmp_path, "cart-abandoner") == {}  # rrweb alone never sees the custom event


def test_simulate_fires_nothing_for_the_visitor_filling_in_the_checkout_form(tmp_path):
    assert simulated(tmp_path, "checkout-typist", "--custom", ABANDON) == {}
