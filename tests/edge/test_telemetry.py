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

import pytest

from control_plane.rulepack import compile_snapshot, load_pack_set
from control_plane.telemetry.telemetry_store import MIGRATIONS, TelemetryStore
from edge_module.telemetry.decision_log import decision_record
from edge_module.telemetry.log_spool import SPOOL_SUFFIX, DecisionLog, read_batch
from loadtest.stack import free_port as pick_port
from tests.control_server import ControlServer, running_control
from tests.factories import T0
from tests.servers import (
    BUILD,
    EDGE_TOKEN,
    ROOT,
    TRUSTED_KEYS,
    control_client,
    control_config,
    healthy,
    http,
    put_snapshot,
    running_edge,
    wait_for,
)


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


def outcome(session: str, kind: str = "click", decided: dict | None = None) -> dict:
    """An outcome of pricing-discount; with the decide answer `decided`, about that decision
    (its id and the action's outcome token)."""
    body = {"session_id": session, "trigger": "pricing-discount", "type": kind,
            "ts_ms": T0 + 5000}
    if decided is not None:
        token = next(a["outcome_token"] for a in decided["actions"]
                     if a["trigger"] == "pricing-discount")
        body.update(decision_id=decided["decision_id"], outcome_token=token)
    return body


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
    # sha256("salt" 0x1f "visitor-42"), first 32 hex digits
    assert rec["session"] == "37e4b819eafafc1a20f9b34bf89eb359"
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
        status, decided, _ = edge.decide(engaged("s"))
        assert status == 200
        status, body, _ = http("POST", url, outcome("s", decided=decided))
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
    assert first.get_json() == {"accepted": 5, "duplicates": 0, "rejected": [],
                                "rejected_by_code": {}}
    assert again.get_json()["accepted"] == 0 and again.get_json()["duplicates"] == 5


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


