"""The adaptive loop end to end: simulated visitors at a real edge, telemetry to a real
control plane, recalibration, a new snapshot published and served with moved thresholds."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.publishing import publish
from control_plane.recalibration import Settings, best_threshold, recalibrate
from control_plane.reports import trigger_report
from control_plane.rulepack import load_pack_set
from edge_module.edge_store import LocalFolderStore
from loadtest.evaluate_adaptive import PACK
from loadtest.population import population, run
from tests.control_server import ControlServer
from tests.servers import EDGE_TOKEN, TEST_KEY, control_config, http, running_edge, wait_for

KEY = "pricing-discount#1"


def adaptive_packs(tmp_path: Path) -> list:
    path = tmp_path / "packs" / "pricing-adaptive.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PACK.format(name="adaptive", condition="{gte: 0.7, mode: adaptive}"))
    return load_pack_set([path], check_content=False).packs


def mobile_visit(session: str, depth: float) -> dict:
    t = 1_764_300_000_000
    return {"session_id": session, "now_ms": t + 5000,
            "context": {"url": "/pricing", "device": "mobile"},
            "events": [{"type": "page_view", "ts_ms": t, "url": "/pricing"},
                       {"type": "scroll", "ts_ms": t + 1000, "depth": depth, "y": 10}]}


def test_the_threshold_sits_between_the_peaks_it_separates():
    points = [(0.5, False), (0.6, False), (0.8, True), (0.9, True)]
    assert best_threshold(points, penalty=0.5) == (0.7, 2.0)


def test_feedback_moves_thresholds_and_the_edge_serves_them(tmp_path):
    store = tmp_path / "store"
    packs = adaptive_packs(tmp_path)
    first = publish(LocalFolderStore(store), packs, TEST_KEY)
    config = control_config(tmp_path)
    control = ControlServer(config)
    try:
        with running_edge(store, control_url=control.url, token=EDGE_TOKEN,
                          telemetry_interval_s=0.05) as edge:
            assert edge.decide(mobile_visit("before", 0.8))[1]["actions"]  # 0.8 >= 0.7
            decisions = 1

            def decide(request: dict) -> dict:
                nonlocal decisions
                status, body, _ = edge.decide(request)
                assert status == 200
                decisions += 1
                return body

            def report(body: dict) -> None:
                assert http("POST", edge.url + "/v1/outcome", body)[0] == 200

            run(population(160, seed=5, start_ms=1_764_200_000_000), decide, report)
            telemetry = control.telemetry()
            wait_for(lambda: telemetry.count("decisions") == decisions, timeout_s=60,
                     what="every decision stored")

            result = recalibrate(LocalFolderStore(store), telemetry, TEST_KEY,
                                 Settings(min_samples=20, min_engaged=3))
            assert result.published is not None and result.published.revision == \
                first.revision + 1
            moved = result.thresholds[KEY]
            assert moved["mobile"] > 0.8 and 0.65 < moved["desktop"] < 0.75
            wait_for(lambda: edge.health()["revision"] == str(result.published.revision),
                     what="the edge to serve the recalibrated snapshot")
            assert edge.decide(mobile_visit("after", 0.8))[1]["actions"] == []
            assert edge.decide(mobile_visit("keen", 0.95))[1]["actions"]
            why = telemetry.query("SELECT segment, old, new, reason FROM recalibrations "
                                  "WHERE segment = 'mobile'")
            assert why and why[0][1] == 0.7 and why[0][2] == moved["mobile"]

            rows = trigger_report(telemetry)["rows"]
            mobile = [r for r in rows if r["device"] == "mobile"
                      and r["revision"] == str(first.revision)]
            assert mobile and mobile[0]["fires"] > 0 and mobile[0]["false_trigger_rate"] > 0
    finally:
        control.stop()


def test_the_cli_reports_and_recalibrates_dry(tmp_path):
    store = tmp_path / "store"
    packs = adaptive_packs(tmp_path)
    publish(LocalFolderStore(store), packs, TEST_KEY)
    config = control_config(tmp_path)
    from control_plane.telemetry_store import TelemetryStore
    from loadtest.evaluate_adaptive import collect, compile_pack

    data = Path(config["DATA_DIR"])
    collect(compile_pack("adaptive", "{gte: 0.7, mode: adaptive}"),
            population(150, seed=3), TelemetryStore(data / "telemetry.sqlite3"))
    (data / "packs").mkdir(parents=True, exist_ok=True)
    (data / "packs" / "pricing-adaptive.yaml").write_text(
        (tmp_path / "packs" / "pricing-adaptive.yaml").read_text())
    runner = CliRunner()
    shown = runner.invoke(cli, ["report", "--registry", str(data)])
    assert shown.exit_code == 0 and "pricing-discount" in shown.output
    dry = runner.invoke(cli, ["recalibrate", "--registry", str(data), "--store", str(store),
                              "--dry-run", "--min-samples", "20", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.output)
    assert doc["published"] is None and doc["thresholds"][KEY]["mobile"] > 0.8
    assert runner.invoke(cli, ["audit", "--registry", str(data)]).exit_code in (0, 1)
