"""Telemetry: the edge's decision log and outcomes, spooled on disk, shipped to the control
plane and stored exactly once, through control plane outages and edge crashes."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
from http.client import HTTPException
from pathlib import Path

from control_plane.rulepack import compile_snapshot, load_pack_set
from control_plane.telemetry_store import TelemetryStore
from edge_module.host.decision_log import (
    DecisionLog,
    decision_record,
    hash_session,
    read_batch,
)
from tests.control_server import ControlServer
from tests.servers import (
    BUILD,
    EDGE_TOKEN,
    ROOT,
    TRUSTED_KEYS,
    control_client,
    control_config,
    http,
    put_snapshot,
    running_edge,
    wait_for,
)

T0 = 1_764_201_600_000


def publish_rules(store: Path) -> None:
    packs = load_pack_set([ROOT / "rules" / "pricing-discount.yaml"], check_content=False).packs
    put_snapshot(store, json.dumps(compile_snapshot(packs, "1", 0)), 1)


def engaged(session: str, at: int = T0) -> dict:
    """A request that fires pricing-discount (3 s dwell, scrolled past 78 %)."""
    return {"session_id": session, "now_ms": at + 4000,
            "context": {"url": "/pricing?email=a@b.c", "device": "mobile", "country": "DE",
                        "local_hour": 19, "referrer": "https://ads.example/?gclid=secret",
                        "attributes": {"crm_tier": "gold", "email": "a@b.c"}},
            "events": [{"type": "page_view", "ts_ms": at, "url": "/pricing"},
                       {"type": "scroll", "ts_ms": at + 1000, "depth": 0.9, "y": 900}]}


def outcome(session: str, kind: str = "click", decision_id: str | None = None) -> dict:
    return {"session_id": session, "decision_id": decision_id, "trigger": "pricing-discount",
            "type": kind, "ts_ms": T0 + 5000}


def spooled_ids(spool: Path) -> set[str]:
    return {r["id"] for f in sorted(spool.glob("*.jsonl.gz")) for r in read_batch(f)}


def stored_ids(db: Path) -> list[str]:
    store = TelemetryStore(db)
    return [i for (i,) in store.query("SELECT id FROM decisions UNION ALL "
                                      "SELECT id FROM outcomes")]


# What leaves the edge


def test_a_decision_record_carries_no_personal_data():
    response = {"decision_id": "d1", "revision": "1", "latency_us": 80,
                "actions": [{"trigger": "pricing-discount"}],
                "suppressed": [{"trigger": "t2", "reason": "holdout"}]}
    rec = decision_record(engaged("visitor-42"), response, T0, "salt", "edge-1")
    assert rec["session"] == hash_session("salt", "visitor-42") != "visitor-42"
    assert rec["context"] == {"device": "mobile", "country": "DE", "local_hour": 19,
                              "url": "/pricing", "referrer": "https://ads.example/"}
    assert "a@b.c" not in json.dumps(rec) and "gold" not in json.dumps(rec)
    assert rec["fired"] == ["pricing-discount"] and rec["latency_us"] == 80
    assert rec["features"]["scroll_depth"] == 0.9 and rec["features"]["page_view_ms"] == T0


def test_a_batch_is_spooled_as_gzip_json_lines(tmp_path):
    log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
    for n in range(3):
        log.record({"kind": "outcome", "id": f"o{n}", "session": "s", "ts_ms": T0})
    path = log.flush()
    assert path is not None and path.name.endswith(".jsonl.gz")
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["o0", "o1", "o2"]
    assert log.flush() is None  # nothing buffered, no empty file


def test_a_batch_cut_short_by_a_crash_is_discarded_on_start(tmp_path):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "123.tmp").write_bytes(b"\x1f\x8b half")
    DecisionLog(tmp_path / "spool", "salt", "edge-1")
    assert list((tmp_path / "spool").iterdir()) == []


def test_outcomes_are_validated_with_clear_400s(tmp_path, free_port):
    publish_rules(tmp_path / "store")
    with running_edge(tmp_path / "store", control_url=f"http://127.0.0.1:{free_port}",
                      token=EDGE_TOKEN) as edge:
        url = edge.url + "/v1/outcome"
        status, body, _ = http("POST", url, {"session_id": "s", "type": "purchase"})
        assert status == 400 and body["error"]["field"] == "type"
        status, body, _ = http("POST", url, {"type": "click"})
        assert status == 400 and body["error"]["field"] == "session_id"
        status, body, _ = http("POST", url, {"session_id": "s", "type": "click", "ts_ms": "x"})
        assert status == 400 and body["error"]["field"] == "ts_ms"
        assert http("POST", url, "{nope")[1]["error"]["code"] == "invalid_json"
        assert http("GET", url)[0] == 405
        status, body, _ = http("POST", url, outcome("s"))
        assert status == 200 and body["id"]


# Ingest


def test_a_retried_batch_is_stored_once(tmp_path):
    client = control_client(tmp_path, token=EDGE_TOKEN)
    batch = b"".join(json.dumps({"kind": "outcome", "id": f"o{n}", "session": "s",
                                 "ts_ms": T0, "type": "click"}).encode() + b"\n"
                     for n in range(5))
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"}
    first = client.post("/v1/telemetry", data=gzip.compress(batch), headers=headers)
    again = client.post("/v1/telemetry", data=gzip.compress(batch), headers=headers)
    assert first.get_json() == {"stored": 5, "duplicates": 0}
    assert again.get_json() == {"stored": 0, "duplicates": 5}


def test_stored_records_are_counted_per_edge_and_from_a_moment_on(tmp_path):
    edge = control_client(tmp_path, token=EDGE_TOKEN)
    records = [{"kind": "decision", "id": "d1", "edge_id": "a", "session": "s", "ts_ms": T0},
               {"kind": "decision", "id": "d2", "edge_id": "b", "session": "s", "ts_ms": T0},
               {"kind": "outcome", "id": "o1", "edge_id": "a", "session": "s",
                "ts_ms": T0 + 10, "type": "click"}]
    edge.post("/v1/telemetry", data=b"".join(json.dumps(r).encode() + b"\n" for r in records))
    publisher = control_client(tmp_path, app=edge.application)

    def counts(query: str) -> dict:
        answer = publisher.get("/v1/telemetry/counts" + query)
        assert answer.status_code == 200
        return {k: answer.get_json()[k] for k in ("decisions", "outcomes")}

    assert counts("") == {"decisions": 2, "outcomes": 1}
    assert counts("?edge_id=a") == {"decisions": 1, "outcomes": 1}
    assert counts(f"?edge_id=a&since_ms={T0 + 5}") == {"decisions": 0, "outcomes": 1}
    assert edge.get("/v1/telemetry/counts").status_code == 403  # an edge token reads nothing
    for since in ("yesterday", "99999999999999999999", "-1"):
        bad = publisher.get(f"/v1/telemetry/counts?since_ms={since}")
        assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "since_ms"


def test_ingest_needs_the_edge_token_and_well_formed_records(tmp_path):
    assert control_client(tmp_path).post("/v1/telemetry", data=b"").status_code == 403
    client = control_client(tmp_path, token=EDGE_TOKEN)
    answer = client.post("/v1/telemetry", data=b'{"kind": "decision", "id": "d"}\n')
    assert answer.status_code == 400 and "line 1" in answer.get_json()["error"]["message"]


def test_the_store_migrates_to_the_latest_schema_once(tmp_path):
    TelemetryStore(tmp_path / "t.sqlite3")
    store = TelemetryStore(tmp_path / "t.sqlite3")  # opening again runs nothing twice
    assert store.query("SELECT version FROM schema_version") == [(3,)]
    assert store.query("PRAGMA journal_mode") == [("wal",)]


# Lossless delivery


def test_a_control_plane_outage_loses_and_duplicates_nothing(tmp_path):
    publish_rules(tmp_path / "store")
    control = ControlServer(control_config(tmp_path))
    sent: list[str] = []
    try:
        with running_edge(tmp_path / "store", control_url=control.url, token=EDGE_TOKEN,
                          telemetry_interval_s=0.05) as edge:
            shipper = edge.host.shipper
            shipper.backoff_base_s, shipper.backoff_max_s = 0.05, 0.2

            def stream(first: int, last: int) -> None:
                for n in range(first, last):
                    status, body, _ = edge.decide(engaged(f"s{n}"))
                    assert status == 200
                    sent.append(body["decision_id"])
                    status, body, _ = http("POST", edge.url + "/v1/outcome",
                                           outcome(f"s{n}", decision_id=body["decision_id"]))
                    assert status == 200
                    sent.append(body["id"])

            stream(0, 10)
            control.stop()  # the outage: records pile up in the spool
            stream(10, 30)
            wait_for(lambda: shipper.failures > 0, what="a failed delivery")
            control.start()  # same port, same data folder
            stream(30, 40)
            db = Path(control.config["DATA_DIR"]) / "telemetry.sqlite3"
            wait_for(lambda: len(stored_ids(db)) >= len(sent), what="every record stored")
            # /healthz tells the same: every record taken, none waiting, none dropped
            wait_for(lambda: http("GET", edge.url + "/healthz")[1]["telemetry"][
                "spooled_files"] == 0, what="an empty spool")
            tel = http("GET", edge.url + "/healthz")[1]["telemetry"]
            assert tel["recorded"] == tel["spooled"] == 80 and tel["buffered"] == 0
            assert tel["dropped"] == 0 and tel["last_error"] is None
        ids = stored_ids(db)
        assert sorted(ids) == sorted(sent)  # each exactly once
        assert len(ids) == 80
    finally:
        control.stop()


def test_an_edge_killed_mid_stream_loses_nothing_it_spooled(tmp_path, free_port):
    publish_rules(tmp_path / "store")
    config = control_config(tmp_path)
    control_port = free_port
    state = tmp_path / "edge"
    env = {**os.environ, "TRIGGERS_STORE": str(tmp_path / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(TRUSTED_KEYS), "EDGE_STATE_DIR": str(state),
           "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm"), "EDGE_SERVER": "waitress",
           "EDGE_CACHE_DIR": str(BUILD / "cache"), "EDGE_TOKEN": EDGE_TOKEN,
           "EDGE_CONTROL_URL": f"http://127.0.0.1:{control_port}",  # down for now
           "EDGE_TELEMETRY_INTERVAL_S": "0.05"}

    def start_edge(port: int) -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen([sys.executable, "-m", "edge_module.host.server"],
                                env={**env, "EDGE_PORT": str(port)}, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url) or proc.poll() is not None, what="the edge host to start")
        assert proc.poll() is None
        return proc, url

    edge_port = _free()
    proc, url = start_edge(edge_port)
    answered = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal answered
        n = 0
        while not stop.is_set():
            try:
                status, body, _ = http("POST", url + "/v1/decide", engaged(f"k{n}"))
                http("POST", url + "/v1/outcome", outcome(f"k{n}", "impression"))
            except (OSError, HTTPException):
                return  # the edge is gone (possibly mid-answer)
            answered += status == 200
            n += 1

    streamer = threading.Thread(target=stream, daemon=True)
    try:
        streamer.start()
        wait_for(lambda: len(spooled_ids(state / "spool")) >= 40, what="records spooled")
        proc.send_signal(signal.SIGKILL)  # mid-stream: no drain, no last flush
        proc.wait(timeout=10)
        stop.set()
        streamer.join(timeout=10)
        spooled = spooled_ids(state / "spool")
        assert len(spooled) >= 40 and answered >= 20
        control = ControlServer(config, port=control_port)
        try:
            proc, url = start_edge(edge_port)  # same EDGE_STATE_DIR
            db = Path(config["DATA_DIR"]) / "telemetry.sqlite3"
            wait_for(lambda: spooled <= set(stored_ids(db)), what="the spool delivered")
            ids = stored_ids(db)
            assert len(ids) == len(set(ids))  # nothing twice
            wait_for(lambda: not list((state / "spool").glob("*.jsonl.gz")),
                     what="the spool emptied")
        finally:
            control.stop()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)


def _free() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str) -> bool:
    try:
        return http("GET", url + "/healthz")[0] == 200
    except OSError:
        return False


# Reports


def test_the_report_counts_fires_outcomes_and_false_triggers(tmp_path):
    edge = control_client(tmp_path, token=EDGE_TOKEN)
    records = []
    for n, engaged_too in ((1, True), (2, False)):
        records.append({"kind": "decision", "id": f"d{n}", "session": f"s{n}", "ts_ms": T0,
                        "revision": "3", "fired": ["pricing-discount"], "latency_us": 90,
                        "context": {"device": "mobile"}})
        records.append({"kind": "outcome", "id": f"i{n}", "session": f"s{n}", "ts_ms": T0,
                        "trigger": "pricing-discount", "type": "impression"})
        if engaged_too:
            records.append({"kind": "outcome", "id": f"c{n}", "session": f"s{n}",
                            "ts_ms": T0 + 5000, "trigger": "pricing-discount", "type": "click"})
    edge.post("/v1/telemetry", data="\n".join(json.dumps(r) for r in records))
    publisher = control_client(tmp_path, app=edge.application)
    row, = publisher.get("/v1/reports/triggers?window_s=30").get_json()["rows"]
    assert (row["trigger"], row["device"], row["revision"]) == ("pricing-discount", "mobile", "3")
    assert (row["fires"], row["impressions"], row["clicks"], row["false_triggers"]) == (2, 2, 1, 1)
    assert row["false_trigger_rate"] == 0.5 and row["latency_us"]["<=100"] == 2


def test_a_spool_write_failure_keeps_the_records_for_the_next_flush(tmp_path, monkeypatch):
    log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
    for n in range(3):
        log.record({"id": f"r{n}", "kind": "outcome"})
    real_write = log._write

    def disk_full(batch):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "_write", disk_full)
    assert log.flush() is None
    assert log.pending() == 3 and log.dropped == 0
    assert list((tmp_path / "spool").glob("*.tmp")) == []
    monkeypatch.setattr(log, "_write", real_write)
    assert log.flush() is not None and log.pending() == 0 and log.spooled == 3


def _salt(state_dir: str, out) -> None:
    from edge_module.host.decision_log import load_salt

    out.put(load_salt("", Path(state_dir)))


def test_workers_starting_together_agree_on_one_salt(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_salt, args=(str(tmp_path / "edge"), out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    salts = {out.get(timeout=5) for _ in procs}
    assert len(salts) == 1 and len(salts.pop()) == 32
    assert sorted(f.name for f in (tmp_path / "edge").iterdir()) == ["telemetry.salt"]


def test_each_worker_ships_its_own_spool_and_none_is_stranded(tmp_path):
    from edge_module.host.config import EdgeConfig
    from edge_module.host.server import spool_dir

    state = tmp_path / "edge"

    def config(workers: int, worker: int) -> EdgeConfig:
        return EdgeConfig(state_dir=state, workers=workers, worker=worker,
                          session_store="lmdb" if workers > 1 else "memory")

    def batch(folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.jsonl.gz").write_bytes(b"")

    batch(state / "spool", "left-by-a-single-process")
    batch(state / "spool" / "w3", "left-by-a-third-worker")
    # two workers now: each its own folder; the first takes over what nobody owns
    assert spool_dir(config(2, 2)) == state / "spool" / "w2"
    own = spool_dir(config(2, 1))
    assert own == state / "spool" / "w1"
    assert sorted(p.name for p in own.iterdir()) == [
        "left-by-a-single-process.jsonl.gz", "left-by-a-third-worker.jsonl.gz"]
    # back to one process: the workers' batches come home
    batch(state / "spool" / "w2", "left-by-worker-2")
    assert spool_dir(config(1, 1)) == state / "spool"
    assert len(list((state / "spool").glob("*.jsonl.gz"))) == 3


def test_an_outcome_or_record_with_an_out_of_range_timestamp_is_a_400(tmp_path, free_port):
    from edge_module.host.decision_log import OutcomeError, outcome_record

    with_ts = {"session_id": "s", "type": "click", "ts_ms": 2**63}
    try:
        outcome_record(with_ts, T0, "salt", "edge")
    except OutcomeError as exc:
        assert exc.field == "ts_ms" and "at most" in exc.message
    else:
        raise AssertionError("an outcome from the year 292 million was taken")
    client = control_client(tmp_path, token=EDGE_TOKEN)
    answer = client.post("/v1/telemetry", data=json.dumps(
        {"kind": "outcome", "id": "o", "session": "s", "ts_ms": 2**63, "type": "click"}).encode())
    assert answer.status_code == 400 and "line 1" in answer.get_json()["error"]["message"]