def test_ingest_needs_the_edge_token_and_rejects_malformed_records_one_by_one(tmp_path):
    assert control_client(tmp_path).post("/v1/telemetry", data=b"").status_code == 403
    client = control_client(tmp_path, token=EDGE_TOKEN)
    good = json.dumps({"kind": "outcome", "id": "o", "session": "s", "ts_ms": T0,
                       "type": "click"}).encode()
    answer = client.post("/v1/telemetry", data=b'{"kind": "decision", "id": "d"}\n' + good)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["accepted"] == 1 and body["rejected_by_code"] == {"invalid_record": 1}
    assert body["rejected"][0]["index"] == 0 and "session" in body["rejected"][0]["reason"]
    bad_gzip = client.post("/v1/telemetry", data=b"nope", headers={"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400


def test_the_store_migrates_to_the_latest_schema_once(tmp_path):
    TelemetryStore(tmp_path / "t.sqlite3")
    store = TelemetryStore(tmp_path / "t.sqlite3")  # opening again runs nothing twice
    assert store.query("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
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
                                           outcome(f"s{n}", decided=body))
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
        wait_for(lambda: healthy(url) or proc.poll() is not None, what="the edge host to start")
        assert proc.poll() is None
        return proc, url

    edge_port = pick_port()
    proc, url = start_edge(edge_port)
    answered = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal answered
        n = 0
        while not stop.is_set():
            try:
                status, body, _ = http("POST", url + "/v1/decide", engaged(f"k{n}"))
                if status == 200 and body.get("actions"):
                    http("POST", url + "/v1/outcome", outcome(f"k{n}", "impression", body))
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


def test_a_write_that_fails_part_way_keeps_only_what_is_not_in_a_file(tmp_path, monkeypatch):
    """A batch cut into several files, the second write failing with something other than
    an OSError: the first file stays and its records are not kept to be written again."""
    log = DecisionLog(tmp_path / "spool", "salt", "edge-1", max_batch_bytes=2000)
    for n in range(40):
        log.record({"kind": "outcome", "id": f"o{n:02d}", "session": "s" * 80, "ts_ms": T0})
    real_write = log._write
    writes = []

    def second_fails(batch):
        writes.append(len(batch))
        if len(writes) == 2:
            raise MemoryError("compressing")
        return real_write(batch)

    monkeypatch.setattr(log, "_write", second_fails)
    log.flush()
    first = writes[0]
    assert len(log.spool_files()) == 1 and log.spooled == first
    assert log.pending() == 40 - first and log.dropped == 0
    monkeypatch.undo()
    log.flush()
    assert sorted(spooled_ids(tmp_path / "spool")) == [f"o{n:02d}" for n in range(40)]
    assert log.pending() == 0 and log.spooled == 40


def test_records_being_written_still_count_as_pending(tmp_path, monkeypatch):
    """/healthz read `buffered: 0, spooled_files: 0` while a flush had taken the records and
    not yet renamed their file into the spool: "all shipped" with a batch in between."""
    log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
    for n in range(3):
        log.record({"id": f"r{n}", "kind": "outcome"})
    real_write = log._write
    seen = []

    def watched(batch):
        seen.append(log.pending())  # the lock is free meanwhile: /healthz can ask
        return real_write(batch)

    monkeypatch.setattr(log, "_write", watched)
    assert log.flush() is not None
    assert seen == [3] and log.pending() == 0 and log.spooled == 3


def _salt(state_dir: str, out) -> None:
    from edge_module.telemetry.decision_log import load_salt

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
    from edge_module.host.edge_host import spool_dir

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


def test_an_outcome_or_record_with_an_out_of_range_timestamp_is_refused(tmp_path):
    from edge_module.telemetry.decision_log import OutcomeError, outcome_record

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
    assert answer.status_code == 200
    assert answer.get_json()["rejected"][0]["index"] == 0 and answer.get_json()["accepted"] == 0


# Hostile fields, oversized and refused batches: every record delivered or counted dropped


def poisoned(session: str) -> dict:
    """A request whose context holds what no field should: objects, 2^63, a huge referrer
    with userinfo, a lone surrogate."""
    request = engaged(session)
    request["context"].update(device={"x": 1}, local_hour=2**63, country="\ud800" * 500,
                              url="https://user:secret@shop.example/" + "p" * 5000 + "?q=1",
                              referrer="https://user:secret@ads.example/" + "r" * 240_000)
    return request


def test_a_decision_record_bounds_every_field_and_strips_userinfo():
    response = {"decision_id": "d1", "revision": {"x": 1}, "latency_us": 2**70,
                "actions": [{"trigger": "t" * 10_000}] * 500,
                "suppressed": [{"trigger": "t2", "reason": ["holdout"]}, "junk"]}
    rec = decision_record(poisoned("s"), response, 2**80, "salt", "edge-1")
    ctx = rec["context"]
    assert ctx["device"] is None and ctx["local_hour"] is None
    assert ctx["url"].startswith("https://shop.example/") and len(ctx["url"]) == 1024
    assert ctx["referrer"].startswith("https://ads.example/") and len(ctx["referrer"]) == 1024
    assert "secret" not in json.dumps(rec) and len(ctx["country"]) == 128
    assert rec["revision"] is None and rec["latency_us"] is None and rec["ts_ms"] <= 2**53
    assert len(rec["fired"]) == 64 and {len(t) for t in rec["fired"]} == {128}
    assert rec["suppressed"] == [{"trigger": "t2", "reason": None}]
    json.dumps(rec, allow_nan=False).encode()  # always writable


def test_a_decision_record_from_any_json_context_is_storable():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from control_plane.telemetry.telemetry_store import check_record

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=5), inner, max_size=3), max_leaves=10)
    contexts = st.dictionaries(st.sampled_from(["device", "country", "local_hour", "url",
                                                "referrer", "attributes"]), values)
    events = st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["scroll", "page_view", "hover"]), "ts_ms": values,
         "depth": values, "duration_ms": values}), max_size=4)

    @settings(max_examples=60, deadline=None)
    @given(contexts, events, values)
    def check(context: dict, evs: list, now: object) -> None:
        request = {"session_id": "s", "context": context, "events": evs}
        rec = decision_record(request, {"decision_id": "d", "actions": []}, now, "k", "e")
        check_record(json.loads(json.dumps(rec, allow_nan=False)), 1)

    check()


