"""Slow and idle clients against a real control plane (the server `trigger-engine serve`
runs): an independent review stalled it, no token needed, with a hundred connections
sending nothing or one header byte every few seconds (waitress's timeout counts only
silence, and at its 100 connections it stopped accepting)."""

from __future__ import annotations

import socket
import threading
import time
from http.client import HTTPConnection
from typing import Any

import pytest

from tests.control_server import running_control
from tests.servers import EDGE_TOKEN, control_config, wait_for

REQUEST_TIMEOUT_S = 2.0


@pytest.fixture
def control(tmp_path):
    config = control_config(tmp_path, REQUEST_TIMEOUT_S=REQUEST_TIMEOUT_S, IDLE_TIMEOUT_S=3,
                            MAX_CONNECTIONS_PER_CLIENT=0)  # the tests' sockets are all ours
    with running_control(config) as server:
        yield server


def healthz(control: Any) -> int:
    conn = HTTPConnection("127.0.0.1", control.port, timeout=20)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def answer_status(sock: socket.socket) -> int:
    """The status of the next answer on `sock`, read whole (head and body)."""
    from http.client import HTTPResponse

    resp = HTTPResponse(sock)
    resp.begin()
    resp.read()
    return resp.status


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `within_s`."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class Trickler:
    """`count` connections each sending its request one byte every `every_s` seconds."""

    def __init__(self, port: int, count: int, request: bytes, every_s: float,
                 sent_at_once: bytes = b"") -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        for sock in self.socks:
            sock.sendall(sent_at_once)
        self.request, self.every_s = request, every_s
        self.closed: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for k in range(len(self.request)):
            for n, sock in enumerate(self.socks):
                if n in self.closed:
                    continue
                try:
                    sock.sendall(self.request[k:k + 1])
                except OSError:
                    self.closed.add(n)
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()


@pytest.mark.parametrize("part", ["head", "body"])
def test_a_request_trickled_a_byte_at_a_time_is_cut_at_its_deadline(control, part):
    body = b'{"kind": "outcome"}' * 50
    head = (f"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {EDGE_TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    trickler = (Trickler(control.port, 1, body, every_s=0.2, sent_at_once=head)
                if part == "body" else Trickler(control.port, 1, head, every_s=0.2))
    try:  # a byte every 0.2 s: never silent for waitress's idle timeout
        assert closed_by_server(trickler.socks[0], within_s=10 * REQUEST_TIMEOUT_S)
    finally:
        trickler.stop()


def test_more_slow_connections_than_waitress_took_leave_room_for_a_real_request(control):
    trickler = Trickler(control.port, 150, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                        every_s=0.5)
    try:
        time.sleep(0.5)  # all connected and started
        assert healthz(control) == 200
    finally:
        trickler.stop()
    assert healthz(control) == 200


def test_an_idle_connection_is_closed(control):
    sock = socket.create_connection(("127.0.0.1", control.port))
    try:
        assert closed_by_server(sock, within_s=20)
    finally:
        sock.close()


def test_a_keep_alive_client_that_keeps_asking_is_not_cut(control):
    """The deadline is per request, from its first byte: a connection that serves request
    after request for longer than it stays open."""
    conn = HTTPConnection("127.0.0.1", control.port, timeout=20)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 2 * REQUEST_TIMEOUT_S:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() and conn.sock is not None
            time.sleep(0.1)
    finally:
        conn.close()


def test_bare_line_ends_do_not_keep_a_connection_open(control):
    """A re-review held a thousand connections, and so the server, with a CRLF every 10 s:
    each pair completed an empty request, which restarted the clock."""
    trickler = Trickler(control.port, 1, b"\r\n" * 200, every_s=0.2)
    try:
        assert closed_by_server(trickler.socks[0], within_s=10 * REQUEST_TIMEOUT_S)
    finally:
        trickler.stop()


def test_one_client_address_holds_at_most_its_share_of_connections(tmp_path):
    config = control_config(tmp_path, MAX_CONNECTIONS_PER_CLIENT=20)
    with running_control(config) as control:
        held = [socket.create_connection(("127.0.0.1", control.port)) for _ in range(20)]
        try:
            extra = socket.create_connection(("127.0.0.1", control.port))
            try:
                assert closed_by_server(extra, within_s=20)
            finally:
                extra.close()
        finally:
            for sock in held:
                sock.close()
        def answered() -> bool:
            try:
                return healthz(control) == 200
            except OSError:  # closed: the server has not yet seen the others go
                return False

        wait_for(answered, what="room again once the address's connections are gone")


def test_a_keep_alive_connection_idle_a_while_then_uploading_steadily_is_not_cut(control):
    """The clock starts at a request's first byte, not at the last answer: a pooled
    connection, idle for a while, then sending a batch at a steady pace was cut."""
    body = b'{"kind": "outcome"}' * 8
    head = (f"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {EDGE_TOKEN}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", control.port), timeout=20)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer_status(sock) == 200
        time.sleep(0.75 * REQUEST_TIMEOUT_S)  # idle, within the idle timeout
        request = head + body
        for k in range(0, len(request), 16):  # the whole request in about 0.75 timeouts
            sock.sendall(request[k:k + 16])
            time.sleep(0.75 * REQUEST_TIMEOUT_S * 16 / len(request))
        assert answer_status(sock) == 200
    finally:
        sock.close()
