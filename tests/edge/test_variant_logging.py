"""Content variants in the decision log, the telemetry store and the trigger report: which
variant each firing showed, and what visitors did after each."""

from __future__ import annotations

import json
import sqlite3

from control_plane.rulepack import compile_snapshot, load_pack
from control_plane.rulepack.content_catalog import parse_catalog
from control_plane.telemetry.reports import format_table, trigger_report
from control_plane.telemetry.telemetry_store import MIGRATIONS, TelemetryStore
from edge_module.core import decide, load_snapshot
from edge_module.telemetry.decision_log import RecordLimits, decision_record
from tests.factories import T0

CATALOG = """\
content:
  discount-nudge-10:
    description: 10 % discount
    fields: {title: 10 % off}
    variants:
      - {name: mobile, when: {device: mobile}, fields: {style: banner}}
      - {name: de, when: {locale: de}, fields: {title: 10 % Rabatt}}
"""
PACK = """\
pack: p
triggers:
  - id: pricing-discount
    page: /pricing
    when:
      - dwell: ">= 1s"
    action: {content: discount-nudge-10}
"""


def decided(session: str, **context: str) -> tuple[dict, dict]:
    """A decision that fires pricing-discount for a visitor with `context`: request, answer."""
    snap = load_snapshot(json.dumps(compile_snapshot(
        [load_pack(PACK, "p.yaml")], "7", 0, parse_catalog(CATALOG, "catalog.yaml"))))
    req = {"session_id": session, "now_ms": T0 + 2000,
           "context": {"url": "/pricing", **context},
           "events": [{"type": "page_view", "ts_ms": T0, "url": "/pricing"}]}
    response = decide(snap, req, None)
    response.pop("state")
    response["decision_id"] = f"d-{session}"
    return req, response


def decision(session: str, variants: dict | None, fired: tuple[str, ...] = ("pricing-discount",),
             ts: int = T0) -> dict:
    rec = {"kind": "decision", "id": f"d-{session}", "session": session, "ts_ms": ts,
           "revision": "7", "fired": list(fired), "context": {"device": "mobile"}}
    if variants is not None:
        rec["variants"] = variants
    return rec


def outcome(session: str, kind: str, n: int = 0) -> dict:
    return {"kind": "outcome", "id": f"o-{session}-{kind}-{n}", "session": session,
            "ts_ms": T0 + 1000, "trigger": "pricing-discount", "type": kind}


def test_the_decision_record_names_the_variant_each_fired_trigger_showed():
    req, response = decided("s-1", device="mobile", locale="fr")
    assert response["actions"][0]["variant"]["name"] == "mobile"
    rec = decision_record(req, response, T0, "salt", "edge-1")
    assert rec["fired"] == ["pricing-discount"]
    assert rec["variants"] == {"pricing-discount": "mobile"}


def test_a_decision_without_variants_records_none():
    rec = decision_record({"session_id": "s"}, {"actions": [{"trigger": "t", "content": "c"}]},
                          T0, "salt", "edge-1")
    assert "variants" not in rec


def test_logged_variant_names_are_bounded_like_every_field():
    actions = [{"trigger": f"t{i}", "variant": {"name": "v" * 500}} for i in range(100)]
    actions.append({"trigger": "odd", "variant": "not an object"})
    rec = decision_record({"session_id": "s"}, {"actions": actions}, T0, "salt", "edge-1",
                          RecordLimits(max_chars=16, max_items=8))
    assert len(rec["variants"]) == 8
    assert set(rec["variants"].values()) == {"v" * 16}


def test_the_store_keeps_the_variant_of_each_firing(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    result = store.ingest([decision("s-1", {"pricing-discount": "mobile"},
                                    ("pricing-discount", "other"))])
    assert result.stored == 1
    assert sorted(store.query("SELECT trigger, variant FROM fires")) == [
        ("other", None), ("pricing-discount", "mobile")]


def test_a_record_with_malformed_variants_is_rejected_alone(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    result = store.ingest([decision("s-1", {"pricing-discount": 3}), decision("s-2", None)])
    assert result.stored == 1
    assert [(r.index, "variants" in r.reason) for r in result.rejected] == [(0, True)]


def test_a_store_from_before_variants_migrates_and_keeps_its_firings(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (6)")
    for step in MIGRATIONS[:6]:
        step(db)
    db.execute("INSERT INTO fires VALUES ('d-old', 'pricing-discount', 's-0', 1, '6', 'mobile')")
    db.close()
    store = TelemetryStore(path)
    assert store.query("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    assert store.query("SELECT decision_id, variant FROM fires") == [("d-old", None)]


def test_the_report_breaks_each_trigger_down_by_variant(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    store.ingest([
        decision("s-1", {"pricing-discount": "mobile"}), outcome("s-1", "impression"),
        outcome("s-1", "click"),
        decision("s-2", {"pricing-discount": "mobile"}), outcome("s-2", "impression"),
        decision("s-3", {"pricing-discount": "de"}), outcome("s-3", "conversion"),
        decision("s-4", None),  # an edge from before variants
    ])
    report = trigger_report(store, 30.0)
    [row] = report["rows"]
    assert (row["fires"], row["impressions"], row["clicks"], row["conversions"]) == (4, 2, 1, 1)
    assert [(v["variant"], v["fires"], v["sessions"], v["impressions"], v["clicks"],
             v["conversions"], v["false_trigger_rate"]) for v in report["variants"]] == [
        ("de", 1, 1, 0, 0, 1, 0.0), ("mobile", 2, 2, 2, 1, 0, 0.5)]
    table = format_table(report)
    assert "variant" in table and "mobile" in table.split("variant", 1)[1]


def test_a_report_without_variants_has_an_empty_breakdown_and_the_same_table(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    store.ingest([decision("s-1", None)])
    report = trigger_report(store, 30.0)
    assert report["variants"] == []
    assert "variant" not in format_table(report)


def test_from_decision_to_report_the_variant_shown_is_counted(tmp_path):
    store = TelemetryStore(tmp_path / "t.db")
    records = []
    for session, context in (("a", {"device": "mobile"}), ("b", {"locale": "de-CH"}),
                             ("c", {})):
        req, response = decided(session, **context)
        records.append(decision_record(req, response, T0 + 2000, "salt", "edge-1"))
    store.ingest(records)
    assert [(v["variant"], v["fires"]) for v in trigger_report(store, 30.0)["variants"]] == [
        ("de", 1), ("default", 1), ("mobile", 1)]
