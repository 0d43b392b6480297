"""The edge host's GET /metrics: served only when configured (a token, or an address of its
own), in the Prometheus text format, with values that move as the traffic says, and every
worker's numbers in one scrape."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from control_plane.rulepack import compile_snapshot, load_pack_set
from tests.control_server import running_control
from tests.edge.test_telemetry import engaged, outcome, publish_rules
from tests.factories import T0
from tests.servers import (
    BUILD,
    EDGE_TOKEN,
    ROOT,
    TRUSTED_KEYS,
    control_config,
    http,
    put_snapshot,
    running_edge,
    stop_process,
    wait_for,
)

TOKEN = "metrics-token-for-tests"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(url: str, token: str | None = TOKEN) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as resp:
            return resp.status, resp.read().decode(), _lower(resp.headers.items())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), _lower(err.headers.items())


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers}


def scrape(url: str, token: str | None = TOKEN) -> Samples:
    """Every sample of a scrape, by name and labels, parsed by prometheus-client's parser."""
    status, text, headers = get(url, token)
    assert status == 200, text
    assert headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


OPERATIONS = ROOT / "docs" / "operations.md"


def families(text: str) -> set[str]:
    """The metric names of a scrape (counters with their `_total`; not the `_created`
    series prometheus-client adds to counters and histograms)."""
    return {f.name + ("_total" if f.type == "counter" else "")
            for f in text_string_to_metric_families(text) if not f.name.endswith("_created")}


def documented(prefix: str) -> set[str]:
    """The metrics docs/operations.md lists in its tables."""
    table_rows = re.findall(rf"^\| `({prefix}[a-z_]+)` \|", OPERATIONS.read_text(),
                            re.MULTILINE)
    return set(table_rows)


def test_the_documented_alert_rules_parse_and_name_documented_metrics():
    text = OPERATIONS.read_text()
    block = text[text.index("### Example alert rules"):]
    start = block.index("```yaml") + len("```yaml")
    rules = yaml.safe_load(block[start:block.index("```", start)])
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    named = {re.sub(r"_(bucket|count|sum)$", "", m)
             for e in exprs for m in re.findall(r"\b(?:edge|control)_[a-z_]+", e)}
    assert named and named <= documented("edge_") | documented("control_")


def test_without_a_token_or_an_address_metrics_are_not_served(tmp_path):
    publish_rules(tmp_path / "store")
    with running_edge(tmp_path / "store") as edge:
        status, body, _ = http("GET", edge.url + "/metrics")
        assert status == 404 and body["error"]["code"] == "not_found"
        assert edge.host.app.metrics is None  # and nothing is observed per decision


def test_the_metrics_token_is_asked_for(tmp_path):
    publish_rules(tmp_path / "store")
    with running_edge(tmp_path / "store", metrics_token=TOKEN) as edge:
        status, body, headers = http("GET", edge.url + "/metrics")
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert _lower(headers.items())["www-authenticate"] == "Bearer"
        status, body, _ = http("GET", edge.url + "/metrics",
                               headers={"Authorization": "Bearer not-the-token"})
        assert status == 403 and body["error"]["code"] == "forbidden"
        assert get(edge.url + "/metrics")[0] == 200