def test_a_flush_that_fails_unexpectedly_keeps_its_records(tmp_path, monkeypatch):
    log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
    for n in range(3):
        log.record({"kind": "outcome", "id": f"o{n}", "session": "s", "ts_ms": T0})
    log.record({"kind": "outcome", "id": "set", "session": "s", "ts_ms": T0, "x": {1}})

    def surprise() -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(log, "spool_bytes", surprise)
    assert log.flush() is None and log.pending() == 4 and log.dropped == 0
    monkeypatch.undo()
    path = log.flush()
    assert path is not None and [r["id"] for r in read_batch(path)] == ["o0", "o1", "o2"]
    assert log.dropped_counts() == {"unserializable": 1} and log.pending() == 0


def test_batch_files_are_cut_by_bytes(tmp_path):
    log = DecisionLog(tmp_path / "spool", "salt", "edge-1", max_batch_bytes=2000)
    for n in range(40):
        log.record({"kind": "outcome", "id": f"o{n:02d}", "session": "s" * 80, "ts_ms": T0})
    log.flush()
    files = log.spool_files()
    assert len(files) > 1
    assert all(len(gzip.decompress(f.read_bytes())) <= 2000 for f in files)
    assert sorted(spooled_ids(tmp_path / "spool")) == [f"o{n:02d}" for n in range(40)]


def _outcome_records(count: int, pad: int = 0) -> list[dict]:
    """Outcome records with random ids (gzip cannot shrink them much)."""
    return [{"kind": "outcome", "id": os.urandom(16).hex(), "session": os.urandom(16).hex(),
             "ts_ms": T0, "type": "click", **({"pad": os.urandom(pad).hex()} if pad else {})}
            for _ in range(count)]


def _shipper(log: DecisionLog, url: str, **settings: int):
    from edge_module.telemetry.shipper import TelemetryShipper

    shipper = TelemetryShipper(log, url, EDGE_TOKEN, backoff_base_s=0.01, backoff_max_s=0.02)
    for name, value in settings.items():  # max_tries, max_set_aside
        setattr(shipper, name, value)
    return shipper


def _ship_until(shipper, done, what: str) -> None:
    def step() -> bool:
        shipper.next_attempt = 0.0
        shipper.run_once()
        return done()

    wait_for(step, 20, what)


def _small_bodies(tmp_path: Path) -> dict:
    """A control plane's configuration that refuses request bodies over 8 KiB."""
    limit = 8 * 1024
    return control_config(tmp_path, MAX_REQUEST_BYTES=limit, MAX_PACK_BYTES=limit)


def test_a_batch_over_the_body_limit_is_split_until_it_fits(tmp_path):
    with running_control(_small_bodies(tmp_path)) as control:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        records = _outcome_records(400)
        for rec in records:
            log.record(rec)
        log.flush()
        assert len(log.spool_files()) == 1  # one batch, far over the control plane's limit
        shipper = _shipper(log, control.url, max_tries=3)
        db = Path(control.config["DATA_DIR"]) / "telemetry.sqlite3"
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        assert sorted(stored_ids(db)) == sorted(r["id"] for r in records)
        status = shipper.status()
        assert status["split_batches"] >= 3 and status["dropped"] == 0


def test_a_single_record_over_the_body_limit_is_set_aside_and_counted(tmp_path):
    with running_control(_small_bodies(tmp_path)) as control:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        log.max_batch_bytes = 6 * 1024
        good = _outcome_records(30)
        huge = _outcome_records(1, pad=20_000)  # alone in its file, still over the limit
        for rec in good[:15] + huge + good[15:]:
            log.record(rec)
        log.flush()
        shipper = _shipper(log, control.url, max_tries=3)
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        db = Path(control.config["DATA_DIR"]) / "telemetry.sqlite3"
        assert sorted(stored_ids(db)) == sorted(r["id"] for r in good)
        status = shipper.status()
        assert status["dropped_by_reason"] == {"set_aside:too_large": 1}
        assert status["set_aside_files"] == 1 and status["dropped"] == 1


