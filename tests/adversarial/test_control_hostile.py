"""A hostile client against a real control plane (waitress on loopback, with the options
`trigger-engine serve` uses): what an independent review confirmed, each case fixed at its
root and varied rather than replayed with the reviewer's numbers.

- a small gzip telemetry body inflating to millions of lines cost minutes and gigabytes;
- large telemetry batches held every thread; an unknown Content-Encoding lost the batch;
- an anonymous body of hundreds of MiB was buffered to disk before the 401;
- made-up HTTP methods each added a `/metrics` series, for good;
- fleet reports of any size from made-up edge ids were all kept, and shown to anyone;
- a fleet report kept every key it was sent, and half a character broke the fleet page;
- `?next=/<tab>/evil.example` took a signed-in browser off the console;
- long pack names, deep JSON, huge counters and odd digits answered 500;
- two conflicting packs stored at once made every publish fail;
- a problem in a stored pack showed the server's folders;
- the console could be framed.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import urllib.parse
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.blueprints.fleet import MAX_REPORT_BYTES
from control_plane.blueprints.telemetry import MAX_BATCH_LINES, MAX_INFLATED_BYTES
from tests.control_server import running_control
from tests.servers import EDGE_TOKEN, PUBLISHER_TOKEN, ROOT, control_config, http

METRICS_TOKEN = "metrics-token-for-tests"
VIEWER_TOKEN = "viewer-token-for-tests"
PUBLISHER = {"Authorization": f"Bearer {PUBLISHER_TOKEN}"}
EDGE = {"Authorization": f"Bearer {EDGE_TOKEN}"}
PRICING = (ROOT / "rules" / "pricing-discount.yaml").read_text()
SLOW = settings(max_examples=4, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory):
    config = control_config(tmp_path_factory.mktemp("control"), METRICS_TOKENS=METRICS_TOKEN,
                            VIEWER_TOKENS=VIEWER_TOKEN)
    with running_control(config) as server:
        yield server


def raw(control: Any, method: str, path: str, body: bytes = b"",
        headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    conn = HTTPConnection("127.0.0.1", control.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


@SLOW
@given(lines=st.integers(MAX_BATCH_LINES + 1, 40 * MAX_BATCH_LINES), blank=st.booleans(),
       end=st.sampled_from([b"\n", b"\r", b"\r\n"]))
def test_a_gzip_batch_of_too_many_lines_is_413_before_a_line_is_parsed(control, lines, blank,
                                                                       end):
    """Any line end splitlines() splits on counts: '\r' alone slipped past a count of
    '\n' (19 s and 744 MB for 8 KB of gzip)."""
    line = end if blank else b"1" + end
    body = gzip.compress(line * lines, 9)
    status, answer, _ = raw(control, "POST", "/v1/telemetry", body,
                            {**EDGE, "Content-Encoding": "gzip",
                             "Content-Type": "application/x-ndjson"})
    assert status == 413, answer
    assert json.loads(answer)["error"]["code"] == "batch_too_large"


def test_a_gzip_batch_inflating_past_its_bound_is_413(control):
    body = gzip.compress(b"x" * (MAX_INFLATED_BYTES + 1), 9)
    status, answer, _ = raw(control, "POST", "/v1/telemetry", body,
                            {**EDGE, "Content-Encoding": "gzip"})
    assert status == 413 and b"batch_too_large" in answer


def test_telemetry_batches_past_the_ingest_lane_are_503_and_the_rest_is_served(control):
    """A review held all four threads with large batches, one after another: /healthz, the
    reports and the console waited up to 15 s. Batches beyond the lane are sent again
    later by the edge (503); everything else keeps its threads."""
    lane = control.app.extensions["ingest_lane"]
    held = 0
    while lane.acquire(blocking=False):  # the lane full, as with batches being stored
        held += 1
    try:
        assert held == control.app.config["THREADS"] - 2
        status, answer, head = raw(control, "POST", "/v1/telemetry", b"", EDGE)
        assert status == 503 and json.loads(answer)["error"]["code"] == "busy"
        assert head["retry-after"] == "1"
        assert raw(control, "GET", "/healthz")[0] == 200
    finally:
        for _ in range(held):
            lane.release()
    assert raw(control, "POST", "/v1/telemetry", b"", EDGE)[0] == 200


@pytest.mark.parametrize("coding", ["deflate", "gzip, gzip", "br", "compress"])
def test_a_content_encoding_not_taken_is_415_not_a_batch_of_rejected_lines(control, coding):
    """Read as text, every line was rejected behind a 200, and the edge dropped them."""
    body = gzip.compress(b'{"kind": "outcome"}\n')
    status, answer, head = raw(control, "POST", "/v1/telemetry", body,
                               {**EDGE, "Content-Encoding": coding})
    assert status == 415 and json.loads(answer)["error"]["code"] == "unsupported_encoding"
    assert head["accept-encoding"] == "gzip"


def test_x_gzip_is_gzip(control):
    record = {"kind": "outcome", "id": "x-gzip-1", "session": "s", "ts_ms": 1764201600000,
              "type": "click"}
    status, answer, _ = raw(control, "POST", "/v1/telemetry",
                            gzip.compress(json.dumps(record).encode()),
                            {**EDGE, "Content-Encoding": "x-gzip"})
    assert status == 200 and json.loads(answer)["accepted"] + json.loads(answer)["duplicates"] == 1


def test_a_record_holding_a_number_json_has_not_is_refused_alone(control):
    """Python's json reads NaN and Infinity; stored, they would reach reports that strict
    JSON clients (browsers) cannot read."""
    good = {"kind": "outcome", "id": "finite-1", "session": "s", "ts_ms": 1764201600000,
            "type": "click"}
    bad = json.dumps({**good, "id": "nan-1"}).replace('"click"}', '"click", "x": NaN}')
    status, answer, _ = raw(control, "POST", "/v1/telemetry",
                            gzip.compress(f"{json.dumps(good)}\n{bad}\n".encode()),
                            {**EDGE, "Content-Encoding": "gzip"})
    done = json.loads(answer)
    assert status == 200 and done["accepted"] + done["duplicates"] == 1
    assert done["rejected_by_code"] == {"invalid_json": 1}


@pytest.mark.parametrize("path", ["/v1/telemetry", "/v1/packs/validate", "/sign-in"])
def test_an_oversized_body_is_refused_from_its_head_without_a_byte_of_it(control, path):
    """The head declares 300 MiB and no body follows: the answer must come anyway (before,
    waitress waited for the body and buffered it to disk, then Flask said 401)."""
    limit = control.app.config["MAX_REQUEST_BYTES"]
    with socket.create_connection(("127.0.0.1", control.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: {300 * 1024 * 1024}\r\n\r\n".encode() + b"a" * 100)
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert limit < 300 * 1024 * 1024


@pytest.mark.parametrize("times", [1.5, 3])
def test_a_body_somewhat_over_the_limit_gets_a_json_413_the_client_can_read(control, times):
    """Refused from its head, an 8 MB batch reached urllib as a connection reset, which the
    edge's shipper takes for an outage (it retries) rather than a 413 (it splits)."""
    body = b"x" * int(control.app.config["MAX_REQUEST_BYTES"] * times)
    status, answer, _ = http("POST", control.url + "/v1/telemetry", body,
                             {**EDGE, "Content-Type": "application/x-ndjson"})
    assert status == 413 and answer["error"]["code"], answer