def test_metrics_move_as_the_traffic_says(tmp_path):
    publish_rules(tmp_path / "store")
    with running_control(control_config(tmp_path)) as control, \
            running_edge(tmp_path / "store", control_url=control.url, token=EDGE_TOKEN,
                         telemetry_interval_s=0.05, metrics_token=TOKEN) as edge:
        for n in range(7):
            status, decided, _ = edge.decide(engaged(f"m{n}"))
            assert status == 200 and [a["trigger"] for a in decided["actions"]] == [
                "pricing-discount"]
            assert http("POST", edge.url + "/v1/outcome",
                        outcome(f"m{n}", decided=decided))[0] == 200
        status, _, _ = edge.decide({"session_id": "quiet", "now_ms": T0, "events": [],
                                   "context": {"url": "/"}})
        assert status == 200  # a decision that fires nothing
        assert http("POST", edge.url + "/v1/decide", "{not json")[0] == 400
        assert http("POST", edge.url + "/v1/outcome", outcome("m0"))[0] == 403
        wait_for(lambda: value(scrape(edge.url + "/metrics"), "edge_telemetry_records_total",
                               state="shipped") == 15, what="every record shipped")

        got = scrape(edge.url + "/metrics")
        assert value(got, "edge_decisions_total", status="200") == 8
        assert value(got, "edge_decisions_total", status="400") == 1
        assert value(got, "edge_decision_duration_seconds_count") == 8
        assert value(got, "edge_decision_duration_seconds_bucket", le="+Inf") == 8
        assert 0 < value(got, "edge_decision_duration_seconds_sum") < 8
        assert value(got, "edge_component_call_duration_seconds_count") == 8
        assert ("edge_instance_wait_seconds_count", ()) in got  # none waited, one by one
        assert value(got, "edge_actions_total", trigger="pricing-discount") == 7
        assert value(got, "edge_rejected_total", reason="invalid_outcome_token") == 1
        assert value(got, "edge_rejected_total", reason="overloaded") == 0
        assert value(got, "edge_traps_total") == 0
        assert value(got, "edge_snapshot_revision") == 1
        assert value(got, "edge_snapshot_last_sync_timestamp_seconds") > 1.7e9
        assert value(got, "edge_sync_errors_total") == 0
        assert value(got, "edge_sessions") == 8
        assert value(got, "edge_session_store_bytes") > 0
        # 8 decisions and 7 outcomes taken, spooled and shipped; none lost
        for state in ("taken", "spooled", "shipped"):
            assert value(got, "edge_telemetry_records_total", state=state) == 15
        assert not [k for k in got if k[0] == "edge_telemetry_dropped_total"]
        assert value(got, "edge_telemetry_backlog_records") == 0
        # every metric served is documented, and every documented one served
        status, text, _ = get(edge.url + "/metrics")
        assert families(text) == documented("edge_")


def test_a_failing_snapshot_poll_is_counted(tmp_path):
    publish_rules(tmp_path / "store")
    with running_edge(tmp_path / "store", metrics_token=TOKEN) as edge:
        (tmp_path / "store" / "manifest.json").write_text("{broken")
        wait_for(lambda: value(scrape(edge.url + "/metrics"), "edge_sync_errors_total") > 0,
                 what="a counted sync error")


def test_a_metrics_address_serves_metrics_there_alone(tmp_path, free_port):
    publish_rules(tmp_path / "store")
    with running_edge(tmp_path / "store", metrics_address=f"127.0.0.1:{free_port}") as edge:
        assert edge.decide(engaged("a"))[0] == 200
        assert http("GET", edge.url + "/metrics")[0] == 404  # not on the public port
        listener = f"http://127.0.0.1:{free_port}"
        got = scrape(listener + "/metrics", token=None)
        assert value(got, "edge_decisions_total", status="200") == 1
        status, body, _ = http("GET", listener + "/healthz")
        assert status == 404 and body["error"]["code"] == "not_found"


@contextmanager
def edge_process(tmp_path: Path, port: int, started: list[subprocess.Popen] | None = None,
                 **env: str) -> Iterator[str]:
    """`edge-host` in a process of its own (the default server unless `env` names one),
    with EDGE_* `env`; yields its URL (and appends the process to `started`)."""
    full = {**os.environ, "EDGE_PORT": str(port), "TRIGGERS_STORE": str(tmp_path / "store"),
            "TRIGGERS_TRUSTED_KEYS": str(TRUSTED_KEYS), "EDGE_STATE_DIR": str(tmp_path / "edge"),
            "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm"),
            "EDGE_CACHE_DIR": str(BUILD / "cache"), "EDGE_CONTROL_URL": "",
            "EDGE_METRICS_TOKEN": TOKEN, **env}
    proc = subprocess.Popen([sys.executable, "-m", "edge_module.host.server"], env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if started is not None:
        started.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), what="the edge host to start")
        yield url
    finally:
        stop_process(proc)
    assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


@pytest.mark.parametrize("server", ["waitress", "granian", "loop"])
def test_a_refused_decision_is_counted_under_either_server(tmp_path, free_port, server):
    other_port = _free_port()
    publish_rules(tmp_path / "store")
    with ExitStack() as stack:
        if server == "waitress":  # in this process: admitted inside the handler
            url = stack.enter_context(running_edge(tmp_path / "store", metrics_token=TOKEN,
                                                   max_pending=0)).url
        else:  # admitted on the event loop, before a decision thread
            stack.enter_context(edge_process(tmp_path, free_port, EDGE_SERVER=server,
                                             EDGE_MAX_PENDING="0",
                                             EDGE_METRICS_ADDRESS=f"127.0.0.1:{other_port}"))
            url = f"http://127.0.0.1:{free_port}"
        for n in range(3):
            status, body, _ = http("POST", url + "/v1/decide", engaged(f"r{n}"))
            assert status == 503 and body["error"]["code"] == "overloaded"
        # nothing at all is taken on the public port now, not even GET /metrics
        got = scrape(url + "/metrics" if server == "waitress"
                     else f"http://127.0.0.1:{other_port}/metrics")
        assert value(got, "edge_decisions_total", status="503") == 3
        # and refusals of /healthz while starting, on the event loop
        assert value(got, "edge_rejected_total", reason="overloaded") >= 3
        assert value(got, "edge_decision_duration_seconds_count") == 0


