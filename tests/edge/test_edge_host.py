"""The edge host over real HTTP: wire contract, bad input, runaway guests, bad snapshots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.cases_decisions import CHECKOUT, OPENING, PRICING
from tests.factories import T0, snapshot_text
from tests.servers import (
    BUILD,
    TRUSTED_KEYS,
    healthy,
    http,
    put_snapshot,
    running_edge,
    stop_process,
    wait_for,
)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    put_snapshot(tmp_path / "store", snapshot_text(PRICING, CHECKOUT, revision="1"), 1)
    return tmp_path / "store"


@pytest.fixture
def edge(store_dir: Path):
    with running_edge(store_dir) as server:
        yield server


def visit(session: str, now: int, events=()) -> dict:
    return {"session_id": session, "now_ms": T0 + now, "context": {"url": "/pricing"},
            "events": list(events)}


def test_a_decision_follows_the_wire_contract(edge):
    status, body, headers = edge.decide(visit("w-1", 3200, OPENING))
    assert status == 200 and headers["Content-Type"] == "application/json"
    tokens = [action.pop("outcome_token") for action in body["actions"]]
    assert body["actions"] == [{"trigger": "pricing-discount", "content": "discount-nudge-10",
                                "tier": "immediate", "delay_ms": 0, "priority": 10}]
    # what the visitor's outcome reports must carry (one per action, one for the decision)
    assert all(t.startswith("v2.") for t in [*tokens, body["outcome_token"]])
    assert body["revision"] == "1"
    assert body["next_check_ms"] is None
    assert len(body["decision_id"]) == 32 and isinstance(body["latency_us"], int)
    # the component call is part of the host's time for the decision
    assert isinstance(body["component_us"], int) and 0 <= body["component_us"] <= body[
        "latency_us"]


def test_the_host_keeps_session_state_between_requests(edge):
    status, first, _ = edge.decide(visit("w-2", 1500, OPENING))
    assert status == 200 and first["actions"] == [] and first["next_check_ms"] == T0 + 3000
    _, second, _ = edge.decide(visit("w-2", 3000))
    assert [a["trigger"] for a in second["actions"]] == ["pricing-discount"]
    _, third, _ = edge.decide(visit("w-2", 4000))
    assert third["actions"] == []


def test_sessions_are_kept_apart(edge):
    _, first, _ = edge.decide(visit("w-3", 3200, OPENING))
    _, other, _ = edge.decide(visit("w-4", 3200, OPENING))
    assert first["actions"] and other["actions"]  # w-3's cap does not hold back w-4


def test_now_ms_defaults_to_the_host_clock(edge):
    now = int(time.time() * 1000)
    req = {"session_id": "w-5", "context": {"url": "/pricing"},
           "events": [{"type": "page_view", "ts_ms": now - 1000, "url": "/pricing"},
                      {"type": "scroll", "ts_ms": now - 900, "depth": 0.9}]}
    status, body, _ = edge.decide(req)
    assert status == 200 and body["actions"] == []
    assert body["next_check_ms"] == now - 1000 + 3000


@pytest.mark.parametrize("raw,code", [
    (b"[" * 100_000, "invalid_json"),  # nesting deeper than the parser recurses
    (b"{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b"[1, 2]", "invalid_request"),
    (b'{"events": []}', "invalid_request"),
    # not JSON, though a lax parser reads them: refused before they reach a session
    (b'{"session_id": "s", "now_ms": NaN}', "invalid_json"),
    (b'{"session_id": "s", "events": [{"type": "scroll", "ts_ms": 1, "y": Infinity}]}',
     "invalid_json"),
    (b'{"session_id": "\\ud800"}', "invalid_json"),  # a lone surrogate: not encodable
])
def test_malformed_bodies_get_a_json_400(edge, raw, code):
    status, body, _ = edge.decide(raw)
    assert status == 400 and body["error"]["code"] == code and body["error"]["message"]


def test_a_wrongly_typed_event_names_its_field(edge):
    status, body, _ = edge.decide(visit("w-6", 10, [{"type": "scroll", "ts_ms": "late"}]))
    assert status == 400
    error = body["error"]
    assert (error["code"], error["field"]) == ("invalid_event", "events[0].ts_ms")
    assert error["message"].startswith("ts_ms must be a non-negative number of ms")
    assert set(error) == {"code", "field", "message"}


def test_an_oversized_batch_gets_413(edge):
    events = [{"type": "mousemove", "ts_ms": T0 + i, "x": i, "y": i} for i in range(501)]
    status, body, _ = edge.decide(visit("w-7", 600, events))
    assert status == 413 and body["error"]["code"] == "batch_too_large"


def test_an_oversized_body_gets_413_before_parsing(edge):
    status, body, _ = edge.decide(b'{"session_id": "x", "pad": "' + b"x" * 300_000 + b'"}')
    assert status == 413 and body["error"]["code"] == "body_too_large"


def test_wrong_method_and_unknown_route_are_json_errors(edge):
    status, body, headers = http("GET", edge.url + "/v1/decide")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    assert headers["Allow"] == "POST, OPTIONS"  # OPTIONS: the CORS preflight
    status, body, _ = http("GET", edge.url + "/nope")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_healthz_reports_the_revision_and_instances(edge):
    health = edge.health()
    assert health["status"] == "ok" and health["revision"] == "1"
    assert health["instances"] == 2 and health["last_error"] is None


# -- faults: the host keeps serving ------------------------------------------------------------

# A decision that runs for seconds: 2,000 sustained conditions observed at each of 2,000
# events on /slow. No rule pack compiles to that; a hand-made snapshot can.
RUNAWAY = json.dumps({
    "format": "edge-triggers/1", "revision": "7", "limits": {"max_events": 5000},
    "triggers": [{"id": f"slow-{i}", "action": {"content": "x", "tier": "immediate"},
                  "when": [{"sustained": {"for_ms": 10**9, "when": [
                      {"signal": "dwell", "op": ">=", "value": 1}]}}]} for i in range(2000)],
    "index": {"exact": {"/slow": list(range(2000))}, "prefix": [], "any": []},
})


def test_a_runaway_guest_is_stopped_and_the_host_keeps_serving(tmp_path):
    put_snapshot(tmp_path / "store", RUNAWAY, 7)
    with running_edge(tmp_path / "store", decide_deadline_ms=50) as edge:
        poison = {"session_id": "r-1", "now_ms": T0, "context": {"url": "/slow"},
                  "events": [{"type": "scroll", "ts_ms": T0 + i, "y": i} for i in range(2000)]}
        status, body, _ = edge.decide(poison)
        assert status == 503 and body["error"]["code"] == "decision_aborted"
        assert "deadline" in body["error"]["message"]
        for i in range(4):  # every instance still answers (the trapped one was replaced)
            status, body, _ = edge.decide({"session_id": f"ok-{i}", "now_ms": T0,
                                           "context": {"url": "/fine"}})
            assert status == 200 and body["revision"] == "7"
        assert edge.health()["traps"] == 1


def test_a_page_of_many_triggers_is_decided_within_the_deadline_in_the_component(tmp_path):
    """A review's validated pack, 64 triggers of 4 conditions on one page: the plan compiled
    the page's bucket on its first decision, past the 50 ms deadline, in every fresh
    instance, and that page answered 503 for good."""
    from control_plane.rulepack import compile_snapshot, load_pack
    from tests.core.test_plan_differential import _wide_pack

    text = json.dumps(compile_snapshot([load_pack(_wide_pack(64, 4, "/wide"), "w.yaml")],
                                       "9", 0))
    put_snapshot(tmp_path / "store", text, 9)
    with running_edge(tmp_path / "store", decide_deadline_ms=50) as edge:
        answers = [edge.decide({"session_id": f"w-{i}", "now_ms": T0 + 5000,
                                "context": {"url": "/wide"},
                                "events": [{"type": "page_view", "ts_ms": T0, "url": "/wide"},
                                           {"type": "scroll", "ts_ms": T0 + 10, "depth": 0.9,
                                            "y": 900}]})
                   for i in range(6)]
        assert [status for status, _, _ in answers] == [200] * 6, answers[0][1]
        assert all(body["actions"] for _, body, _ in answers)
        assert edge.health()["traps"] == 0


def test_a_snapshot_that_fails_to_load_is_rejected_and_the_last_good_one_serves(edge, store_dir):
    put_snapshot(store_dir, '{"format": "edge-triggers/1", "revision": "2", "triggers": "no"}', 2)
    health = wait_for(lambda: (h := edge.health())["last_error"] and h, what="a sync error")
    assert "rejected" in health["last_error"] and health["revision"] == "1"
    status, body, _ = edge.decide(visit("f-1", 3200, OPENING))
    assert status == 200 and body["revision"] == "1" and body["actions"]


def test_a_corrupt_snapshot_object_is_rejected_by_its_content_hash(edge, store_dir):
    # the object is corrupt from the start: written good and then replaced, a host that
    # polled in between installed it (a race that failed this test on a busy machine)
    put_snapshot(store_dir, snapshot_text(PRICING, revision="2"), 2,
                 object_bytes=snapshot_text(CHECKOUT, revision="2").encode())
    health = wait_for(lambda: (h := edge.health())["last_error"] and h, what="a sync error")
    assert "content hash" in health["last_error"] and health["revision"] == "1"


def test_a_new_revision_is_picked_up_without_restart(edge, store_dir):
    put_snapshot(store_dir, snapshot_text(CHECKOUT, revision="2"), 2)
    wait_for(lambda: edge.health()["revision"] == "2", what="revision 2")
    _, body, _ = edge.decide(visit("n-1", 3200, OPENING))
    assert body["revision"] == "2" and body["actions"] == []


def test_a_host_without_any_snapshot_answers_503_until_one_arrives(tmp_path):
    with running_edge(tmp_path / "empty") as edge:
        status, body, _ = edge.decide(visit("e-1", 10))
        assert status == 503 and body["error"]["code"] == "no_snapshot"
        assert http("GET", edge.url + "/healthz")[0] == 503
        put_snapshot(tmp_path / "empty", snapshot_text(PRICING, revision="1"), 1)
        wait_for(lambda: edge.health()["revision"] == "1", what="first snapshot")
        assert edge.decide(visit("e-1", 3200, OPENING))[0] == 200


# -- saturation and shutdown ---------------------------------------------------------------------

def poison(session: str) -> dict:
    """A decision that runs past any deadline under RUNAWAY."""
    return {"session_id": session, "now_ms": T0, "context": {"url": "/slow"},
            "events": [{"type": "scroll", "ts_ms": T0 + i, "y": i} for i in range(2000)]}


def test_beyond_the_pending_bound_requests_get_503_with_retry_after(tmp_path):
    put_snapshot(tmp_path / "store", RUNAWAY, 7)
    with running_edge(tmp_path / "store", decide_deadline_ms=1000, max_pending=1) as edge:
        # the slow decision holds its slot until the next request has been answered (its
        # own deadline alone, 1 s, could run out first on a loaded machine: then the next
        # request would be decided, not refused)
        pool, release = edge.host.app.pool, threading.Event()
        real_decide = pool.decide_packed

        def held(envelope: str) -> object:
            release.wait(30)
            return real_decide(envelope)

        pool.decide_packed = held
        slow = threading.Thread(target=edge.decide, args=(poison("slow"),))
        slow.start()
        try:
            wait_for(lambda: edge.host.app.pending == 1, what="the slow decision to start")
            status, body, headers = edge.decide({"session_id": "next", "now_ms": T0})
        finally:
            pool.decide_packed = real_decide
            release.set()
            slow.join()
        assert status == 503 and body["error"]["code"] == "overloaded"
        assert headers["Retry-After"] == "1"
        assert edge.decide({"session_id": "after", "now_ms": T0})[0] == 200


def test_a_caller_that_must_not_wait_is_refused_at_once_while_every_instance_is_busy(tmp_path):
    # the granian server's event loop decides with wait=False: it must never block
    put_snapshot(tmp_path / "store", RUNAWAY, 7)
    with running_edge(tmp_path / "store", decide_deadline_ms=3000) as edge:
        app = edge.host.app
        # the slow decisions go straight to the app (the HTTP server's own scheduling of
        # them made the test depend on timing): each holds an instance for the deadline
        slow = [threading.Thread(target=app.decide_admitted,
                                 args=(json.dumps(poison(f"slow-{k}")).encode(),))
                for k in range(app.pool.size)]
        for thread in slow:
            thread.start()
        wait_for(lambda: app.pool.idle() == 0, what="every instance to be busy")
        status, body, headers = app.decide_admitted(
            json.dumps({"session_id": "now", "now_ms": T0}).encode(), wait=False)
        # answered while the slow decisions still run (a blocking checkout would have
        # waited for one of them to end, 3 s on): no clock in the assertion, so a loaded
        # machine cannot fail it
        still_running = [thread.is_alive() for thread in slow]
        for thread in slow:
            thread.join()
        assert status == 503 and body and headers == [("Retry-After", "1")]
        assert all(still_running)
        # trapped instances are replaced: once they are back, the caller is served
        wait_for(lambda: app.pool.idle() == app.pool.size, what="the instances back")
        assert app.decide_admitted(json.dumps({"session_id": "now", "now_ms": T0}).encode(),
                                   wait=False)[0] == 200


def test_sigterm_lets_the_in_flight_decision_finish_then_exits(tmp_path, free_port):
    put_snapshot(tmp_path / "store", RUNAWAY, 7)
    env = {**os.environ, "EDGE_PORT": str(free_port), "TRIGGERS_STORE": str(tmp_path / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(TRUSTED_KEYS), "EDGE_STATE_DIR": str(tmp_path / "edge"),
           "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm"),
           "EDGE_CACHE_DIR": str(BUILD / "cache"), "EDGE_CONTROL_URL": "",
           "EDGE_DECIDE_DEADLINE_MS": "1500"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_module.host.server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_for(lambda: healthy(url), what="the edge host to start")
        answers: list[int] = []
        slow = threading.Thread(
            target=lambda: answers.append(http("POST", url + "/v1/decide", poison("s"))[0]))
        slow.start()
        wait_for(lambda: http("GET", url + "/healthz")[1].get("pending") == 1, what="in flight")
        proc.send_signal(signal.SIGTERM)
        slow.join(timeout=10)
        assert answers == [503]  # the stopped decision still got its (JSON) answer
        assert proc.wait(timeout=10) == 0
        assert b"draining" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()




def test_several_worker_processes_share_each_sessions_state(tmp_path, free_port, store_dir):
    """EDGE_WORKERS=2 with the LMDB store: requests of one session land on either worker
    (each request opens a new connection) and every worker sees what the others decided."""
    env = {**os.environ, "EDGE_PORT": str(free_port), "TRIGGERS_STORE": str(store_dir),
           "TRIGGERS_TRUSTED_KEYS": str(TRUSTED_KEYS), "EDGE_STATE_DIR": str(tmp_path / "edge"),
           "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm"),
           "EDGE_CACHE_DIR": str(BUILD / "cache"), "EDGE_CONTROL_URL": "",
           "EDGE_WORKERS": "2", "EDGE_THREADS": "1", "EDGE_SESSION_STORE": "lmdb"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_module.host.server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_for(lambda: healthy(url), what="the edge host to start")
        workers = set()
        wait_for(lambda: workers.add(http("GET", url + "/healthz")[1]["edge_id"]) or
                 len(workers) == 2, what="both workers to answer")
        assert workers == {f"127.0.0.1:{free_port}/w1", f"127.0.0.1:{free_port}/w2"}
        for n in range(10):
            session = f"multi-{n}"
            _, first, _ = http("POST", url + "/v1/decide", visit(session, 1500, OPENING))
            assert first["actions"] == [] and first["next_check_ms"] == T0 + 3000
            _, second, _ = http("POST", url + "/v1/decide", visit(session, 3000))
            assert [a["trigger"] for a in second["actions"]] == ["pricing-discount"]
            for later in (4000, 5000, 6000):  # capped once per session, whichever worker
                _, again, _ = http("POST", url + "/v1/decide", visit(session, later))
                assert again["actions"] == []
        decided: dict[str, int] = {}  # per worker: both served some of the 50 decisions
        wait_for(lambda: [decided.__setitem__(h["edge_id"], h["decisions"]) for h in
                          [http("GET", url + "/healthz")[1]]] and len(decided) == 2,
                 what="both workers' counts")
        assert all(n > 0 for n in decided.values()) and sum(decided.values()) == 50
        sessions = http("GET", url + "/healthz")[1]["sessions"]
        assert sessions == 10  # one shared store, counted by either worker
    finally:
        stop_process(proc)


def test_several_workers_without_a_shared_session_store_are_refused(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edge_module.host.server"],
                          env={**os.environ, "EDGE_WORKERS": "2"}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "EDGE_WORKERS=2 needs a session store the worker processes share" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_session_store_location_that_cannot_be_used_is_refused_at_start(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "edge_module.host.server"],
                          env={**os.environ, "EDGE_SESSION_STORE": f"lmdb:{tmp_path}/file/s",
                               "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot open the session store" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("field, value", [("now_ms", 1e300), ("now_ms", 2**53),
                                          ("ts_ms", 18446744073709551616)])
def test_a_timestamp_too_large_to_stay_exact_is_a_400_and_changes_no_session(edge, field,
                                                                              value):
    req = json.loads(json.dumps(visit("huge-ts", 1500, OPENING)))  # OPENING stays as it is
    if field == "now_ms":
        req["now_ms"] = value
    else:
        req["events"][1]["ts_ms"] = value
    status, body, _ = edge.decide(json.dumps(req))
    assert status == 400 and body["error"]["field"] in ("now_ms", "events[1].ts_ms")
    assert "at most 9007199254740991" in body["error"]["message"]
    status, body, _ = edge.decide(visit("huge-ts", 1500, OPENING))
    assert status == 200 and body["next_check_ms"] == T0 + 3000  # a fresh session


def test_a_third_decision_for_one_session_is_refused_rather_than_parking_a_thread(store_dir):
    """One deciding and one waiting for the session's lock (two tabs) is the most a session
    takes in a process: a review parked every decision thread on one session's lock and
    slowed every other visitor 25-200x."""
    with running_edge(store_dir, threads=4) as edge:
        app = edge.host.app
        lock = app.sessions.lock("busy")
        other = next(s for s in (f"other-{k}" for k in range(100))
                     if app.sessions.lock(s) is not lock)
        answers: list[tuple] = []
        waiting = [threading.Thread(target=lambda: answers.append(
            edge.decide(visit("busy", 3200, OPENING)))) for _ in range(2)]
        with lock:  # a decision of this session holds it
            for thread in waiting:
                thread.start()
            wait_for(lambda: app._turns.get("busy") == 2, what="two decisions taking turns")
            status, body, headers = edge.decide(visit("busy", 3300))
            assert status == 429 and body["error"]["code"] == "session_busy"
            assert headers["Retry-After"] == "1"
            assert edge.decide(visit(other, 3200))[0] == 200  # other sessions go on
        for thread in waiting:
            thread.join()
        assert [a[0] for a in answers] == [200, 200] and "busy" not in app._turns
        assert edge.decide(visit("busy", 3400))[0] == 200


def test_a_bug_in_the_decision_module_is_told_to_the_log_not_the_visitor(caplog):
    """An internal error's text (`TypeError: ...`, a path, a value) went to the visitor;
    the edge function (docs/edge-deployment.md) promises the message `internal error`."""
    from edge_module.http.app import _guest_error

    with caplog.at_level("ERROR", logger="edge"):
        status, body, _ = _guest_error('{"code": "internal_error", "status": 500, '
                                       '"message": "TypeError: secret detail"}')
    assert (status, json.loads(body)) == (
        500, {"error": {"code": "internal_error", "message": "internal error"}})
    assert "TypeError: secret detail" in caplog.text
    # errors of the core's own (a snapshot not loaded yet...) keep their words
    status, body, _ = _guest_error('{"code": "not_ready", "status": 503, '
                                   '"message": "no snapshot is loaded yet"}')
    assert json.loads(body)["error"]["message"] == "no snapshot is loaded yet"
