"""The decision report travels to the log, never to the visitor (issue #12, contract A):
the real HTTP edge strips it, the decision record keeps a bounded, sanitised copy, and the
control plane's telemetry store keeps it per decision."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.telemetry.telemetry_store import (
    MIGRATIONS,
    TelemetryError,
    TelemetryStore,
    check_record,
)
from edge_module.core.features import SESSION_FEATURES
from edge_module.telemetry.decision_log import RecordLimits, decision_record
from edge_module.telemetry.log_spool import read_batch
from tests.factories import T0
from tests.report_snapshots import LEARNING, text
from tests.servers import EDGE_TOKEN, http, put_snapshot, running_edge


def engaged(session: str) -> dict[str, Any]:
    return {"session_id": session, "now_ms": T0 + 4000, "context": {"url": "/", "device": "mobile"},
            "events": [{"type": "page_view", "ts_ms": T0, "url": "/"},
                       {"type": "scroll", "ts_ms": T0 + 500, "depth": 0.9, "y": 900},
                       {"type": "hover", "ts_ms": T0 + 700, "target": "#cta",
                        "duration_ms": 120}]}


def test_the_visitor_never_sees_the_report_and_the_log_keeps_it(tmp_path, free_port):
    put_snapshot(tmp_path / "store", text(LEARNING), 1)
    with running_edge(tmp_path / "store", control_url=f"http://127.0.0.1:{free_port}",
                      token=EDGE_TOKEN) as edge:
        status, body, _ = edge.decide(engaged("visitor-1"))
        assert status == 200 and "report" not in body
        assert [a["trigger"] for a in body["actions"]] == ["deep", "keen"]
        raw = http("POST", edge.url + "/v1/decide", {"session_id": "visitor-1",
                                                     "now_ms": T0 + 5000})
        assert raw[0] == 200 and "report" not in raw[1]
        log = edge.host.app.decision_log
        assert log is not None and log.flush() is not None
        records = [r for f in log.spool_files() for r in read_batch(f)]
    first, second = (r for r in records if r["kind"] == "decision")
    assert first["id"] == body["decision_id"]
    session = first["report"]["session"]
    assert session["dwell_ms"] == 4000 and session["depth"] == 0.9 and session["hovers"] == 1
    deep = first["report"]["triggers"]["deep"]
    assert deep["values"] == {"deep#0": 4000, "deep#1": 0.9, "deep#2": 0.0}
    assert deep["holds"] is True and deep["policy"] in ("learned", "explore")
    assert second["report"]["triggers"] == {}  # both capped on this page
    assert "features" in first  # the per-batch features stay for earlier readers


HOSTILE_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70), st.booleans(),
    st.none(), st.text(max_size=300), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
HOSTILE_KEYS = st.one_of(st.text(max_size=400), st.integers())


@given(report=st.one_of(
    HOSTILE_VALUES,
    st.fixed_dictionaries({
        "session": st.one_of(HOSTILE_VALUES, st.dictionaries(
            st.one_of(HOSTILE_KEYS, st.sampled_from(SESSION_FEATURES)), HOSTILE_VALUES,
            max_size=60)),
        "triggers": st.one_of(HOSTILE_VALUES, st.dictionaries(
            HOSTILE_KEYS, st.one_of(HOSTILE_VALUES, st.fixed_dictionaries({
                "values": st.dictionaries(HOSTILE_KEYS, HOSTILE_VALUES, max_size=40),
                "intent": HOSTILE_VALUES, "policy": HOSTILE_VALUES, "holds": HOSTILE_VALUES,
                "p_fire": HOSTILE_VALUES, "extra": HOSTILE_VALUES})), max_size=40)),
        "extra": HOSTILE_VALUES})))
@settings(max_examples=60, deadline=None)
def test_a_hostile_report_is_bounded_and_sanitised(report):
    limits = RecordLimits()
    rec = decision_record({"session_id": "s"}, {"report": report}, T0, "salt", "edge", limits)
    if type(report) is not dict:
        assert "report" not in rec
        return
    kept = rec["report"]
    json.dumps(kept, allow_nan=False)  # finite numbers only: always storable
    assert set(kept) == {"session", "triggers"}
    assert len(kept["triggers"]) <= limits.max_report_triggers
    for name, value in kept["session"].items():
        assert name in SESSION_FEATURES
        assert type(value) in (int, float) and -2**63 <= value < 2**63
    for tid, entry in kept["triggers"].items():
        assert len(tid) <= limits.max_chars
        assert set(entry) <= {"values", "intent", "policy", "holds", "p_fire"}
        assert len(entry["values"]) <= limits.max_report_values
        for key, value in entry["values"].items():
            assert len(key) <= limits.max_chars and type(value) in (int, float, type(None))
        assert entry.get("policy", "learned") in ("learned", "explore", "holdout")
        assert type(entry.get("holds", True)) is bool
        assert 0 <= entry.get("p_fire", 0) <= 1
        assert type(entry.get("intent", 0.0)) in (int, float)
    assert len(json.dumps(kept)) < 64 * 1024  # within the store's bound for it
    check_record(rec, 1)  # and the store takes it


def test_the_report_bounds_have_defaults_and_settings():
    many = {"session": {}, "triggers": {f"t{k}": {"values": {f"t{k}#{i}": i for i in range(40)}}
                                        for k in range(40)}}
    rec = decision_record({}, {"report": many}, T0, "salt", "edge",
                          RecordLimits(max_report_triggers=3, max_report_values=2))
    assert list(rec["report"]["triggers"]) == ["t0", "t1", "t2"]
    assert rec["report"]["triggers"]["t0"]["values"] == {"t0#0": 0, "t0#1": 1}
    default = decision_record({}, {"report": many}, T0, "salt", "edge")["report"]
    assert len(default["triggers"]) == 16 and len(default["triggers"]["t0"]["values"]) == 16
    from edge_module.host.config import EdgeConfig

    config = EdgeConfig.from_env({"EDGE_TELEMETRY_MAX_REPORT_TRIGGERS": "4",
                                  "EDGE_TELEMETRY_MAX_REPORT_VALUES": "5"})
    assert (config.telemetry_max_report_triggers, config.telemetry_max_report_values) == (4, 5)


# -- the control plane keeps it ------------------------------------------------------------------

def record(rid: str, report: Any = None) -> dict[str, Any]:
    rec = decision_record(engaged("s"), {"decision_id": rid, "revision": "r1", "actions": [],
                                         "report": report}, T0, "salt", "edge")
    return rec


REPORT = {"session": {"dwell_ms": 4000, "depth": 0.9},
          "triggers": {"deep": {"values": {"deep#0": 4000, "deep#1": 0.9, "deep#2": None},
                                "policy": "explore", "holds": False, "p_fire": 0.95}}}


def test_the_telemetry_store_keeps_the_report_of_each_decision(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite3")
    answer = store.ingest([record("d1", REPORT), record("d2"),
                           {**record("d3"), "report": [1, 2]},
                           {**record("d4"), "report": {"session": {"x": float("inf")}}}])
    assert answer.stored == 2
    assert [r.index for r in answer.rejected] == [2, 3]
    rows = dict(store.query("SELECT id, report FROM decisions ORDER BY id"))
    assert json.loads(rows["d1"]) == REPORT and rows["d2"] is None


def test_a_store_from_before_the_report_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (4)")
    for step in MIGRATIONS[:4]:
        step(db)
    db.execute("INSERT INTO decisions (id, ts_ms, session, fired, suppressed, features) "
               "VALUES ('old', 1, 's', '[]', '[]', '{}')")
    db.close()
    store = TelemetryStore(path)
    assert store.query("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    assert store.query("SELECT report FROM decisions WHERE id = 'old'") == [(None,)]
    assert store.ingest([record("new", REPORT)]).stored == 1


def test_an_oversized_report_is_refused_with_its_reason():
    huge = {"session": {f"k{i}": i for i in range(20_000)}, "triggers": {}}
    with pytest.raises(TelemetryError, match="report is over"):
        check_record({**record("d"), "report": huge}, 1)

