"""The console's experiments, learning and audit pages (Flask's test client against the real
app, real telemetry store and edge store): their numbers are the report functions', their
plots have a point per data point, the sample-ratio check warns on a skewed split only, and
names from packs and telemetry are escaped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.telemetry.reports import (
    SRM_P,
    chi2_sf,
    experiment_report,
    format_experiment,
    rate_interval,
    sample_ratio_mismatch,
)
from control_plane.telemetry.telemetry_store import TelemetryStore
from tests.servers import control_client

SPLIT = {"adaptive": 45.0, "static": 45.0, "holdout": 10.0}


# The sample-ratio check


@pytest.mark.parametrize("x, df, p", [(3.841459, 1, 0.05), (5.991465, 2, 0.05),
                                      (10.827566, 1, 0.001), (13.815511, 2, 0.001),
                                      (7.814728, 3, 0.05), (9.487729, 4, 0.05),
                                      (0.0, 2, 1.0)])
def test_chi_square_tail_matches_the_tables(x: float, df: int, p: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-5)


def test_a_fair_split_is_no_mismatch() -> None:
    srm = sample_ratio_mismatch({"adaptive": 452, "static": 446, "holdout": 102}, SPLIT)
    # (452-450)²/450 + (446-450)²/450 + (102-100)²/100
    assert srm["chi2"] == pytest.approx(0.0844, abs=1e-3) and srm["df"] == 2
    assert srm["p"] > 0.9 and srm["mismatch"] is False


def test_a_skewed_split_is_a_mismatch() -> None:
    srm = sample_ratio_mismatch({"adaptive": 520, "static": 400, "holdout": 80}, SPLIT)
    assert srm["expected"] == {"adaptive": 450.0, "static": 450.0, "holdout": 100.0}
    assert srm["p"] < SRM_P and srm["mismatch"] is True


def test_sessions_in_an_arm_declared_at_zero_are_a_mismatch() -> None:
    srm = sample_ratio_mismatch({"adaptive": 500, "static": 490, "holdout": 3},
                                {"adaptive": 50.0, "static": 50.0, "holdout": 0.0})
    assert srm["mismatch"] is True and srm["p"] == 0.0 and "holdout" in srm["note"]


def test_too_few_sessions_are_not_tested() -> None:
    srm = sample_ratio_mismatch({"adaptive": 20, "static": 20, "holdout": 1}, SPLIT)
    assert srm["p"] is None and srm["mismatch"] is False
    assert srm["note"].startswith("not enough sessions")


def test_the_rate_interval_is_wilsons() -> None:
    # 60 of 200: Wilson 95 % interval 0.2407..0.3668 (statsmodels proportion_confint wilson)
    assert rate_interval(60, 200) == pytest.approx([0.2407, 0.3668], abs=1e-4)
    assert rate_interval(0, 40)[0] == 0.0 and rate_interval(0, 0) is None


# Data: an experiment published through the API, sessions through the telemetry store

NOW = 1_796_000_000_000  # within the console's longest period of the tests' clock
PACK = """\
pack: {name}
settings:
  experiment: {{salt: q4, adaptive: 45%, static: 45%, holdout: 10%}}
models:
  thresholds:
    "{trigger}#0": {{"*": 60%}}
triggers:
  - id: "{trigger}"
    page: /pricing
    when:
      - scroll_depth: {{gte: 80%, mode: adaptive}}
    action: {{content: discount-nudge-10}}
"""


def publish_experiment(api: Any, trigger: str = "exp-t") -> None:
    assert api.put("/v1/packs/exp", data=PACK.format(name="exp", trigger=trigger)
                   ).status_code in (200, 201)
    assert api.post("/v1/snapshots").status_code == 201


def arm_sessions(store: TelemetryStore, counts: dict[str, tuple[int, int]],
                 at: int = NOW) -> None:
    """Sessions per arm (sessions, converted): one decision each, firing in the treated
    arms; converted sessions report a conversion 5 s later."""
    records: list[dict[str, Any]] = []
    for arm, (sessions, converted) in counts.items():
        for n in range(sessions):
            session = f"{arm}-{n}"
            records.append({"kind": "decision", "id": f"{session}-d", "session": session,
                            "ts_ms": at, "revision": "1", "arm": arm,
                            "fired": [] if arm == "holdout" else ["exp-t"],
                            "suppressed": [{"trigger": "exp-t", "reason": "experiment_holdout"}]
                            if arm == "holdout" else [], "context": {"device": "desktop"}})
            if n < converted:
                records.append({"kind": "outcome", "id": f"{session}-c", "session": session,
                                "ts_ms": at + 5000, "type": "conversion"})
    store.ingest(records)


FAIR = {"adaptive": (452, 120), "static": (446, 90), "holdout": (102, 12)}
SKEWED = {"adaptive": (560, 150), "static": (380, 80), "holdout": (60, 7)}


def test_the_cli_and_the_api_check_the_split_the_published_snapshot_declares(
        tmp_path: Path) -> None:
    api = control_client(tmp_path)
    publish_experiment(api)
    arm_sessions(api.application.extensions["telemetry_store"], SKEWED)
    doc = api.get("/v1/reports/experiment").get_json()
    assert doc["srm"]["split"] == SPLIT and doc["srm"]["mismatch"] is True
    config = api.application.config
    shown = CliRunner().invoke(cli, ["report", "--data-dir", config["DATA_DIR"], "--store",
                                     config["STORE_DIR"], "--experiment"])
    assert shown.exit_code == 0, shown.output
    assert "SAMPLE RATIO MISMATCH: sessions adaptive 560, static 380, holdout 60" in shown.output
    as_json = CliRunner().invoke(cli, ["report", "--data-dir", config["DATA_DIR"], "--store",
                                       config["STORE_DIR"], "--experiment", "--format", "json"])
    assert json.loads(as_json.output)["srm"] == doc["srm"]


def test_without_a_published_experiment_the_split_is_not_checked(tmp_path: Path) -> None:
    store = TelemetryStore(tmp_path / "t.sqlite3")
    arm_sessions(store, FAIR)
    doc = experiment_report(store)
    assert doc["srm"] is None and "sample ratio" not in format_experiment(doc)
    fair = format_experiment(experiment_report(store, split=SPLIT))
    assert "sample ratio: as declared (adaptive 45%, static 45%, holdout 10%" in fair
