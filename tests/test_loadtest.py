"""The load test itself works: Locust's journeys run against a real edge host (a subprocess
started as `./build.sh loadtest` starts it), every request succeeds, and the summary is
written. No timing figure is asserted: figures come from `./build.sh loadtest`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from loadtest.stack import EdgeStack, edge_stack
from loadtest.summary import Samples, percentiles, render
from tests.servers import ROOT

LOCUST = str(Path(sys.executable).parent / "locust")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStack]:
    with edge_stack("both", workdir=tmp_path_factory.mktemp("loadtest")) as running:
        yield running


def run_locust(stack: EdgeStack, tmp_path: Path, *extra: str) -> dict:
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [LOCUST, "-f", "loadtest/locustfile.py", "--headless", "-u", "5", "-r", "5",
         "-t", "4s", "--stop-timeout", "3", "--host", stack.url, "--only-summary",
         "--summary-json", str(summary), "--csv", str(tmp_path / "run"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "run_stats.csv").exists()
    return json.loads(summary.read_text())


def test_visitor_journeys_run_without_a_failed_request(stack, tmp_path):
    summary = run_locust(stack, tmp_path, "VisitorUser")
    assert summary["scenario"] == "VisitorUser"
    assert summary["decisions"] > 0 and summary["requests"] == summary["decisions"]
    assert summary["delivery_success_pct"] == 100.0
    assert set(summary["statuses"]) == {"200"}
    for key in ("client_latency_ms", "server_latency_us"):
        assert summary[key]["count"] == summary["decisions"]
    assert summary["outcomes_reported"] is False  # the default: no POST /v1/outcome


def test_the_throughput_scenario_runs_without_a_failed_request(stack, tmp_path):
    summary = run_locust(stack, tmp_path, "ThroughputUser")
    assert summary["scenario"] == "ThroughputUser"
    assert summary["decisions"] > 0 and summary["delivery_success_pct"] == 100.0
    assert summary["decisions_per_s"] > 0


def test_build_sh_loadtest_writes_reports_and_a_summary(tmp_path):
    name = "pytest-smoke"
    env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent)}
    done = subprocess.run(["bash", "build.sh", "loadtest", "4", "3", "--name", name],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    reports = ROOT / "loadtest" / "reports"
    try:
        summary = json.loads((reports / f"{name}-summary.json").read_text())
        assert (reports / f"{name}.html").exists() and (reports / f"{name}_stats.csv").exists()
        assert summary["delivery_success_pct"] == 100.0
        assert summary["server"]["decisions"] == summary["decisions"]
        assert "decisions per second" in done.stdout and "timing error" in done.stdout
    finally:
        for path in reports.glob(f"{name}*"):
            path.unlink()


def test_percentiles_are_nearest_rank_over_every_sample():
    stats = percentiles([float(v) for v in range(1, 101)])
    assert stats == {"count": 100, "p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0,
                     "mean": 50.5}
    assert percentiles([]) is None


def test_worker_samples_merge_into_the_masters():
    worker, master = Samples(), Samples()
    worker.client_ms += [1.0, 2.0]
    worker.server_us += [100, 200]
    worker.count(200)
    worker.count(503)
    master.merge(worker.drain())
    assert master.server_us == [100, 200] and master.statuses == {200: 1, 503: 1}
    assert worker.server_us == [] and not worker.statuses


def test_the_summary_renders_every_figure():
    summary = {"scenario": "VisitorUser", "users": 5, "duration_s": 4.0,
               "generator": "locust", "decisions_per_s": 10.0, "decisions": 40, "actions": 3,
               "client_latency_ms": percentiles([1.0, 2.0]),
               "server_latency_us": percentiles([100.0]), "timing_error_ms": None,
               "delivery_success_pct": 100.0, "requests": 40, "statuses": {"200": 40}}
    text = render(summary)
    for figure in ("decisions per second", "client-side latency", "server-side latency",
                   "timing error", "delivery success"):
        assert figure in text
