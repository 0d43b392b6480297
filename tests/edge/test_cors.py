"""Issue #14, the edge host side: browser pages of the allowed origins may call /v1/decide and
/v1/outcome (CORS, text/plain JSON bodies, preflights); pages of any other origin are refused
before anything is decided or logged. Against a real host, on both servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from edge_module.host.config import ConfigError, EdgeConfig
from edge_module.http.cors import CorsPolicy
from loadtest.stack import EdgeStack, edge_stack
from tests.cases_decisions import OPENING
from tests.edge.raw_http import ALLOWED, BROWSER_TEXT, HOSTILE, Answer, request
from tests.factories import T0
from tests.servers import BUILD, stop_process, wait_for

pytestmark = pytest.mark.skipif(not (BUILD / "decision-engine.wasm").exists(),
                                reason="needs the component: python -m edge_module.build")
SERVERS = ("loop", "granian", "waitress")


def visit(session: str, now: int = 3200, events: Any = OPENING) -> dict[str, Any]:
    return {"session_id": session, "now_ms": T0 + now, "context": {"url": "/pricing"},
            "events": list(events)}


def from_page(origin: str = ALLOWED, **headers: str) -> dict[str, str]:
    """The headers of a fetch() from a page of `origin` with a JSON string body."""
    return {"Origin": origin, "Content-Type": BROWSER_TEXT, **headers}


def health(stack: EdgeStack) -> dict[str, Any]:
    return request(stack.url, "GET", "/healthz").json()  # type: ignore[no-any-return]


def assert_cors(answer: Answer, origin: str = ALLOWED) -> None:
    assert answer.headers["access-control-allow-origin"] == origin
    assert answer.headers["vary"] == "Origin"
    assert answer.headers["access-control-expose-headers"] == "Retry-After"


@pytest.fixture(scope="module", params=SERVERS)
def stack(request: pytest.FixtureRequest) -> Iterator[EdgeStack]:
    """An edge (with a control plane: outcomes are recorded) allowing one origin."""
    with edge_stack("shipped", telemetry=True, env_overrides={
            "EDGE_SERVER": request.param, "EDGE_THREADS": "2",
            "EDGE_ALLOWED_ORIGINS": f"{ALLOWED}, https://shop.example"}) as running:
        yield running


# -- the setting ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, hint", [
    ("http://127.0.0.1:8800/path", "write http://127.0.0.1:8800"),
    ("http://127.0.0.1:8800/", "write http://127.0.0.1:8800"),
    ("ftp://files.example", "http://host[:port] or https://host[:port]"),
    ("127.0.0.1:8800", "http://host[:port] or https://host[:port]"),
    ("https://Shop.Example", "'https://shop.example'"),
    ("https://shop.example:443", "'https://shop.example'"),
    ("*, https://shop.example", "give it alone"),
    ("null", "any page can send it"),
])
def test_an_origin_no_browser_would_send_is_refused_with_the_form_to_write(value, hint):
    with pytest.raises(ConfigError, match="EDGE_ALLOWED_ORIGINS") as refused:
        EdgeConfig.from_env({"EDGE_ALLOWED_ORIGINS": value})
    assert hint in str(refused.value)


def test_exact_origins_or_a_star_are_accepted():
    for value in ("", "*", "http://127.0.0.1:8800", " https://a.example , http://[::1]:8800 "):
        assert EdgeConfig.from_env({"EDGE_ALLOWED_ORIGINS": value}).allowed_origins == value


def test_the_host_does_not_start_with_a_bad_origin_setting():
    done = subprocess.run([sys.executable, "-m", "edge_module.host.server"],
                          env={**os.environ, "EDGE_ALLOWED_ORIGINS": "http://shop.example/x"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "EDGE_ALLOWED_ORIGINS" in done.stderr and "write http://shop.example" in done.stderr


def test_a_star_allows_every_origin_and_listed_origins_only_themselves():
    star = CorsPolicy("*").headers("http://anything.example")
    assert star is not None and ("Access-Control-Allow-Origin", "*") in star
    listed = CorsPolicy("https://shop.example")
    assert listed.headers("https://shop.example") is not None
    assert listed.headers("https://shop.example.evil.example") is None
    assert CorsPolicy("").headers("https://shop.example") is None


# -- decide and outcome from an allowed page --------------------------------------------------

def test_a_browser_fetch_with_a_text_plain_body_is_decided_and_readable(stack):
    answer = request(stack.url, "POST", "/v1/decide", visit("cors-1"), from_page())
    assert answer.status == 200, answer.body
    assert [a["trigger"] for a in answer.json()["actions"]] == ["pricing-discount"]
    assert answer.headers["content-type"] == "application/json"
    assert_cors(answer)


def test_every_listed_origin_is_answered_with_itself(stack):
    answer = request(stack.url, "POST", "/v1/decide", visit("cors-2"),
                     from_page("https://shop.example"))
    assert answer.status == 200
    assert_cors(answer, "https://shop.example")


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8",
                                          BROWSER_TEXT, "application/json"])
def test_text_plain_json_is_taken_exactly_like_application_json(stack, content_type):
    session = f"type-{content_type}"
    first = request(stack.url, "POST", "/v1/decide", visit(session, 1500),
                    {"Content-Type": content_type})
    assert first.status == 200 and first.json()["next_check_ms"] == T0 + 3000
    second = request(stack.url, "POST", "/v1/decide", visit(session, 3000, ()),
                     {"Content-Type": content_type})
    assert [a["trigger"] for a in second.json()["actions"]] == ["pricing-discount"]


def test_an_outcome_posted_by_the_page_is_recorded_and_readable(stack):
    decided = request(stack.url, "POST", "/v1/decide", visit("cors-3"), from_page()).json()
    action = decided["actions"][0]
    outcome = {"session_id": "cors-3", "type": "impression", "decision_id":
               decided["decision_id"], "trigger": action["trigger"],
               "outcome_token": action["outcome_token"]}
    answer = request(stack.url, "POST", "/v1/outcome", outcome, from_page())
    assert answer.status == 200 and "id" in answer.json()
    assert_cors(answer)


@pytest.mark.parametrize("path, body, status, code", [
    ("/v1/decide", b"{not json", 400, "invalid_json"),
    ("/v1/decide", b'{"session_id": ""}', 400, "invalid_request"),
    ("/v1/decide", b"x" * (256 * 1024 + 1), 413, "body_too_large"),
    ("/v1/outcome", (b'{"session_id": "s", "type": "click", "decision_id": "d", '
                     b'"outcome_token": "v1.0.AAAA"}'), 403, "invalid_outcome_token"),
])
def test_error_answers_carry_the_cors_headers_too(stack, path, body, status, code):
    answer = request(stack.url, "POST", path, body, from_page())
    assert (answer.status, answer.json()["error"]["code"]) == (status, code)
    assert_cors(answer)


@pytest.mark.parametrize("server", SERVERS)
def test_a_503_exposes_its_retry_after_to_the_page(tmp_path, free_port, server):
    # EDGE_MAX_PENDING=0 admits nothing: every decision is refused 503 with Retry-After
    # (granian then refuses /healthz as well, so the host is waited for by any answer)
    env = {**os.environ, "EDGE_SERVER": server, "EDGE_PORT": str(free_port),
           "EDGE_ALLOWED_ORIGINS": ALLOWED, "EDGE_MAX_PENDING": "0", "EDGE_CONTROL_URL": "",
           "TRIGGERS_STORE": str(tmp_path / "store"), "EDGE_STATE_DIR": str(tmp_path / "edge"),
           "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm"),
           "EDGE_CACHE_DIR": str(BUILD / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "edge_module.host.server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_for(lambda: _answers(url), what="the edge host to start")
        answer = request(url, "POST", "/v1/decide", visit("busy"), from_page())
        assert answer.status == 503 and answer.headers["retry-after"] == "1"
        assert_cors(answer)
    finally:
        stop_process(proc)


def _answers(url: str) -> bool:
    try:
        return request(url, "GET", "/healthz").status > 0
    except OSError:
        return False


# -- pages of other origins -----------------------------------------------------------------

def test_a_page_of_another_origin_is_refused_and_nothing_is_decided(stack):
    before = health(stack)
    answer = request(stack.url, "POST", "/v1/decide", visit("hostile-1"), from_page(HOSTILE))
    assert answer.status == 403
    assert answer.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in answer.headers
    after = health(stack)
    assert after["decisions"] == before["decisions"]
    assert after["sessions"] == before["sessions"]
    assert after["telemetry"]["recorded"] == before["telemetry"]["recorded"]
    assert after["origins_refused"] == before["origins_refused"] + 1


def test_an_outcome_from_another_origin_is_refused_and_not_logged(stack):
    decided = request(stack.url, "POST", "/v1/decide", visit("hostile-2")).json()
    action = decided["actions"][0]
    outcome = {"session_id": "hostile-2", "type": "click", "decision_id":
               decided["decision_id"], "trigger": action["trigger"],
               "outcome_token": action["outcome_token"]}
    before = health(stack)["telemetry"]["recorded"]
    answer = request(stack.url, "POST", "/v1/outcome", outcome, from_page(HOSTILE))
    assert (answer.status, answer.json()["error"]["code"]) == (403, "origin_not_allowed")
    assert health(stack)["telemetry"]["recorded"] == before


def test_an_origin_that_only_starts_like_an_allowed_one_is_refused(stack):
    for origin in (ALLOWED + ".evil.example", ALLOWED + "0", "null", ALLOWED.upper()):
        answer = request(stack.url, "POST", "/v1/decide", visit("hostile-3"), from_page(origin))
        assert answer.status == 403, origin


def test_requests_without_an_origin_are_served_as_before(stack):
    answer = request(stack.url, "POST", "/v1/decide", visit("server-1"),
                     {"Content-Type": "application/json"})
    assert answer.status == 200
    assert not {"access-control-allow-origin", "vary"} & set(answer.headers)


# -- preflight ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/decide", "/v1/outcome"])
def test_a_preflight_is_answered_204_for_a_day_without_deciding(stack, path):
    before = health(stack)["decisions"]
    answer = request(stack.url, "OPTIONS", path, headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert answer.status == 204 and answer.body == b""
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert answer.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert answer.headers["access-control-allow-headers"] == "Content-Type"
    assert answer.headers["access-control-max-age"] == "86400"
    assert "content-length" not in answer.headers or answer.headers["content-length"] == "0"
    assert health(stack)["decisions"] == before


def test_a_preflight_from_another_origin_is_refused(stack):
    answer = request(stack.url, "OPTIONS", "/v1/decide", headers={
        "Origin": HOSTILE, "Access-Control-Request-Method": "POST"})
    assert (answer.status, answer.json()["error"]["code"]) == (403, "origin_not_allowed")
    assert "access-control-allow-origin" not in answer.headers


def test_options_is_named_beside_post_for_a_wrong_method(stack):
    answer = request(stack.url, "GET", "/v1/decide")
    assert answer.status == 405 and answer.headers["allow"] == "POST, OPTIONS"


def test_a_head_answer_has_no_body_to_be_read_as_the_next_answer(stack):
    """HEAD /healthz on waitress sent the GET's JSON after the head: on a kept-alive
    connection it sat where the next answer's status line belongs."""
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 200"), rest[:80]  # the second answer, nothing between