def test_two_workers_are_counted_in_one_scrape(tmp_path, free_port):
    """EDGE_WORKERS=2 (the loop server's forked workers): whichever worker answers a
    scrape, it counts both."""
    publish_rules(tmp_path / "store")
    stale = tmp_path / "edge" / "metrics" / "counter_1.db"  # a previous run's: removed
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 16)
    with edge_process(tmp_path, free_port, EDGE_WORKERS="2", EDGE_THREADS="1",
                      EDGE_SESSION_STORE="lmdb") as url:
        assert not stale.exists()
        workers: set[str] = set()
        wait_for(lambda: workers.add(http("GET", url + "/healthz")[1]["edge_id"]) or
                 len(workers) == 2, what="both workers to answer")
        decided: dict[str, int] = {}
        for n in range(20):  # a new connection each: both workers decide some
            assert http("POST", url + "/v1/decide", engaged(f"w{n}"))[0] == 200
        wait_for(lambda: [decided.__setitem__(h["edge_id"], h["decisions"]) for h in
                          [http("GET", url + "/healthz")[1]]] and len(decided) == 2,
                 what="both workers' counts")
        assert all(n > 0 for n in decided.values())

        def counted() -> Samples:
            return scrape(url + "/metrics")

        # the other worker's tally reaches the files within a second
        wait_for(lambda: value(counted(), "edge_decisions_total", status="200") == 20,
                 what="both workers' decisions in one scrape")
        for _ in range(4):  # whichever worker answers
            got = counted()
            assert value(got, "edge_decisions_total", status="200") == 20
            assert value(got, "edge_decision_duration_seconds_count") == 20
            assert value(got, "edge_actions_total", trigger="pricing-discount") == 20
            assert value(got, "edge_snapshot_revision") == 1
            assert value(got, "edge_sessions") == 20  # one shared store, not added twice


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.parametrize("server", ["loop", "granian"])
def test_a_killed_worker_is_started_again_and_no_longer_counts_in_the_live_gauges(
        tmp_path, free_port, server):
    """A worker killed with SIGKILL is started again (under granian it stopped the whole
    host); it cannot mark its metrics dead, so the supervisor must, or the revision it
    served stays the host's lowest after every live worker moved on."""
    publish_rules(tmp_path / "store")
    started: list[subprocess.Popen] = []
    with edge_process(tmp_path, free_port, started, EDGE_WORKERS="2", EDGE_THREADS="1",
                      EDGE_SESSION_STORE="lmdb", EDGE_SERVER=server) as url:
        wait_for(lambda: value(scrape(url + "/metrics"), "edge_snapshot_revision") == 1,
                 what="revision 1 served")
        killed = _children(started[0].pid)
        assert len(killed) == 2
        for pid in killed:
            os.kill(pid, 9)
        wait_for(lambda: len(set(_children(started[0].pid)) - set(killed)) == 2
                 and _answers(url), what="both workers started again")
        packs = load_pack_set([ROOT / "rules" / "pricing-discount.yaml"],
                              check_content=False).packs
        put_snapshot(tmp_path / "store", json.dumps(compile_snapshot(packs, "2", 0)), 2)
        workers: dict[str, int] = {}
        wait_for(lambda: [workers.__setitem__(h["edge_id"], h["revision"]) for h in
                          [http("GET", url + "/healthz")[1]]] and len(workers) == 2
                 and set(workers.values()) == {"2"},
                 what="both new workers on revision 2")
        wait_for(lambda: value(scrape(url + "/metrics"), "edge_snapshot_revision") == 2,
                 timeout_s=5, what="the scrape to show revision 2, not the dead workers' 1")


