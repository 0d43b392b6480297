"""The edge's status reports to the fleet view: one bounded exchange, no redirects."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edge_module.telemetry.status_report import StatusReporter


class _Control(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: tuple[int, dict[str, str]]) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Control

    def _note(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))
        status, headers = self.server.answer if self.path == "/v1/fleet/report" \
            else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = _note  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def control(request) -> Iterator[_Control]:
    server = _Control(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _reporter(url: str, timeout_s: float = 2.0) -> StatusReporter:
    return StatusReporter(url, "edge-token", lambda: {"edge_id": "pop-a", "revision": 3},
                          timeout_s=timeout_s)


@pytest.mark.parametrize("control", [(204, {})], indirect=True)
def test_a_report_is_posted_with_the_token(control):
    reporter = _reporter(f"http://127.0.0.1:{control.server_address[1]}")
    assert reporter.run_once() is True
    assert reporter.last_error is None
    [(method, path, body)] = control.seen
    assert (method, path) == ("POST", "/v1/fleet/report")
    assert json.loads(body) == {"edge_id": "pop-a", "revision": 3}


@pytest.mark.parametrize("control", [(301, {"Location": "/portal"}),
                                     (307, {"Location": "/portal"})], indirect=True)
def test_a_redirect_is_not_followed(control):
    """urllib followed it: the edge's report (and its token's effect) went to wherever a
    proxy in front pointed, and the portal's 200 counted as reported."""
    reporter = _reporter(f"http://127.0.0.1:{control.server_address[1]}")
    assert reporter.run_once() is False
    assert [path for _, path, _ in control.seen] == ["/v1/fleet/report"]
    assert reporter.last_error is not None and str(control.answer[0]) in reporter.last_error


@pytest.mark.parametrize("control", [(503, {})], indirect=True)
def test_an_error_answer_is_a_failed_report(control):
    reporter = _reporter(f"http://127.0.0.1:{control.server_address[1]}")
    assert reporter.run_once() is False
    assert reporter.last_error == "control plane answered 503 to the status report"


@pytest.mark.parametrize("control", [(401, {})], indirect=True)
def test_a_refused_token_says_which_setting_to_check(control):
    """An edge started without EDGE_TOKEN logged 401 after 401 with no hint."""
    reporter = _reporter(f"http://127.0.0.1:{control.server_address[1]}")
    assert reporter.run_once() is False
    assert "EDGE_TOKEN must be one of the control plane's edge tokens" in reporter.last_error


def test_an_answer_trickled_forever_does_not_hold_the_reporter():
    """A header a byte at a time: the socket's timeout bounds each read, never the call,
    and the edge's shutdown reports once more, so it waited as long as the trickle."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not stop.wait(0.2):
            try:
                conn.sendall(b"X")
            except OSError:
                break
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        reporter = _reporter(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=1.0)
        outcome: list[bool] = []
        running = threading.Thread(target=lambda: outcome.append(reporter.run_once()),
                                   daemon=True)
        running.start()
        running.join(30)
        assert not running.is_alive()  # it gave up on the answer
        assert outcome == [False] and "unreachable" in (reporter.last_error or "")
    finally:
        stop.set()
        listener.close()
