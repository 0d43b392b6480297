"""Hostile HTTP clients against a real edge host (the loop server and granian, the real
component, a published snapshot): slow, idle and half-open connections, oversized bodies,
and stopping the host.

Each test reproduces a defect seen on an earlier main (issue #11, items 1, 2 and 12).
"""

from __future__ import annotations

import gzip
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loadtest.stack import EdgeStack, edge_stack, wait_for
from tests.factories import T0

BODY_TIMEOUT_S = 4.0  # the edge's deadline for a request body, in this module
MAX_BODY = 256 * 1024  # EdgeConfig.max_body_bytes's default
GOOD = json.dumps({
    "session_id": "good-visitor", "context": {"url": "/pricing", "device": "desktop"},
    "events": [{"type": "page_view", "ts_ms": T0, "url": "/pricing"},
               {"type": "scroll", "ts_ms": 1_764_201_601_000, "depth": 0.5, "y": 900}],
}).encode()


SERVERS = ("loop", "granian")  # the two that keep the slow-client guarantees


@pytest.fixture(scope="module", params=SERVERS)
def stack(request) -> Iterator[EdgeStack]:
    with edge_stack("shipped", env_overrides={
            "EDGE_SERVER": request.param,
            "EDGE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S), "EDGE_THREADS": "2",
            "EDGE_DECIDE_DEADLINE_MS": "1000"}) as running:
        yield running


def address(stack: EdgeStack) -> tuple[str, int]:
    host, port = stack.url.removeprefix("http://").split(":")
    return host, int(port)