def test_a_worker_whose_metrics_cannot_be_dropped_is_still_restarted(tmp_path, monkeypatch,
                                                                    caplog):
    """The supervisor drops a dead worker's live gauges; a failure there (a read-only or
    broken metrics folder) is logged, never raised: it would end the supervisor and orphan
    the other workers."""
    from prometheus_client import multiprocess

    from edge_module.http import loop_server, metrics

    def broken(pid: int, path: str) -> None:
        raise PermissionError(f"cannot remove {path}/gauge_livesum_{pid}.db")

    monkeypatch.setattr(metrics, "multiprocess_dir", lambda: tmp_path)
    monkeypatch.setattr(multiprocess, "mark_process_dead", broken)
    loop_server._forget_metrics_of(12345)
    assert "could not drop the metrics of worker process 12345" in caplog.text


def test_a_dead_workers_headerless_metrics_file_is_removed(tmp_path, monkeypatch):
    """A worker killed while creating a metrics file leaves it empty; every scrape would
    then fail reading it. The supervisor removes it with the worker's other dead values."""
    from edge_module.http import loop_server, metrics

    monkeypatch.setattr(metrics, "multiprocess_dir", lambda: tmp_path)
    (tmp_path / "counter_12345.db").write_bytes(b"")
    (tmp_path / "counter_777.db").write_bytes(b"")  # another process's: not touched
    kept = tmp_path / "histogram_12345.db"
    kept.write_bytes(b"\0" * 16)  # the dead worker's values: they still count
    loop_server._forget_metrics_of(12345)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_777.db",
                                                           "histogram_12345.db"]


def test_a_scrape_skips_files_that_have_no_header_yet(tmp_path):
    """A worker starting (or killed while it created a file) leaves a file without its
    header for a moment: the scrape counts every other file instead of failing whole."""
    from prometheus_client import CollectorRegistry, Counter, values
    from prometheus_client.parser import text_string_to_metric_families

    from edge_module.http import metrics

    previous = values.ValueClass
    os.environ[metrics.MULTIPROC_ENV] = str(tmp_path)
    try:
        values.ValueClass = values.MultiProcessValue(lambda: 4242)
        Counter("edge_test_things", "things", registry=CollectorRegistry()).inc(3)
        (tmp_path / "counter_999.db").write_bytes(b"")  # a worker's file, being created
        fake = metrics.EdgeMetrics.__new__(metrics.EdgeMetrics)
        fake.folder, fake.refresh = tmp_path, lambda: None
        text = fake.render().decode()
    finally:
        values.ValueClass = previous
        del os.environ[metrics.MULTIPROC_ENV]
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got["edge_test_things_total"] == 3


def test_a_scrape_meeting_a_file_being_created_reads_again(tmp_path, monkeypatch):
    """A worker starting during a scrape has files that exist before their first bytes:
    the scrape reads again rather than answer 500."""
    import struct

    from edge_module.http import metrics

    failures = iter([struct.error("unpack_from requires a buffer of at least 4 bytes")] * 2)

    def flaky(registry: object) -> bytes:
        for exc in failures:
            raise exc
        return b"# fine\n"

    monkeypatch.setattr(metrics, "generate_latest", flaky)
    fake = metrics.EdgeMetrics.__new__(metrics.EdgeMetrics)
    fake.folder, fake.refresh = tmp_path, lambda: None
    assert fake.render() == b"# fine\n"


def _answers(url: str) -> bool:
    try:
        return http("GET", url + "/healthz")[0] in (200, 503)
    except OSError:
        return False


def test_each_latency_lands_in_its_bucket_and_each_trigger_is_counted():
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from edge_module.http.metrics import EdgeMetrics

    metrics = EdgeMetrics(SimpleNamespace())  # type: ignore[arg-type]
    metrics.decided(0.0005, 0.0001, [{"trigger": "a"}, {"trigger": "b"}])  # le is inclusive
    metrics.decided(0.003, 0.002, [{"trigger": "a"}, {"trigger": 7}])
    metrics.decided(2.0, 0.0001, None)  # above every bound: +Inf only
    metrics.fold()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in
           text_string_to_metric_families(generate_latest(metrics.registry).decode())
           for s in family.samples}
    buckets = {le: value(got, "edge_decision_duration_seconds_bucket", le=le)
               for le in ("0.0005", "0.001", "0.0025", "0.005", "1.0", "+Inf")}
    assert buckets == {"0.0005": 1, "0.001": 1, "0.0025": 1, "0.005": 2, "1.0": 2, "+Inf": 3}
    assert value(got, "edge_decision_duration_seconds_sum") == 2.0035
    assert value(got, "edge_component_call_duration_seconds_bucket", le="0.0025") == 3
    assert value(got, "edge_actions_total", trigger="a") == 2
    assert value(got, "edge_actions_total", trigger="b") == 1
    assert value(got, "edge_actions_total", trigger="other") == 1  # not a trigger id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