def test_a_body_within_the_limit_still_reaches_the_routes(control):
    status, body, _ = http("POST", control.url + "/v1/packs/validate", PRICING,
                           {**PUBLISHER, "Content-Type": "application/yaml"})
    assert status == 200 and body["ok"] is True


def test_made_up_methods_do_not_add_metrics_series(control):
    methods = [f"X{k}{'Y' * (k * 97 % 300)}" for k in range(40)]
    for method in methods:
        raw(control, method, "/healthz")
    status, text, _ = raw(control, "GET", "/metrics",
                          headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200
    labels = set(re.findall(rb'method="([^"]*)"', text))
    assert labels <= {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS",
                      b"other"}
    assert b"other" in labels


def fleet_report(control: Any, report: Any) -> tuple[int, dict[str, Any]]:
    status, body, _ = http("POST", control.url + "/v1/fleet/report", report, EDGE)
    return status, body


@SLOW
@given(pad=st.integers(MAX_REPORT_BYTES, 4 * MAX_REPORT_BYTES))
def test_a_fleet_report_over_its_size_is_413_and_not_kept(control, pad):
    status, body = fleet_report(control, {"edge_id": f"padded-{pad}", "pad": "A" * pad})
    assert status == 413 and body["error"]["code"] == "report_too_large"
    _, fleet, _ = http("GET", control.url + "/v1/fleet")
    assert all(e["edge_id"] != f"padded-{pad}" for e in fleet["edges"])


def test_made_up_edge_ids_cannot_grow_the_fleet_past_its_bound(control):
    registry = control.app.extensions["fleet"]
    bound, registry.max_edges = registry.max_edges, 7
    try:
        for k in range(25):
            assert fleet_report(control, {"edge_id": f"ghost-{k}", "revision": "1"})[0] == 204
        status, fleet, _ = http("GET", control.url + "/v1/fleet")
        ids = {e["edge_id"] for e in fleet["edges"]}
        assert status == 200 and len(ids) == 7
        assert {f"ghost-{k}" for k in range(18, 25)} == ids  # the latest reports stay
    finally:
        registry.max_edges = bound


def test_a_fleet_report_keeps_only_what_its_schema_names(control):
    """The view is open to anyone: made-up keys were kept and served to all (an amplifier
    for whoever holds the shared edge token)."""
    report = {"edge_id": "extra-keys", "revision": "1", "html": "<b>x</b>",
              "not_in_schema": {"a": 1}, "channels": None,
              "telemetry": {"buffered": 3, "dropped_by_reason": {"spool_full": 2},
                            "deep": {"a": {"b": 1}}, "list": [1, 2]}}
    assert fleet_report(control, report)[0] == 204
    _, fleet, _ = http("GET", control.url + "/v1/fleet")
    [row] = [e for e in fleet["edges"] if e["edge_id"] == "extra-keys"]
    assert "html" not in row and "not_in_schema" not in row
    assert row["telemetry"] == {"buffered": 3, "dropped_by_reason": {"spool_full": 2},
                                "deep": {"a": None}, "list": None}


@pytest.mark.parametrize("route,token,body,field", [
    ("/v1/fleet/report", EDGE, {"edge_id": "sur-\ud800"}, "edge_id"),
    ("/v1/fleet/report", EDGE, {"edge_id": "e", "telemetry": {"x\udc00": 1}},
     "a key of telemetry"),
    ("/v1/fleet/report", EDGE, {"edge_id": "e", "sdk": {"files": ["\ud83d"]}}, "sdk.files[0]"),
    ("/v1/snapshots/rollback", PUBLISHER, {"revision": 1, "note": "\udfff"}, "note")])
def test_half_a_character_in_a_json_body_is_a_400_naming_where(control, route, token, body,
                                                              field):
    """Valid JSON ("\\ud800"), but no page or log can show it: a fleet report holding one
    made the console's fleet page answer 500 for everyone."""
    status, answer, _ = http("POST", control.url + route, body, token)
    assert status == 400 and answer["error"]["code"] == "invalid_unicode"
    assert answer["error"]["field"] == field
    _, head = sign_in(control, "/fleet", PUBLISHER_TOKEN)
    conn = HTTPConnection("127.0.0.1", control.port, timeout=10)
    conn.request("GET", "/fleet", headers={"Cookie": head["set-cookie"].split(";")[0]})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200


def test_the_fleet_keeps_reports_within_a_byte_budget_and_short_strings_in_objects(control):
    """A re-review made every anonymous GET /v1/fleet 43 MB with 3,000 made-up edges of
    14 KB each (schema fields only)."""
    registry = control.app.extensions["fleet"]
    budget, registry.max_bytes = registry.max_bytes, 20_000
    try:
        for k in range(12):
            report = {"edge_id": f"heavy-{k}", "last_error": "e" * 4000,
                      "telemetry": {"last_error": "t" * 3000}}
            assert fleet_report(control, report)[0] == 204
        _, fleet, _ = http("GET", control.url + "/v1/fleet")
        heavy = [e for e in fleet["edges"] if e["edge_id"].startswith("heavy-")]
        assert 1 <= len(heavy) <= 4 and "heavy-11" in {e["edge_id"] for e in heavy}
        assert len(heavy[0]["telemetry"]["last_error"]) == 1024
        assert len(heavy[0]["last_error"]) == 4000
    finally:
        registry.max_bytes = budget


@pytest.mark.parametrize("decisions", [2**63, 10**400, -1])
def test_a_counter_out_of_range_does_not_break_the_fleet_view(control, decisions):
    edge = f"counter-{len(str(decisions))}"
    assert fleet_report(control, {"edge_id": edge, "decisions": 1})[0] == 204
    assert fleet_report(control, {"edge_id": edge, "decisions": decisions})[0] == 204
    status, fleet, _ = http("GET", control.url + "/v1/fleet")
    [row] = [e for e in fleet["edges"] if e["edge_id"] == edge]
    assert status == 200 and row["decisions_per_s"] is None


@pytest.mark.parametrize("route,token", [("/v1/fleet/report", EDGE),
                                         ("/v1/snapshots/rollback", PUBLISHER)])
@pytest.mark.parametrize("depth", [2_000, 8_000])  # 16,000 bytes: within the report bound
def test_json_nested_thousands_deep_is_a_400(control, route, token, depth):
    status, body, _ = http("POST", control.url + route, "[" * depth + "]" * depth, token)
    assert status == 400, body
    assert body["error"]["code"] in ("invalid_json", "invalid_report", "invalid_request")


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
@pytest.mark.parametrize("length", [101, 300, 5_000])
def test_a_pack_name_too_long_for_a_file_is_a_400(control, method, length):
    name = "a" * length
    status, body, _ = http(method, f"{control.url}/v1/packs/{name}",
                           PRICING if method == "PUT" else None,
                           {**PUBLISHER, "Content-Type": "application/yaml"})
    assert status == 400 and body["error"]["code"] == "invalid_name"


def sign_in(control: Any, next_path: str, token: str = VIEWER_TOKEN) -> tuple[int, dict[str, str]]:
    """Sign in as a browser would, from `/sign-in?next=...`; the answer's status and head."""
    conn = HTTPConnection("127.0.0.1", control.port, timeout=10)
    try:
        query = urllib.parse.urlencode({"next": next_path})
        conn.request("GET", f"/sign-in?{query}")
        resp = conn.getresponse()
        page = resp.read().decode()
        cookie = resp.getheader("Set-Cookie", "").split(";")[0]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        nxt = re.search(r'name="next" value="([^"]*)"', page)
        form = {"csrf": csrf, "token": token, "name": "Eve",
                "next": nxt.group(1) if nxt else next_path}
        conn.request("POST", "/sign-in", body=urllib.parse.urlencode(form),
                     headers={"Cookie": cookie,
                              "Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


@pytest.mark.parametrize("target", ["/\t/evil.example/steal", "/\n/evil.example",
                                    "/\r\n/evil.example", "/ /evil.example", "/\\evil.example",
                                    "/\x0b/evil.example", "//evil.example"])
def test_sign_in_never_sends_the_browser_off_the_console(control, target):
    status, head = sign_in(control, target)
    assert status == 302
    location = head["location"]
    assert location == "/triggers"
    assert urllib.parse.urlsplit(location.replace("\t", "")).netloc == ""


def test_sign_in_still_returns_to_the_page_asked_for(control):
    status, head = sign_in(control, "/packs?x=1")
    assert status == 302 and head["location"] == "/packs?x=1"


@pytest.mark.parametrize("arg", ["²", "¹", "٣", "9" * 5_001, "1" * 19])
@pytest.mark.parametrize("page", ["/revisions/diff?old={}&new=1", "/revisions/rollback?revision={}"])
def test_odd_revision_numbers_in_console_pages_are_not_500(control, arg, page):
    conn = HTTPConnection("127.0.0.1", control.port, timeout=10)
    _, head = sign_in(control, "/triggers", PUBLISHER_TOKEN)
    cookie = head["set-cookie"].split(";")[0]
    conn.request("GET", page.format(urllib.parse.quote(arg)), headers={"Cookie": cookie})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status in (200, 400), resp.status


def test_two_conflicting_packs_put_at_once_are_not_both_stored(control, tmp_path):
    """Both declare trigger `dup-trigger`: exactly one may be stored, so publishing works."""
    def pack(name: str) -> str:
        return PRICING.replace("pack: pricing-discount", f"pack: {name}").replace(
            "id: pricing-discount", "id: dup-trigger")

    for round_ in range(4):
        names = [f"race-{round_}-a", f"race-{round_}-b"]
        answers: dict[str, int] = {}
        start = threading.Barrier(2)

        def put(name: str, start: threading.Barrier = start,
                answers: dict[str, int] = answers) -> None:
            start.wait()
            answers[name] = http("PUT", f"{control.url}/v1/packs/{name}", pack(name),
                                 {**PUBLISHER, "Content-Type": "application/yaml"})[0]

        threads = [threading.Thread(target=put, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(answers.values()) == [201, 422], answers
        status, body, _ = http("POST", control.url + "/v1/snapshots", {}, PUBLISHER)
        assert status in (200, 201), body
        stored = next(n for n, s in answers.items() if s == 201)
        assert http("DELETE", f"{control.url}/v1/packs/{stored}", None, PUBLISHER)[0] == 204


def test_a_problem_with_a_stored_pack_names_its_file_not_the_servers_folder(control):
    clash = PRICING.replace("pack: pricing-discount", "pack: clash")
    assert http("PUT", f"{control.url}/v1/packs/pricing-discount", PRICING,
                {**PUBLISHER, "Content-Type": "application/yaml"})[0] in (200, 201)
    status, body, _ = http("PUT", f"{control.url}/v1/packs/clash", clash,
                           {**PUBLISHER, "Content-Type": "application/yaml"})
    assert status == 422
    text = json.dumps(body)
    assert "pricing-discount.yaml" in text
    assert str(Path(control.config["DATA_DIR"])) not in text and "/tmp" not in text


@pytest.mark.parametrize("page", ["/sign-in", "/triggers", "/packs", "/revisions/publish"])
def test_console_pages_cannot_be_framed_or_run_scripts(control, page):
    status, _, head = raw(control, "GET", page)
    assert status in (200, 302)
    assert head["x-frame-options"] == "DENY"
    policy = head["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'none'" in policy


@pytest.mark.parametrize("digits", [4_301, 5_000, 40_000])
def test_a_number_of_thousands_of_digits_in_a_pack_is_a_422_at_its_position(control, digits):
    assert PRICING.rstrip().endswith("per_session: 1")
    text = PRICING.rstrip()[:-1] + "9" * digits + "\n"
    status, body, _ = http("POST", control.url + "/v1/packs/validate", text,
                           {**PUBLISHER, "Content-Type": "application/yaml"})
    assert status == 422, body
    problem = next(p for p in body["error"]["problems"] if "digits" in p["message"])
    assert problem["line"] == text.count("\n") and problem["column"] > 1
    assert "internal error" not in json.dumps(body)


def test_damaged_gzip_data_is_a_400_not_a_500(control):
    """zlib raises its own error on damaged deflate data: a 500, which the edge keeps
    sending for good (a 5xx says nothing against the batch)."""
    import os

    good = gzip.compress(os.urandom(2000).hex().encode())
    status, answer, _ = raw(control, "POST", "/v1/telemetry",
                            good[:12] + b"\xff" * 40 + good[52:],
                            {**EDGE, "Content-Encoding": "gzip"})
    assert status == 400 and json.loads(answer)["error"]["code"] == "invalid_gzip"
