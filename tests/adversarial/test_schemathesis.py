"""Issue #11, item 13: both servers keep the promises their OpenAPI documents make.

A bounded schemathesis run (every check, every phase, few examples per operation) against a
real control plane and a real edge on loopback; a failure prints schemathesis's report,
with the curl command that reproduces each finding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.control_server import running_control
from tests.servers import (
    BUILD,
    EDGE_TOKEN,
    PUBLISHER_TOKEN,
    ROOT,
    control_config,
    put_snapshot,
    running_edge,
)

pytest.importorskip("schemathesis")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 6  # per operation and phase: each server's run stays well under a minute

# Every check runs on every operation (schemathesis's default) except where this says. What
# the JSON Schemas cannot say: a rule pack valid by its schema can still fail validation
# (422: unknown content, arms that add up to 150 %...) or name another pack than its URL
# (400); a telemetry batch is never refused whole (bad records are refused one by one in
# its 200 answer, so telemetry keeps flowing), and a line is a record whatever its shape.
CONFIG = """
[[operations]]
include-operation-id = ["validatePack", "compilePack"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-operation-id = "putPack"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "422"]

[[operations]]
include-operation-id = "telemetryIngest"
checks.negative_data_rejection.enabled = false
"""


def schemathesis_run(tmp_path: Path, location: str, token: str | None,
                     *options: str) -> subprocess.CompletedProcess[str]:
    """One `schemathesis run` (every check is on unless CONFIG says otherwise for an
    operation); its exit status and report."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    args = [str(SCHEMATHESIS), "--config-file", str(config), "run", location,
            "--max-examples", str(MAX_EXAMPLES), "--seed", "11",
            "--workers", "1", "--request-timeout", "10", "--no-color", *options]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.adversarial.schemathesis_hooks",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_control_plane_keeps_its_openapi_document(tmp_path):
    with running_control(control_config(tmp_path)) as server:
        document = f"{server.url}/openapi.json"
        publisher = schemathesis_run(tmp_path, document, PUBLISHER_TOKEN,
                                     "--exclude-operation-id", "fleetReport",
                                     "--exclude-operation-id", "telemetryIngest")
        assert publisher.returncode == 0, publisher.stdout[-20000:] + publisher.stderr[-2000:]
        edge = schemathesis_run(tmp_path, document, EDGE_TOKEN,
                                "--include-operation-id", "fleetReport",
                                "--include-operation-id", "telemetryIngest")
        assert edge.returncode == 0, edge.stdout[-20000:] + edge.stderr[-2000:]


@pytest.mark.skipif(not (BUILD / "decision-engine.wasm").exists(),
                    reason="needs the component: python -m edge_module.build --out build")
def test_the_edge_keeps_its_openapi_document(tmp_path):
    from control_plane.rulepack import compile_snapshot, load_pack_file
    from edge_module.http.openapi import edge_openapi

    store = tmp_path / "store"
    pack = load_pack_file(ROOT / "rules" / "pricing-discount.yaml")
    put_snapshot(store, json.dumps(compile_snapshot([pack], "1", 0)), 1)
    document = tmp_path / "edge-openapi.json"
    # The document as the module states it (the host serves the same at /openapi.json).
    document.write_text(json.dumps(edge_openapi()))
    # A control plane behind it, so outcomes are recorded (without one they are 503).
    with running_control(control_config(tmp_path / "control")) as control, \
            running_edge(store, control_url=control.url, token=EDGE_TOKEN) as edge:
        run = schemathesis_run(tmp_path, str(document), None, "--url", edge.url)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-2000:]
