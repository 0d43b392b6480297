"""The learning loop through the CLI (the loop itself: tests/control/test_learning.py and
tests/control/test_evaluate.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.distribution.keys import KeyRing, SigningKey
from control_plane.distribution.publishing import publish
from control_plane.rulepack import load_pack_set
from tests.servers import control_config, vouched

KEY = "pricing-discount#1"


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "adaptive-pricing.yaml"


def own_key(config: dict) -> SigningKey:
    """The control plane's signing key: it reads only what it signed (manifest_trust)."""
    return KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"]).active()


def adaptive_packs(tmp_path: Path) -> list:
    return load_pack_set([EXAMPLE], check_content=False).packs


def test_the_cli_recalibrates_dry_and_lists_what_it_decided(tmp_path):
    store = tmp_path / "store"
    config = control_config(tmp_path)
    publish(vouched(store), adaptive_packs(tmp_path), own_key(config))
    data = Path(config["DATA_DIR"])
    from control_plane.telemetry.telemetry_store import TelemetryStore
    TelemetryStore(data / "telemetry.sqlite3")  # an empty store: no sessions yet
    runner = CliRunner()
    dry = runner.invoke(cli, ["recalibrate", "--data-dir", str(data), "--store", str(store),
                              "--dry-run", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.output)
    assert doc["published"] is None
    assert doc["changes"] and all("too few samples" in c["reason"] for c in doc["changes"])
    listed = runner.invoke(cli, ["recalibrations", "--data-dir", str(data), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)["recalibrations"]
    assert rows and rows[0]["trigger"] == "pricing-discount" and rows[0]["new"] is None
    text = runner.invoke(cli, ["recalibrations", "--data-dir", str(data)]).output
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(rows[0]["ts_ms"] / 1000))
    assert text.startswith(f"{when} pricing-discount "), text  # a time people read


def _decision(report: dict, **fields) -> dict:
    import time
    return {"kind": "decision", "id": "d1", "session": "s1", "ts_ms": int(time.time() * 1000),
            "context": {"url": "/pricing", "device": "desktop"}, "fired": [],
            "report": report, **fields}


def test_a_number_no_float_holds_is_refused_at_ingest_naming_its_field():
    """10**400 is valid JSON within every size bound; stored, it stopped the learning
    loop (float() raises on it) for as long as it stayed in the learning window."""
    import pytest

    from control_plane.telemetry.telemetry_store import TelemetryError, check_record

    huge = 10**400
    for record, field in [(_decision({"session": {"dwell_ms": huge}}), "report"),
                          (_decision({"triggers": {"t": {"values": {"x": [-huge]}}}}), "report"),
                          (_decision({}, features={"dwell_ms": huge}), "features")]:
        with pytest.raises(TelemetryError) as refused:
            check_record(record, 1)
        assert refused.value.message.startswith(field) and "2^53" in refused.value.message
    assert check_record(_decision({"session": {"dwell_ms": 2**53, "depth": -2**53}}), 1)


def test_the_loop_reads_past_a_number_no_float_holds_stored_before_ingest_refused_it(tmp_path):
    import sqlite3
    import time

    from control_plane.telemetry.telemetry_store import TelemetryStore

    store = tmp_path / "store"
    config = control_config(tmp_path)
    publish(vouched(store), adaptive_packs(tmp_path), own_key(config))
    data = Path(config["DATA_DIR"])
    TelemetryStore(data / "telemetry.sqlite3")
    huge = 10**400
    report = {"session": {"dwell_ms": huge, "max_depth": 0.5},
              "triggers": {"pricing-discount": {"values": {"dwell": huge}, "intent": huge}}}
    with sqlite3.connect(data / "telemetry.sqlite3") as db:
        db.execute("INSERT INTO decisions (id, ts_ms, session, device, url, fired, suppressed,"
                   " features, report) VALUES ('d1', ?, 's1', 'desktop', '/pricing', '[]', "
                   "'[]', '{}', ?)", (int(time.time() * 1000) - 60_000, json.dumps(report)))
    run = CliRunner().invoke(cli, ["recalibrate", "--data-dir", str(data), "--store",
                                   str(store), "--dry-run", "--format", "json"])
    assert run.exit_code == 0, run.output
    assert all("too few samples" in c["reason"] for c in json.loads(run.output)["changes"])
