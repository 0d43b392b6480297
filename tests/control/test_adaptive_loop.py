"""The learning loop through the CLI (the loop itself: tests/control/test_learning.py and
tests/control/test_evaluate.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.distribution.publishing import publish
from control_plane.rulepack import load_pack_set
from edge_module.distribution.edge_store import LocalFolderStore
from tests.servers import TEST_KEY, control_config

KEY = "pricing-discount#1"


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "adaptive-pricing.yaml"


def adaptive_packs(tmp_path: Path) -> list:
    return load_pack_set([EXAMPLE], check_content=False).packs


def test_the_cli_recalibrates_dry_and_lists_what_it_decided(tmp_path):
    store = tmp_path / "store"
    publish(LocalFolderStore(store), adaptive_packs(tmp_path), TEST_KEY)
    config = control_config(tmp_path)
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
