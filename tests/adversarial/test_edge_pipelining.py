"""The loop server (the default) under clients that pipeline decisions and never read the
answers, and under bodies cut in tiny chunks. A real edge host on loopback, the memory
session store (the event loop decides too), the real component.

What is checked: while connections hold pipelines of decisions they do not read, a visitor's
decision and `/healthz` are answered (or refused 503 at once), not held until the pipelines
are worked off (a review had a visitor wait 4.9-10.9 s, `/healthz` 11 s); a chunked body in
more chunks than its size warrants is refused 400 naming the bound, one within it decided.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from edge_module.http.loop_server import CHUNK_BYTES, FREE_CHUNKS
from loadtest.stack import EdgeStack, edge_stack
from tests.factories import T0

WAIT_S = 5.0  # a liveness bound, not a latency target: the stall it catches lasted 5-11 s


@pytest.fixture(scope="module")
def stack() -> Iterator[EdgeStack]:
    with socket.socket() as probe:  # a control plane that is down: outcomes are spooled
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with edge_stack("shipped", env_overrides={
            "EDGE_SERVER": "loop", "EDGE_THREADS": "2",
            "EDGE_CONTROL_URL": f"http://127.0.0.1:{dead}", "EDGE_TOKEN": "edge-token-for-tests",
            "EDGE_DECIDE_DEADLINE_MS": "1000"}) as running:
        yield running


def address(stack: EdgeStack) -> tuple[str, int]:
    host, port = stack.url.removeprefix("http://").split(":")
    return host, int(port)


def decide_body(session: str, size: int = 0) -> bytes:
    body = json.dumps({"session_id": session, "context": {"url": "/pricing"}, "events": [
        {"type": "page_view", "ts_ms": T0, "url": "/pricing"}]}).encode()
    return body[:-1] + b" " * max(0, size - len(body)) + b"}"  # JSON allows the padding


def post(body: bytes) -> bytes:
    return (b"POST /v1/decide HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def chunked(pieces: list[bytes]) -> bytes:
    return (b"POST /v1/decide HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")


def answer_of(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the one answer on `sock` (the server closes after it)."""
    sock.settimeout(WAIT_S)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")]
        if length and len(body) >= length[0]:
            break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def visitor(stack: EdgeStack, k: int) -> int:
    """A visitor's decision on a new connection: its status, or a timeout error (the
    stall) after WAIT_S."""
    req = urllib.request.Request(stack.url + "/v1/decide", data=decide_body(f"visitor-{k}"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_pipelines_never_read_do_not_hold_other_visitors(stack):
    """200 connections each pipeline 200 decisions and read none of the answers: each
    connection's next decision is started as soon as its previous answer is in the socket,
    so they keep the deciders busy until their windows shut. Meanwhile a visitor's
    decision and `/healthz` must be answered (200, or 503 at once if the edge is
    saturated): before, the event loop decided the queued pipelined requests back to back,
    one per connection per pass, reading no other socket in between."""
    request = post(decide_body("pipeliner"))
    attackers: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.connect(address(stack))
            sock.setblocking(False)
            try:
                for _ in range(200):
                    sock.send(request)
            except BlockingIOError:
                pass
            attackers.append(sock)
        statuses = []
        for k in range(4):
            statuses.append(visitor(stack, k))  # raises TimeoutError on a stall
            with urllib.request.urlopen(stack.url + "/healthz", timeout=WAIT_S) as resp:
                assert resp.status == 200
            time.sleep(0.2)
        assert set(statuses) <= {200, 503}, statuses
    finally:
        for sock in attackers:
            sock.close()
    assert visitor(stack, 99) == 200


def test_a_body_in_tiny_chunks_is_refused_naming_the_bound(stack):
    """A valid 20 KB body sent in 1-byte chunks: each chunk costs the event loop Python
    calls, so the cost would follow how the body is cut, not its bytes (200 KB cut so held
    every visitor for seconds); refused 400 once it has more than FREE_CHUNKS chunks beyond
    one per CHUNK_BYTES, and the connection closed."""
    body = decide_body("tiny-chunks", 20_000)
    with socket.create_connection(address(stack)) as sock:
        sender = threading.Thread(target=_send_all, args=(sock, chunked(
            [body[i:i + 1] for i in range(len(body))])))
        sender.start()
        status, answer = answer_of(sock)
        sender.join(WAIT_S)
    assert status == 400, (status, answer[:200])
    error = json.loads(answer)["error"]
    assert error["code"] == "too_many_chunks"
    assert str(FREE_CHUNKS) in error["message"] and str(CHUNK_BYTES) in error["message"]
    assert visitor(stack, 1) == 200


def test_a_body_in_small_chunks_within_the_bound_is_decided(stack):
    """FREE_CHUNKS tiny chunks are free, and chunks of CHUNK_BYTES never run out: 1,000
    1-byte chunks then 256-byte ones (about 1,400 chunks, 100 KB) are decided."""
    body = decide_body("small-chunks", 100_000)
    pieces = [body[i:i + 1] for i in range(1000)]
    pieces += [body[i:i + CHUNK_BYTES] for i in range(1000, len(body), CHUNK_BYTES)]
    assert len(pieces) > FREE_CHUNKS
    with socket.create_connection(address(stack)) as sock:
        sock.sendall(chunked(pieces))
        status, answer = answer_of(sock)
    assert status == 200, (status, answer[:200])
    assert "actions" in json.loads(answer)


def _send_all(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # refused and closed mid-body: expected
        pass
