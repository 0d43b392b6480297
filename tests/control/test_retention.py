"""Telemetry retention (`control_plane/telemetry/retention.py`, `TelemetryStore.prune`):
what is older than the cutoff goes, in batches, and nothing newer; the sessions table
follows its decisions; the recalibrations log stays; reports still run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.telemetry.reports import trigger_report
from control_plane.telemetry.retention import DAY_MS, RetentionScheduler
from control_plane.telemetry.telemetry_store import TelemetryStore
from tests.control.test_report_sessions import HOUR, T0, records
from tests.servers import control_client

CUTOFF = T0 + 36 * HOUR  # the middle of records()'s three days


def stored_in_time_order(path: Path, recs: list[dict[str, Any]]) -> TelemetryStore:
    """As edges deliver: in batches, roughly in the order things happened."""
    store = TelemetryStore(path)
    ordered = sorted(recs, key=lambda r: r["ts_ms"])
    for start in range(0, len(ordered), 97):
        assert not store.ingest(ordered[start:start + 97]).rejected
    return store


def ids(store: TelemetryStore, table: str) -> set[str]:
    column = "decision_id || '/' || trigger" if table == "fires" else "id"
    return {row[0] for row in store.query(f"SELECT {column} FROM {table}")}


def last_decision(recs: list[dict[str, Any]]) -> dict[str, int]:
    last: dict[str, int] = {}
    for r in recs:
        if r["kind"] == "decision":
            last[r["session"]] = max(last.get(r["session"], 0), r["ts_ms"])
    return last


def test_prune_deletes_exactly_what_is_older_than_the_cutoff(tmp_path):
    recs = records(seed=11, sessions=400)
    store = stored_in_time_order(tmp_path / "t.sqlite3", recs)
    store.record_recalibrations([{"ts_ms": T0, "trigger": "a", "model_key": "m",
                                  "segment": "*", "old": 1.0, "new": 2.0, "samples": 300,
                                  "objective": None, "reason": "moved", "revision": 2}])
    before = {table: ids(store, table) for table in ("decisions", "fires", "outcomes")}

    deleted = store.prune(CUTOFF, batch=7)  # many batches

    kept = {r["id"] for r in recs if r["ts_ms"] >= CUTOFF}
    assert ids(store, "decisions") == {i for i in before["decisions"] if i in kept}
    assert ids(store, "outcomes") == {i for i in before["outcomes"] if i in kept}
    assert ids(store, "fires") == {f for f in before["fires"] if f.split("/")[0] in kept}
    assert deleted["decisions"] == len(before["decisions"]) - len(ids(store, "decisions"))
    assert deleted["decisions"] > 100 and len(ids(store, "decisions")) > 100
    sessions = {row[0] for row in store.query("SELECT session FROM sessions")}
    assert sessions == {s for s, ts in last_decision(recs).items() if ts >= CUTOFF}
    assert store.count("recalibrations") == 1
    report = trigger_report(store, 30.0, CUTOFF)  # still reads
    assert {row["trigger"] for row in report["rows"]} == {"a", "b", "c"}


def test_a_record_stored_late_with_an_old_stamp_goes_at_a_later_prune(tmp_path):
    store = stored_in_time_order(tmp_path / "t.sqlite3", records(seed=3, sessions=50))
    late = {"kind": "outcome", "id": "late", "session": "s0", "ts_ms": T0,
            "type": "click"}  # an edge's spool, delivered after an outage
    assert store.ingest([late]).stored == 1
    store.prune(CUTOFF)
    assert "late" in ids(store, "outcomes")  # behind rows that are kept: found later
    newer = [{"kind": "outcome", "id": f"n{i}", "session": "s0", "ts_ms": T0 + 300 * HOUR,
              "type": "click"} for i in range(3)]
    store.ingest(newer)
    store.prune(T0 + 250 * HOUR)  # once everything stored before it is old too
    assert ids(store, "outcomes") == {"n0", "n1", "n2"}


def test_the_schedule_prunes_with_the_configured_retention_and_zero_keeps_all(tmp_path):
    now = int(time.time() * 1000)
    old = {"kind": "decision", "id": "old", "session": "a", "ts_ms": now - 100 * DAY_MS,
           "fired": []}
    recent = {"kind": "decision", "id": "new", "session": "b", "ts_ms": now - DAY_MS,
              "fired": []}
    kept_all = control_client(tmp_path / "zero", TELEMETRY_RETENTION_DAYS=0).application
    kept_all.extensions["telemetry_store"].ingest([old, recent])
    assert RetentionScheduler(kept_all).run_once() is None
    assert ids(kept_all.extensions["telemetry_store"], "decisions") == {"old", "new"}

    app = control_client(tmp_path / "ninety").application  # the default: 90 days
    store = app.extensions["telemetry_store"]
    store.ingest([old, recent])
    assert RetentionScheduler(app).run_once()["decisions"] == 1
    assert ids(store, "decisions") == {"new"}
    assert {row[0] for row in store.query("SELECT session FROM sessions")} == {"b"}


def test_the_cli_prunes_and_says_what_it_deleted(tmp_path):
    data = tmp_path / "control"
    store = TelemetryStore(data / "telemetry.sqlite3")
    now = int(time.time() * 1000)
    store.ingest([{"kind": "decision", "id": f"d{k}", "session": f"s{k}",
                   "ts_ms": now - k * DAY_MS, "fired": []} for k in range(9, -1, -1)])
    ran = CliRunner().invoke(cli, ["prune", "--data-dir", str(data), "--days", "5.5",
                                   "--format", "json"])
    assert ran.exit_code == 0, ran.output
    doc = json.loads(ran.output)
    assert doc["deleted"]["decisions"] == 4 and doc["deleted"]["sessions"] == 4
    assert ids(store, "decisions") == {f"d{k}" for k in range(6)}
    refused = CliRunner().invoke(cli, ["prune", "--data-dir", str(data)],
                                 env={"CONTROL_TELEMETRY_RETENTION_DAYS": "0"})
    assert refused.exit_code != 0 and "--days" in refused.output
