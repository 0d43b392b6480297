"""Guest entry of the edge function: wasi:http `incoming-handler` around the decision core.

The snapshot staged beside this file is loaded at import, so componentize-py's
pre-initialisation bakes it in: a fresh instance decides at once. The visitor carries the
session's state in a state token (as the host's EDGE_SESSION_STORE=client); nothing else is
kept. Configuration comes from the WASI environment on every request (an instance may be
reused or not, and pre-initialisation would freeze os.environ at build time):
EDGE_STATE_TOKEN_KEYS, EDGE_ALLOWED_ORIGINS, EDGE_SESSION_TTL_S, EDGE_MAX_BODY_BYTES.
"""

import json
import os
import time
from pathlib import Path

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import environment, types
from wit_world.imports.streams import StreamError_Closed

from edge_module.core import decide_packed, error_json, load_snapshot, pack, unpack
from edge_module.http.cors import PREFLIGHT_HEADERS, CorsPolicy
from edge_module.state_token import EXPIRED, StateTokenError, StateTokens, parse_keys

SNAPSHOT = load_snapshot((Path(__file__).parent / "snapshot.json").read_text())
MAX_BODY_DEFAULT = 256 * 1024
TTL_DEFAULT_S = 1800.0
WRITE_CHUNK = 4096  # blocking-write-and-flush takes at most 4096 bytes a call

_config_cache: dict = {}


def error_body(code, message, field_name=None):
    err = {"code": code, "message": message}
    if field_name is not None:
        err["field"] = field_name
    return json.dumps({"error": err}).encode()


def _config():
    """(tokens, cors, max_body) for this environment, built once per distinct environment."""
    env = dict(environment.get_environment())
    key = tuple(env.get(name, "") for name in (
        "EDGE_STATE_TOKEN_KEYS", "EDGE_ALLOWED_ORIGINS", "EDGE_SESSION_TTL_S",
        "EDGE_MAX_BODY_BYTES"))
    if key not in _config_cache:
        keys, origins, ttl, max_body = key
        tokens = StateTokens(parse_keys(keys), int(float(ttl or TTL_DEFAULT_S) * 1000))
        _config_cache[key] = (tokens, CorsPolicy(origins), int(max_body or MAX_BODY_DEFAULT))
    return _config_cache[key]


def decide(tokens, raw):
    """POST /v1/decide, as the host answers it in client mode."""
    started = time.perf_counter_ns()
    try:
        request = json.loads(raw)
    except ValueError as exc:
        return 400, error_body("invalid_json", f"request body is not valid JSON: {exc}")
    if type(request) is not dict:
        return 400, error_body("invalid_request", "the request body must be a JSON object")
    session_id = request.get("session_id")
    if type(session_id) is not str or not session_id:
        return 400, error_body("invalid_request", "session_id must be a non-empty string",
                               "session_id")
    state_token = request.pop("state_token", None)
    now_ms = time.time_ns() // 1_000_000
    state = None
    if state_token is not None:
        try:
            state = tokens.open(state_token, session_id, now_ms)
        except StateTokenError as exc:
            if exc.code != EXPIRED:
                return 400, error_body(exc.code, exc.message, "state_token")
    called = time.perf_counter_ns()
    try:
        response, new_state = unpack(decide_packed(SNAPSHOT, pack((now_ms, state, request))))
    except BaseException as exc:  # noqa: BLE001 - an error answer, never a trap
        err = json.loads(error_json(exc))
        return int(err.pop("status", 400)), json.dumps({"error": err}).encode()
    component_ns = time.perf_counter_ns() - called
    try:
        response["state_token"] = tokens.seal(session_id, new_state, now_ms)
    except StateTokenError:  # over the token bound: the session starts over, as the host's
        response["state_token"] = tokens.seal(session_id, None, now_ms)
    response.pop("report", None)
    # push, email and webhook actions need the edge host's outbox and timer (delays,
    # retries across restarts); a function has neither: they are never the visitor's
    response.pop("deliveries", None)
    response["decision_id"] = os.urandom(16).hex()
    response["latency_us"] = (time.perf_counter_ns() - started) // 1000
    response["component_us"] = component_ns // 1000
    return 200, json.dumps(response, separators=(",", ":")).encode()


def health():
    return 200, json.dumps({"status": "ok", "revision": SNAPSHOT.revision,
                            "session_store": "client"}).encode()


def read_body(request, limit):
    """The body, or None when it is longer than `limit` (read no further than that)."""
    stream = request.consume().stream()
    chunks, size = [], 0
    try:
        while True:
            chunk = stream.blocking_read(65536)
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    except Err as err:
        if not isinstance(err.value, StreamError_Closed):
            raise
    finally:
        stream.__exit__(None, None, None)
    return b"".join(chunks)


def route(request):
    """(status, body, headers) for one request."""
    method = request.method()
    path = (request.path_with_query() or "/").split("?", 1)[0]
    if path == "/healthz":
        if isinstance(method, (types.Method_Get, types.Method_Head)):
            return (*health(), [])
        return 405, error_body("method_not_allowed", "use GET for /healthz"), [
            ("Allow", "GET, HEAD")]
    if path != "/v1/decide":
        return 404, error_body("not_found", f"no route {path}"), []
    try:
        tokens, cors, max_body = _config()
    except ValueError as exc:  # no or bad keys, a bad origin or number: say which
        return 500, error_body("misconfigured", f"edge function configuration: {exc}"), []
    origin = [v.decode("latin-1") for v in request.headers().get("origin")]
    headers = []
    if origin:  # a browser page: only the allowed origins
        allowed = cors.headers(origin[0])
        if allowed is None:
            return 403, error_body(
                "origin_not_allowed", "this page's origin may not call the edge (the edge's "
                "EDGE_ALLOWED_ORIGINS lists the origins that may)"), [("Vary", "Origin")]
        headers = list(allowed)
    if isinstance(method, types.Method_Options):
        return 204, b"", PREFLIGHT_HEADERS + headers
    if not isinstance(method, types.Method_Post):
        return 405, error_body("method_not_allowed", "use POST for /v1/decide"), [
            ("Allow", "POST, OPTIONS")] + headers
    body = read_body(request, max_body)
    if body is None:
        return 413, error_body("body_too_large", f"request body of more than {max_body} "
                               f"bytes; at most {max_body}"), headers
    return (*decide(tokens, body), headers)


def respond(response_out, status, body, headers):
    fields = [(k.lower(), v.encode("latin-1")) for k, v in headers]
    if body:
        fields.append(("content-type", b"application/json"))
    response = types.OutgoingResponse(types.Fields.from_list(fields))
    response.set_status_code(status)
    out_body = response.body()
    types.ResponseOutparam.set(response_out, Ok(response))
    stream = out_body.write()
    for i in range(0, len(body), WRITE_CHUNK):
        stream.blocking_write_and_flush(body[i:i + WRITE_CHUNK])
    stream.__exit__(None, None, None)
    types.OutgoingBody.finish(out_body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out):
        try:
            status, body, headers = route(request)
        except BaseException as exc:  # noqa: BLE001 - a JSON 500, never a trap
            status, body, headers = 500, error_body("internal_error", str(exc)[:200]), []
        respond(response_out, status, body, headers)