def test_records_the_control_plane_rejects_are_counted_dropped_with_the_reason(tmp_path):
    with running_control(control_config(tmp_path)) as control:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        good = _outcome_records(5)
        bad = [{**good[0], "id": "bad-1", "type": {"x": 1}},
               {**good[0], "id": "bad-2", "ts_ms": 2**63}]
        for rec in good[:2] + bad + good[2:]:
            log.record(rec)  # straight into the log: as an older or buggy edge would send
        shipper = _shipper(log, control.url)
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        db = Path(control.config["DATA_DIR"]) / "telemetry.sqlite3"
        assert sorted(stored_ids(db)) == sorted(r["id"] for r in good)
        assert shipper.status()["dropped_by_reason"] == {"rejected:invalid_record": 2}


class _Refusing:
    """A control plane stand-in on loopback: `status` to any batch holding a record whose
    id starts with "poison" (while `poisoning`; to every batch while `failing`), 200
    (stores the ids) to the others."""

    def __init__(self, status: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stored = self.stored = []
        self.posts = 0
        self.status, self.failing, self.poisoning = status, False, True
        self.answer: tuple[int, bytes, dict[str, str]] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - where a redirect points: a portal
                self._plain(200, b"<html>welcome</html>")

            def _plain(self, status: int, body: bytes, **headers: str) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                outer.posts += 1
                length = int(self.headers["Content-Length"])
                if outer.answer is not None:  # not the ingest: a portal, a redirect
                    self.rfile.read(length)
                    self._plain(*outer.answer[:2], **outer.answer[2])
                    return
                body = gzip.decompress(self.rfile.read(length))
                ids = [json.loads(line)["id"] for line in body.splitlines()]
                if outer.failing or (outer.poisoning
                                     and any(i.startswith("poison") for i in ids)):
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                stored.extend(ids)
                answer = json.dumps({"accepted": len(ids), "duplicates": 0}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _poisoned_spool(log: DecisionLog) -> tuple[list[str], list[str]]:
    """Five batch files of 3 records, the 1st, 3rd and 5th holding a "poison" record: the
    ids of the good batches' records and of the poisoned ones'."""
    good: list[str] = []
    poisoned: list[str] = []
    for n in range(5):
        batch = _outcome_records(3)
        if n % 2 == 0:
            batch[1]["id"] = f"poison-{n}"
        (poisoned if n % 2 == 0 else good).extend(r["id"] for r in batch)
        for rec in batch:
            log.record(rec)
        log.flush()
    return good, poisoned


def test_a_batch_refused_again_and_again_is_set_aside_and_nothing_behind_it_waits(tmp_path):
    control = _Refusing(400)
    try:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        good, _ = _poisoned_spool(log)
        shipper = _shipper(log, control.url, max_tries=3, max_set_aside=2)
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        assert sorted(control.stored) == sorted(good)
        status = shipper.status()
        # three poison batches of 3 records, each refused 3 times; 2 files kept
        assert status["dropped_by_reason"] == {"set_aside:http_400": 9}
        assert status["set_aside_batches"] == 3 and status["set_aside_files"] == 2
        assert control.posts == 2 + 3 * 3
        assert status["failures"] == 0  # the control plane answered: no global backoff
    finally:
        control.close()


def test_a_batch_the_control_plane_fails_on_is_kept_and_holds_no_other_back(tmp_path):
    """A 5xx says nothing against the batch (a bug or a proxy answers it for any batch):
    a review saw every batch set aside, and so lost, while a control plane answered 500."""
    control = _Refusing(500)
    try:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        good, poisoned = _poisoned_spool(log)
        shipper = _shipper(log, control.url, max_tries=3)
        _ship_until(shipper, lambda: sorted(control.stored) == sorted(good),
                    "the good batches delivered")
        for _ in range(20):  # far past max_tries for the poisoned ones
            shipper.next_attempt = 0.0
            shipper._not_before.clear()
            shipper.run_once()
        assert len(log.spool_files()) == 3 and shipper.status()["dropped"] == 0
        assert shipper.status()["set_aside_batches"] == 0
        control.poisoning = False  # the control plane mended
        control.stored.clear()
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        assert sorted(control.stored) == sorted(poisoned)
    finally:
        control.close()


@pytest.mark.parametrize("answer", [
    (301, b"", {"Location": "/portal"}), (302, b"", {"Location": "/portal"}),
    (303, b"", {"Location": "/portal"}), (307, b"", {"Location": "/v1/telemetry"}),
    (308, b"", {"Location": "/v1/telemetry"}), (103, b"", {}),
    (200, b"<html>sign in</html>", {}),
    (200, b'{"ok": true}', {}), (204, b"", {})])
def test_an_answer_that_is_not_the_ingests_keeps_the_batch(tmp_path, answer):
    """A re-review lost batches without a count: urllib followed a 301 to a POST as a
    GET without it and took the portal's 200 as delivered; a 307/308 was set aside."""
    control = _Refusing(200)
    control.answer = answer
    try:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        records = _outcome_records(3)
        for rec in records:
            log.record(rec)
        shipper = _shipper(log, control.url, max_tries=2)
        for _ in range(5):
            shipper.next_attempt = 0.0
            shipper.run_once()
        status = shipper.status()
        assert len(log.spool_files()) == 1 and status["dropped"] == 0
        assert status["shipped_batches"] == 0 and status["set_aside_batches"] == 0
        assert status["failures"] > 0 and status["last_error"]
        control.answer = None  # the URL mended
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        assert sorted(control.stored) == sorted(r["id"] for r in records)
    finally:
        control.close()


def test_a_damaged_batch_file_is_set_aside_and_the_others_go_on(tmp_path):
    """A third review stopped all telemetry with one spool file of damaged gzip data: zlib
    raised its own error, which nothing caught, twice a second, for good."""
    with running_control(control_config(tmp_path)) as control:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        damaged = tmp_path / "spool" / f"{'0' * 20}-1-000001{SPOOL_SUFFIX}"
        good = gzip.compress(os.urandom(2000).hex().encode())
        damaged.write_bytes(good[:12] + b"\xff" * 40 + good[52:])  # zlib.error, no OSError
        records = _outcome_records(6)
        for rec in records:
            log.record(rec)
        shipper = _shipper(log, control.url, max_tries=2)
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        db = Path(control.config["DATA_DIR"]) / "telemetry.sqlite3"
        assert sorted(stored_ids(db)) == sorted(r["id"] for r in records)
        assert shipper.status()["set_aside_files"] == 1


def test_counts_no_integer_holds_in_an_ingest_answer_are_not_counted(tmp_path):
    control = _Refusing(200)
    control.answer = (200, b'{"accepted": 1, "duplicates": 0, "rejected_by_code": '
                           b'{"bad": 1e999, "odd": -3}}', {})
    try:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        log.record(_outcome_records(1)[0])
        shipper = _shipper(log, control.url)
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        assert shipper.status()["dropped"] == 0 and control.posts == 1
    finally:
        control.close()


@pytest.mark.parametrize("status", [500, 501, 505])
def test_a_control_plane_answering_5xx_to_everything_loses_nothing(tmp_path, status):
    control = _Refusing(status)
    control.failing = True
    try:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        records = _outcome_records(12)
        for k, rec in enumerate(records):
            log.record(rec)
            if k % 3 == 2:
                log.flush()
        shipper = _shipper(log, control.url, max_tries=2)
        for _ in range(20):
            shipper.next_attempt = 0.0
            shipper._not_before.clear()
            shipper.run_once()
        assert shipper.status()["failures"] > 0  # it backs off: the control plane is away
        assert shipper.status()["dropped"] == 0 and len(log.spool_files()) == 4
        control.failing = False
        _ship_until(shipper, lambda: not log.spool_files(), "the spool emptied")
        assert sorted(control.stored) == sorted(r["id"] for r in records)
    finally:
        control.close()


def test_a_store_that_cannot_write_is_unavailable_not_a_bad_batch(tmp_path):
    """A store that is down (here: its file gone and a folder in its place) answers
    'unavailable' (503: the edge keeps the batch), never a 500 the edge would hold
    against the batch and in the end set aside."""
    from control_plane.telemetry.telemetry_store import SinkUnavailable

    db = tmp_path / "telemetry.sqlite3"
    store = TelemetryStore(db)
    for leftover in tmp_path.glob("telemetry.sqlite3*"):
        leftover.unlink()
    db.mkdir()
    failures: list[BaseException] = []

    def ingest() -> None:  # a new thread: a new connection, which cannot open the file
        try:
            store.ingest([{"kind": "decision", "id": "d1", "edge_id": "e", "session": "s",
                           "ts_ms": T0}])
        except BaseException as exc:  # noqa: BLE001 - inspected below
            failures.append(exc)

    worker = threading.Thread(target=ingest)
    worker.start()
    worker.join()
    assert len(failures) == 1 and isinstance(failures[0], SinkUnavailable)


@pytest.mark.parametrize("trickle", [b"HTTP/1.1 100 Continue\r\n\r\n", b"X"])
def test_an_answer_trickled_forever_does_not_hold_the_shipper(tmp_path, trickle):
    """A final review held the shipper, and all telemetry, with '100 Continue' sent again
    and again, or a header a byte a second: the socket's timeout bounds each read only."""
    import socket as sockets

    listener = sockets.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        if trickle == b"X":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not stop.wait(0.2):
            try:
                conn.sendall(trickle)
            except OSError:
                break
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        log.record(_outcome_records(1)[0])
        shipper = _shipper(log, f"http://127.0.0.1:{listener.getsockname()[1]}")
        shipper._timeout = 1.0
        running = threading.Thread(target=shipper.run_once, daemon=True)
        running.start()
        running.join(30)
        assert not running.is_alive()  # it gave up on the answer
        assert len(log.spool_files()) == 1 and shipper.status()["last_error"]
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("status", [503, 429])
def test_the_wait_a_busy_control_plane_asks_for_is_kept(tmp_path, status):
    """The ingest answers 503 busy with Retry-After: 1 when its lane is full; the shipper
    came back within a quarter second (its own backoff) and was refused again."""
    import time

    control = _Refusing(status)
    control.answer = (status, b"", {"Retry-After": "7"})
    try:
        log = DecisionLog(tmp_path / "spool", "salt", "edge-1")
        log.record(_outcome_records(1)[0])
        shipper = _shipper(log, control.url)
        shipper.backoff_max_s = 30.0  # the ceiling on what is obeyed
        for _ in range(3):  # a 5xx holds the batch alone first, then backs off for all
            shipper.next_attempt = 0.0
            shipper.run_once()
        now = time.monotonic()
        waits = [shipper.next_attempt - now] + [t - now for t in shipper._not_before.values()]
        assert control.posts >= 1 and log.spool_files()
        assert max(waits) > 6.5 and min(w for w in waits if w > 0) > 6.5
        control.answer = (status, b"", {"Retry-After": "86400"})  # a day: capped
        shipper.next_attempt = 0.0
        shipper._not_before.clear()
        shipper.run_once()
        assert shipper.next_attempt - time.monotonic() <= 30.0
        assert all(t - time.monotonic() <= 30.0 for t in shipper._not_before.values())
    finally:
        control.close()


@pytest.mark.parametrize(("value", "seconds"), [
    ("7", 7.0), (" 0 ", 0.0), ("-3", None), ("soon", None), ("", None), (None, None),
    ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0), ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),
    ("9" * 40, float(1 << 32)), ("٣", None)])
def test_retry_after_is_read_as_seconds_or_a_date(value, seconds):
    from edge_module.http_deadline import retry_after_s

    assert retry_after_s(value, now=40.0) == seconds
