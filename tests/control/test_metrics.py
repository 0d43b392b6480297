"""The control plane's GET /metrics (metrics token): requests by route and status, ingest
records by result, and what the manifest publishes, over a real server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from control_plane.auth import ensure_token_file
from edge_module.telemetry.decision_log import decision_record
from tests.control_server import running_control
from tests.edge.test_metrics import documented, families
from tests.edge.test_telemetry import engaged
from tests.factories import T0
from tests.servers import EDGE_TOKEN, PUBLISHER_TOKEN, ROOT, control_config, http

METRICS_TOKEN = "metrics-token-for-tests"
PRICING = (ROOT / "rules" / "pricing-discount.yaml").read_text()
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, token: str | None = METRICS_TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers=headers),
                                    timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(url: str) -> Samples:
    status, text = scrape(url)
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


def publisher(method: str, url: str, body: str | dict | None = None) -> int:
    headers = {"Authorization": f"Bearer {PUBLISHER_TOKEN}"}
    if isinstance(body, str):
        headers["Content-Type"] = "application/yaml"
    return http(method, url, body, headers)[0]


def ingest(url: str, lines: list[str]) -> dict:
    req = urllib.request.Request(url + "/v1/telemetry", data="\n".join(lines).encode(),
                                 method="POST",
                                 headers={"Authorization": f"Bearer {EDGE_TOKEN}",
                                          "Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def record(n: int) -> str:
    response = {"decision_id": f"d{n}", "revision": "1", "latency_us": 50, "actions": []}
    return json.dumps(decision_record(engaged(f"s{n}"), response, T0, "salt", "edge-1"))


def test_metrics_need_the_metrics_token(tmp_path):
    with running_control(control_config(tmp_path, METRICS_TOKENS=METRICS_TOKEN)) as control:
        assert scrape(control.url, token=None)[0] == 401
        assert scrape(control.url, token=PUBLISHER_TOKEN)[0] == 403  # another role's
        assert scrape(control.url)[0] == 200


def test_the_metrics_token_file_is_taken_when_no_token_is_configured(tmp_path):
    config = control_config(tmp_path)
    token = ensure_token_file(config["DATA_DIR"], "metrics")  # `trigger-engine tokens`
    with running_control(config) as control:
        assert scrape(control.url, token=token)[0] == 200


def test_metrics_count_requests_ingest_and_publishing(tmp_path):
    with running_control(control_config(tmp_path, METRICS_TOKENS=METRICS_TOKEN)) as control:
        url = control.url
        assert samples(url)[("control_edge_store_up", ())] == 1
        assert ("control_published_revision", ()) not in samples(url)  # nothing yet
        assert publisher("PUT", url + "/v1/packs/pricing-discount", PRICING) == 201
        assert publisher("PUT", url + "/v1/packs/pricing-discount", PRICING) == 200
        assert publisher("GET", url + "/v1/packs/no-such-pack") == 404
        assert http("GET", url + "/no/such/route")[0] == 404
        for _ in range(2):
            assert publisher("POST", url + "/v1/snapshots") == 201
        assert publisher("POST", url + "/v1/snapshots/rollback", {"revision": 1}) == 200
        answer = ingest(url, [record(1), record(2), record(1), "{not json", "[]"])
        assert answer["accepted"] == 2 and answer["duplicates"] == 1

        got = samples(url)
        put = ("control_requests_total", "/v1/packs/<name>", "PUT")
        assert value(got, put[0], route=put[1], method=put[2], status="201") == 1
        assert value(got, put[0], route=put[1], method=put[2], status="200") == 1
        assert value(got, "control_requests_total", route="/v1/packs/<name>", method="GET",
                     status="404") == 1
        assert value(got, "control_requests_total", route="unmatched", method="GET",
                     status="404") == 1
        assert value(got, "control_requests_total", route="/v1/snapshots", method="POST",
                     status="201") == 2
        assert value(got, "control_request_duration_seconds_count",
                     route="/v1/snapshots") == 2
        assert value(got, "control_requests_total", route="/metrics", method="GET",
                     status="200") == 2  # the scrapes before this one
        assert value(got, "control_telemetry_records_total", result="accepted") == 2
        assert value(got, "control_telemetry_records_total", result="duplicate") == 1
        assert value(got, "control_telemetry_records_total", result="rejected") == 2
        rejected = {k[1][0][1]: v for k, v in got.items()
                    if k[0] == "control_telemetry_rejected_total"}
        assert sum(rejected.values()) == 2 and len(rejected) >= 1
        assert value(got, "control_published_revision") == 1  # rolled back to 1
        assert value(got, "control_publishes_total", source="publish") == 2
        assert value(got, "control_publishes_total", source="recalibration") == 0
        assert value(got, "control_rollbacks_total") == 1
        assert families(scrape(url)[1]) == documented("control_")


def test_metrics_count_recalibration_runs_by_result(tmp_path, monkeypatch):
    import control_plane.learning.scheduler as scheduler_module
    from control_plane.learning.scheduler import RecalibrationScheduler

    with running_control(control_config(tmp_path, METRICS_TOKENS=METRICS_TOKEN)) as control:
        job = RecalibrationScheduler(control.app)  # the serving app's schedule, run by hand
        assert job.run_once().outcome == "skipped"  # nothing published yet
        assert publisher("PUT", control.url + "/v1/packs/pricing-discount", PRICING) == 201
        assert publisher("POST", control.url + "/v1/snapshots") == 201
        assert job.run_once().outcome == "unchanged"  # no adaptive condition, no telemetry
        assert publisher("POST", control.url + "/v1/snapshots") == 201
        assert publisher("POST", control.url + "/v1/snapshots/rollback", {"revision": 1}) == 200
        assert job.run_once().outcome == "skipped"  # a rollback is current: it stays

        def broken(*args, **kwargs):
            raise OSError("the telemetry store's disk went away")

        monkeypatch.setattr(scheduler_module, "recalibrate", broken)
        with pytest.raises(OSError):
            job.run_once()
        got = samples(control.url)
        runs = {result: value(got, "control_recalibration_runs_total", result=result)
                for result in ("published", "unchanged", "skipped", "failed")}
        assert runs == {"published": 0, "unchanged": 1, "skipped": 2, "failed": 1}