def good_request(stack: EdgeStack, timeout_s: float) -> int:
    """A well-formed decision; its status (a stall shows as a timeout error)."""
    req = urllib.request.Request(stack.url + "/v1/decide", data=GOOD,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return resp.status


def health(stack: EdgeStack) -> dict:
    with urllib.request.urlopen(stack.url + "/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def open_hostile(stack: EdgeStack, kind: str) -> socket.socket:
    """One connection that never completes its request."""
    sock = socket.create_connection(address(stack))
    if kind == "partial_body":  # the head and 1 byte of a 1000-byte body
        sock.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: edge\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 1000\r\n\r\n{")
    elif kind == "head_only":  # a complete head, then nothing of its body
        sock.sendall(b"POST /v1/outcome HTTP/1.1\r\nHost: edge\r\nContent-Length: 10\r\n\r\n")
    elif kind == "partial_head":  # half-open: a head that never ends
        sock.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: edge\r\nContent-Le")
    elif kind == "chunked_trickle":  # a chunked body whose chunks stop coming
        sock.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: "
                     b"chunked\r\n\r\n1\r\n{\r\n")
    # "idle": connected, nothing sent
    return sock


def answered(sock: socket.socket) -> bool:
    """The server has written to `sock` or closed it (a stalled body's 408 has come)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    return True


def no_decision_pending(stack: EdgeStack) -> None:
    """Wait for /healthz to count no decision in flight: a decision thread sends its answer
    first and counts its decision out a moment later, so a client can be answered (and ask
    /healthz) while the decision it got still counts as pending."""
    wait_for(lambda: health(stack)["pending"] == 0, what="no decision pending")


KINDS = ("partial_body", "head_only", "partial_head", "chunked_trickle", "idle")


@pytest.mark.parametrize("count", [40, 1000])
def test_slow_idle_and_half_open_connections_do_not_delay_good_requests(stack, count):
    hostile = [open_hostile(stack, KINDS[n % len(KINDS)]) for n in range(count)]
    try:
        time.sleep(0.2)  # let the server take them all in
        # Every well-formed request is answered while all of them are still open; on the
        # old WSGI server two partial bodies held both decision threads indefinitely.
        for _ in range(10):
            assert good_request(stack, timeout_s=BODY_TIMEOUT_S / 2) == 200
            assert health(stack)["status"] == "ok"
    finally:
        for sock in hostile:
            sock.close()


def test_a_slow_sender_gets_408_and_is_closed(stack):
    before = health(stack)["slow_bodies"]
    sock = open_hostile(stack, "partial_body")
    try:
        sock.settimeout(BODY_TIMEOUT_S + 10)
        answer = b""
        while chunk := sock.recv(4096):  # read to the server's close
            answer += chunk
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert health(stack)["slow_bodies"] == before + 1


def test_a_decision_thread_never_waits_for_a_body(stack):
    """As many stalled bodies as there are decision threads, and more: decisions go on."""
    stalled = [open_hostile(stack, "partial_body") for _ in range(8)]
    try:
        assert all(good_request(stack, timeout_s=BODY_TIMEOUT_S / 2) == 200 for _ in range(5))
        # none of them holds a decision slot: the count of decisions falls to 0 while every
        # stalled body still waits for its answer (a decision thread answers before it
        # counts its decision out, so the 0 is waited for, not read once)
        no_decision_pending(stack)
        assert not [sock for sock in stalled if answered(sock)]
    finally:
        for sock in stalled:
            sock.close()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(MAX_BODY + 1, 16 * 1024 * 1024))
@example(size=16 * 1024 * 1024)  # the whole discard bound: every byte of it is read
@example(size=12 * 1024 * 1024)
def test_an_oversized_body_is_answered_413_that_the_client_can_read(stack, size):
    """urllib sends the whole body before reading: the edge reads and discards it (up to a
    bound) so the client gets the 413 instead of a connection reset."""
    req = urllib.request.Request(stack.url + "/v1/decide", data=b"x" * size,
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"]["code"] == "body_too_large"


def test_an_oversized_chunked_body_is_answered_413(stack):
    conn = http.client.HTTPConnection(*address(stack), timeout=30)
    try:
        chunks = (b"y" * 65536 for _ in range(MAX_BODY // 65536 + 4))
        conn.request("POST", "/v1/decide", body=chunks, encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["error"]["code"] == "body_too_large"
    finally:
        conn.close()


def test_concurrent_decisions_are_all_answered_among_stalled_bodies(stack):
    """Clients outnumbering the decision threads: the event loop decides too (while every
    thread is busy), and a stalled body still holds neither a thread nor the loop."""
    stalled = [open_hostile(stack, "partial_body") for _ in range(8)]
    statuses: list[int] = []

    def client() -> None:
        statuses.extend(good_request(stack, timeout_s=BODY_TIMEOUT_S / 2) for _ in range(25))

    try:
        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        assert statuses == [200] * 200
        no_decision_pending(stack)  # every decision counted out (see the test above)
    finally:
        for sock in stalled:
            sock.close()


def _session_request(session: str) -> bytes:
    return json.dumps({"session_id": session, "context": {"url": "/pricing"}, "events": [
        {"type": "page_view", "ts_ms": T0, "url": "/pricing"}]}).encode()


def _chunks(body: bytes, cuts: list[int]) -> bytes:
    edges = [0, *sorted({min(max(c, 1), len(body) - 1) for c in cuts}), len(body)]
    parts = [body[a:b] for a, b in itertools.pairwise(edges) if b > a]
    return b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts)


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(BODY_TIMEOUT_S * 2)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except OSError:  # reset: the answer, if any, is what came before
        pass
    return out


BROKEN = ("chunks_then_close", "bad_chunk_size", "length_then_half_close")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(BROKEN), cuts=st.lists(st.integers(1, 200), max_size=3))
def test_a_body_the_client_broke_off_is_never_decided(stack, how, cuts):
    """A chunked body that stops before its last chunk, or whose next chunk size is not
    one, was decided as if complete (a proxy retrying it would apply its events twice);
    a body cut short by a half-close was a 500 with a traceback in the log."""
    body = _session_request(f"broken-{how}-{len(cuts)}-{sum(cuts)}")
    head = b"POST /v1/decide HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
    before = health(stack)
    sock = socket.create_connection(address(stack))
    try:
        if how == "length_then_half_close":
            cut = min(max(cuts[0] if cuts else 5, 1), len(body) - 1)
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:cut])
            sock.shutdown(socket.SHUT_WR)
            answer = _read_all(sock)
        else:
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n" + _chunks(body, cuts))
            if how == "bad_chunk_size":
                sock.sendall(b"ZZZ-not-a-chunk-size\r\n")
                answer = _read_all(sock)
            else:
                time.sleep(0.2)
                sock.close()
                answer = b""
    finally:
        sock.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    after = wait_for(lambda: (h := health(stack))["broken_bodies"] > before["broken_bodies"]
                     and h, what="the broken body counted")
    assert after["decisions"] == before["decisions"]
    assert after["errors"] == before["errors"]


def test_a_complete_chunked_body_is_still_decided(stack):
    body = _session_request("chunked-whole")
    sock = socket.create_connection(address(stack))
    try:
        sock.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked"
                     b"\r\nConnection: close\r\n\r\n" + _chunks(body, [3, 17]) + b"0\r\n\r\n")
        answer = _read_all(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


@pytest.fixture()
def shipping_stack() -> Iterator[EdgeStack]:
    """An edge whose telemetry is on and whose control plane is down (records spool)."""
    with edge_stack("shipped", env_overrides={
            "EDGE_CONTROL_URL": f"http://127.0.0.1:{_free_port()}",
            "EDGE_TOKEN": "edge-token-for-tests",
            "EDGE_MAX_PENDING": "32"}) as running:  # fewer probes than flooders suffice
        yield running


def test_a_flood_of_health_probes_leaves_probes_and_outcomes_answered(shipping_stack):
    """300 connections looping on the public /healthz: each probe queued its own
    computation (a sorted glob of the telemetry spool) on the two side threads, sharing
    their bound with outcome reports, and both got 503 (or no answer). Probes now share
    one computation at a time."""
    stack = shipping_stack
    spool = stack.workdir / "edge" / "spool"  # a spool grown while the control plane is down
    assert spool.is_dir()
    for k in range(3000):
        (spool / f"backlog-{k:05d}.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    req = urllib.request.Request(stack.url + "/v1/decide", data=_session_request("flooded"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        decided = json.loads(resp.read())
    outcome = json.dumps({"session_id": "flooded", "decision_id": decided["decision_id"],
                          "type": "conversion",
                          "outcome_token": decided["outcome_token"]}).encode()

    def report() -> tuple[int, str]:
        """The outcome's answer (taken, 200), or its error code."""
        sent = urllib.request.Request(stack.url + "/v1/outcome", data=outcome,
                                      headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(sent, timeout=3) as resp:
                return resp.status, ""
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())["error"]["code"]

    baseline = report()
    assert baseline == (200, "")
    stop = time.monotonic() + 4.0

    def flood() -> None:
        try:
            with socket.create_connection(address(stack), timeout=10) as sock:
                while time.monotonic() < stop:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    got = sock.recv(1 << 20)
                    if not got:
                        return
                    flooded.append(got[9:12])
        except OSError:
            return

    flooded: list[bytes] = []
    flooders = [threading.Thread(target=flood) for _ in range(300)]
    for thread in flooders:
        thread.start()
    answers: list[tuple[int, int]] = []
    try:
        time.sleep(0.5)
        while time.monotonic() < stop - 0.3:
            probe = urllib.request.urlopen(stack.url + "/healthz", timeout=3).status
            answers.append((probe, report()))
    finally:
        for thread in flooders:
            thread.join()
    assert answers and all(a == (200, baseline) for a in answers), answers
    assert flooded and set(flooded) == {b"200"}  # the flood itself is answered too


SEND_TIMEOUT_S = 2.0


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("readers", [0, 3])
def test_clients_that_never_read_their_answers_lose_their_slots(readers, server):
    """Connections that pipeline requests and never read held their slots for ever (no
    send timeout in granian): with every slot taken, no visitor was served again. The
    kernel now closes a connection whose answer stays unread for EDGE_SEND_TIMEOUT_S."""
    slots = 12
    with edge_stack("shipped", env_overrides={
            "EDGE_SERVER": server, "EDGE_MAX_CONNECTIONS": str(slots),
            "EDGE_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S)}) as small:
        hostile = []
        for _ in range(slots + 2):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(address(small))
            sock.setblocking(False)
            try:
                sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
            except BlockingIOError:
                pass
            hostile.append(sock)
        # slow but honest readers beside them keep their connections
        honest = [http.client.HTTPConnection(*address(small), timeout=10)
                  for _ in range(readers)]
        try:
            time.sleep(SEND_TIMEOUT_S + 3)
            assert good_request(small, timeout_s=5) == 200
            for conn in honest:
                conn.request("GET", "/healthz")
                assert conn.getresponse().read()
            closed = sum(1 for sock in hostile if _reset(sock))
            assert closed >= 2  # the ones that were served and then stalled
        finally:
            for sock in hostile:
                sock.close()
            for conn in honest:
                conn.close()


def _reset(sock: socket.socket) -> bool:
    """The server gave up on `sock`: reading past what it sent ends in a reset or EOF."""
    sock.setblocking(True)
    sock.settimeout(2)
    try:
        while sock.recv(1 << 20):
            pass
    except (ConnectionResetError, TimeoutError, OSError) as exc:
        return not isinstance(exc, TimeoutError)
    return True


def test_the_edge_still_decides_after_all_of_that(stack):
    assert good_request(stack, timeout_s=5) == 200
    doc = health(stack)
    assert doc["errors"] == 0 and doc["traps"] == 0


ROOT = Path(__file__).resolve().parent.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ctrl_c_stops_an_idle_build_sh_up_within_seconds(tmp_path):
    """`./build.sh up`, with a visitor's idle keep-alive connection and a stalled body
    open, stops promptly on Ctrl-C (SIGINT to its process group), not after the drain
    timeout and a kill."""
    control_port, edge_port = _free_port(), _free_port()
    env = {**os.environ, "CONTROL_PORT": str(control_port), "EDGE_PORT": str(edge_port),
           "CONTROL_DATA_DIR": str(tmp_path / "control"),
           "TRIGGERS_STORE": str(tmp_path / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(tmp_path / "trusted"),
           "EDGE_STATE_DIR": str(tmp_path / "edge"), "EDGE_LOG_LEVEL": "INFO"}
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(ROOT / "build.sh"), "up"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        edge = f"http://127.0.0.1:{edge_port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{control_port}/healthz",
                                            timeout=1), \
                        urllib.request.urlopen(edge + "/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        keep_alive = http.client.HTTPConnection("127.0.0.1", edge_port, timeout=5)
        keep_alive.request("GET", "/healthz")
        keep_alive.getresponse().read()
        stalled = socket.create_connection(("127.0.0.1", edge_port))
        stalled.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: e\r\nContent-Length: 99\r\n\r\n{")
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            proc.wait(timeout=6)  # the drain timeout is 10 s: waiting it out fails here
        except subprocess.TimeoutExpired:
            alive = subprocess.run(["ps", "-o", "pid,stat,cmd", "-g", str(proc.pid)],
                                   capture_output=True, text=True).stdout
            pytest.fail(f"./build.sh up still running 6 s after Ctrl-C:\n{alive}\n"
                        f"{log.read_text()}")
        keep_alive.close()
        stalled.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
