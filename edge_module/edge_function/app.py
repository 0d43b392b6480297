"""Guest entry of the edge function: wasi:http `incoming-handler` around the decision core.

The snapshot staged beside this file is loaded at import, so componentize-py's
pre-initialisation bakes it in: a fresh instance decides at once. The visitor carries the
session's state in a state token (as the host's EDGE_SESSION_STORE=client); nothing else is
kept. Configuration comes from the WASI environment on every request (an instance may be
reused or not, and pre-initialisation would freeze os.environ at build time):
EDGE_STATE_TOKEN_KEYS, EDGE_ALLOWED_ORIGINS, EDGE_SESSION_TTL_S, EDGE_MAX_BODY_BYTES,
EDGE_BODY_TIMEOUT_S.
"""

import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import unquote

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import environment, monotonic_clock, poll, types
from wit_world.imports.streams import StreamError_Closed

from edge_module.core import decide_parts, error_json, load_snapshot
from edge_module.core.snapshot_checks import too_deep
from edge_module.http.cors import PREFLIGHT_HEADERS, CorsPolicy
from edge_module.setting_bounds import MAX_REQUEST_TIMEOUT_S, MAX_SECONDS
from edge_module.state_token import EXPIRED, StateTokenError, StateTokens, parse_keys

SNAPSHOT = load_snapshot((Path(__file__).parent / "snapshot.json").read_text())
MAX_BODY_DEFAULT = 256 * 1024
TTL_DEFAULT_S = 1800.0
BODY_TIMEOUT_DEFAULT_S = 10.0  # as the host's EDGE_BODY_TIMEOUT_S
WRITE_CHUNK = 4096  # blocking-write-and-flush takes at most 4096 bytes a call

SETTINGS = ("EDGE_STATE_TOKEN_KEYS", "EDGE_ALLOWED_ORIGINS", "EDGE_SESSION_TTL_S",
            "EDGE_MAX_BODY_BYTES", "EDGE_BODY_TIMEOUT_S")

_config_cache: dict = {}


def error_body(code, message, field_name=None):
    err = {"code": code, "message": message}
    if field_name is not None:
        err["field"] = field_name
    return json.dumps({"error": err}).encode()


class ConfigError(ValueError):
    """A setting the function cannot use; the message names it and says what it expects."""


def _setting(env, name, default, parse):
    """`parse` of one setting (of `default` when unset or empty); its complaint, and any
    overflow, names the setting."""
    try:
        return parse(env.get(name) or default)
    except (ValueError, OverflowError) as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _number(kind, high=math.inf):
    """A parser of numbers of `kind` (int or float): finite, more than 0, at most `high`,
    as the host's numeric settings: -1 bytes would refuse every body, an infinite TTL has
    no milliseconds."""
    expected = (f"expected {'a whole' if kind is int else 'a finite'} number, more than 0"
                + ("" if high == math.inf else f" and at most {high}"))

    def parse(raw):
        try:
            value = kind(raw)
            fits = (kind is int or math.isfinite(value)) and 0 < value <= high
        except (ValueError, OverflowError):
            fits = False
        if not fits:
            raise ValueError(f"{raw!r}: {expected}")
        return value
    return parse


def _keys(raw):
    if not raw:
        raise ValueError("not set: expected kid:hexkey[,kid:hexkey...], the first signs "
                         "(32 random bytes: python -c 'import secrets; "
                         "print(secrets.token_hex(32))')")
    return parse_keys(raw)


_ttl_s = _number(float, MAX_SECONDS)
_body_timeout_s = _number(float, MAX_REQUEST_TIMEOUT_S)
_max_body = _number(int)


def _config():
    """(tokens, cors, max_body, body_timeout_s) for this environment, built once per
    distinct environment; ConfigError naming the first setting that cannot be used."""
    env = dict(environment.get_environment())
    key = tuple(env.get(name, "") for name in SETTINGS)
    if key not in _config_cache:
        keys = _setting(env, "EDGE_STATE_TOKEN_KEYS", "", _keys)
        cors = _setting(env, "EDGE_ALLOWED_ORIGINS", "", CorsPolicy)
        ttl_s = _setting(env, "EDGE_SESSION_TTL_S", str(TTL_DEFAULT_S), _ttl_s)
        max_body = _setting(env, "EDGE_MAX_BODY_BYTES", str(MAX_BODY_DEFAULT), _max_body)
        timeout_s = _setting(env, "EDGE_BODY_TIMEOUT_S", str(BODY_TIMEOUT_DEFAULT_S),
                             _body_timeout_s)
        tokens = StateTokens(keys, max(1, math.ceil(ttl_s * 1000)))
        _config_cache[key] = (tokens, cors, max_body, timeout_s)
    return _config_cache[key]


# What the host's parser (orjson) refuses, refused here too, before the stdlib's parser
# sees it: nesting past 1024 (deeper, the parser's C recursion overflowed the JS stack
# under jco and took the whole server down), text that is not UTF-8, NaN and Infinity,
# integers past a double, lone surrogates.
MAX_DEPTH = 1024
_LONG_INT = re.compile(r"\d{19,}")
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _float(text):
    """A number with a fraction or exponent; past a double (1e400, or 1 and 320 zeros
    with a fraction) refused, as orjson does."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _int(text):
    """orjson's integers: 64-bit ones exact, larger ones as floats, past a double refused."""
    if len(text) > 400:
        raise ValueError("number out of range")
    value = int(text)
    if -(2**63) <= value < 2**64:
        return value
    try:
        return float(value)
    except OverflowError:
        raise ValueError("number out of range") from None


def _utf8(value):
    """Whether every string and key in `value` is UTF-8 (no lone surrogate); no recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return True


def parse_json(raw):
    """The body as JSON on the host's terms (ValueError saying why not)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if too_deep(text, MAX_DEPTH):  # found without parsing: see snapshot_checks.too_deep
        raise ValueError("depth limit exceeded")
    value = json.loads(text, parse_constant=_no_constant,
                       parse_int=_int if _LONG_INT.search(text) else None,
                       parse_float=_float)
    if _SURROGATE.search(text) and not _utf8(value):
        raise ValueError("a string holds a lone surrogate (not UTF-8)")
    return value


def _without_token(request):
    """The request as the core reads it: its state token is the function's."""
    request.pop("state_token", None)
    return request


def decide(tokens, raw):
    """POST /v1/decide, as the host answers it in client mode."""
    started = time.perf_counter_ns()
    try:
        request = parse_json(raw)
    except (ValueError, RecursionError) as exc:
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
        # the parts as they are: packing them only to unpack them in this same guest
        # cost a marshal round trip of the request and of the answer
        response, new_state = decide_parts(SNAPSHOT, now_ms, state, request, False,
                                           lambda: _without_token(parse_json(raw)))
    except BaseException as exc:  # noqa: BLE001 - an error answer, never a trap
        err = json.loads(error_json(exc))
        if err.get("code") == "internal_error":  # a bug: its text goes to the log only
            traceback.print_exc(file=sys.stderr)
            return 500, error_body("internal_error", "internal error")
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


TOO_LARGE, TOO_SLOW, BROKEN = "too_large", "too_slow", "broken"


def read_body(request, limit, timeout_s):
    """The body; TOO_LARGE once it passes `limit` (read no further), TOO_SLOW when it has
    not all come within `timeout_s`, BROKEN when the runtime could not read it (malformed
    chunks, a connection gone mid-body: the client's body failed, not the function). Reads
    wait on the stream and a timer together: a blocking read waited for as long as the
    client liked, and a runtime that serves one request at a time (jco serve) stalled every
    visitor behind it."""
    # wasi:http resources form a tree: a child (the stream) must be dropped before its
    # parent (the body), or the host traps. `with` drops them in that order on every way
    # out (a temporary body would be freed, and dropped, while its stream is open).
    with request.consume() as incoming, incoming.stream() as stream:
        chunks, size = [], 0
        deadline = monotonic_clock.now() + int(timeout_s * 1e9)
        try:
            while True:
                chunk = stream.read(65536)
                if not chunk:
                    left = deadline - monotonic_clock.now()
                    if left <= 0:
                        return TOO_SLOW
                    with stream.subscribe() as readable, \
                            monotonic_clock.subscribe_duration(left) as timer:
                        poll.poll([readable, timer])
                    continue
                size += len(chunk)
                if size > limit:
                    return TOO_LARGE
                chunks.append(chunk)
        except Err as err:
            if not isinstance(err.value, StreamError_Closed):
                return BROKEN
        return b"".join(chunks)


def _path(target):
    """The path of a request target, %-escapes decoded as the host routes it (`/heal%74hz`
    is `/healthz`: the two answered differently). An absolute-form one (`POST
    http://x/v1/decide`, which a server must accept, RFC 9112 3.2.2) is its path, as the
    host and wasmtime route it; jco passes the target on whole."""
    target = target.split("?", 1)[0].split("#", 1)[0]
    if not target.startswith("/") and "://" in target:
        authority_and_path = target.split("://", 1)[1]
        slash = authority_and_path.find("/")
        target = authority_and_path[slash:] if slash >= 0 else "/"
    return (unquote(target, errors="replace") if "%" in target else target) or "/"


def route(request):
    """(status, body, headers) for one request."""
    method = request.method()
    path = _path(request.path_with_query() or "/")
    if path == "/healthz":
        if isinstance(method, (types.Method_Get, types.Method_Head)):
            return (*health(), [])
        return 405, error_body("method_not_allowed", "use GET for /healthz"), [
            ("Allow", "GET, HEAD")]
    if path != "/v1/decide":
        return 404, error_body("not_found", f"no route {path}"), []
    if not isinstance(method, (types.Method_Post, types.Method_Options)):
        # routed before the origin is screened, as the host routes (no CORS headers)
        return 405, error_body("method_not_allowed", "use POST for /v1/decide"), [
            ("Allow", "POST, OPTIONS")]
    try:
        tokens, cors, max_body, body_timeout_s = _config()
    except ConfigError as exc:  # no or bad keys, a bad origin or number: it says which
        return 500, error_body("misconfigured", f"edge function configuration: {exc}"), []
    with request.headers() as request_headers:  # the request's child: dropped before it
        origin = [v.decode("latin-1") for v in request_headers.get("origin")]
        length = request_headers.get("content-length")
    headers = []
    if origin:  # a browser page: only the allowed origins (one Origin, as browsers send)
        allowed = cors.headers(origin[0]) if len(origin) == 1 else None
        if allowed is None:
            return 403, error_body(
                "origin_not_allowed", "this page's origin may not call the edge (the edge's "
                "EDGE_ALLOWED_ORIGINS lists the origins that may)"), [("Vary", "Origin")]
        headers = list(allowed)
    if isinstance(method, types.Method_Options):
        return 204, b"", PREFLIGHT_HEADERS + headers
    declared = _declared_length(length)
    if declared is not None and declared > max_body:
        # refused before the body is consumed: the runtime sends a waiting client its
        # 100 Continue only when the body is read (wasmtime), and nothing is uploaded
        return 413, error_body("body_too_large", f"request body of {declared} bytes or "
                               f"more; at most {max_body}"), headers
    body = read_body(request, max_body, body_timeout_s)
    if body == BROKEN:
        return 400, error_body("incomplete_body", "the request body ended before it was "
                               "complete (connection closed, or malformed chunks)"), headers
    if body == TOO_LARGE:
        return 413, error_body("body_too_large", f"request body of more than {max_body} "
                               f"bytes; at most {max_body}"), headers
    if body == TOO_SLOW:
        return 408, error_body("request_timeout", f"the request body did not arrive within "
                               f"{body_timeout_s:g} s"), headers
    return (*decide(tokens, body), headers)


def _declared_length(values):
    """The Content-Length the client declared, or None (none, or not one 64-bit whole
    number: the runtime's parser judges those, and the read still counts)."""
    if len(values) == 1 and values[0].isdigit() and len(values[0]) <= 19:
        return int(values[0])
    return None


def respond(response_out, status, body, headers):
    fields = [(k.lower(), v.encode("latin-1")) for k, v in headers]
    if body:
        fields.append(("content-type", b"application/json"))
    response = types.OutgoingResponse(types.Fields.from_list(fields))
    response.set_status_code(status)
    out_body = response.body()
    types.ResponseOutparam.set(response_out, Ok(response))
    try:
        # the stream is the body's child: dropped (by `with`, even when a write fails)
        # before the body is finished
        with out_body.write() as stream:
            for i in range(0, len(body), WRITE_CHUNK):
                stream.blocking_write_and_flush(body[i:i + WRITE_CHUNK])
        types.OutgoingBody.finish(out_body, None)
    except Err:  # the client has gone (it sent half a body, or closed): no one to answer
        pass


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out):
        try:
            status, body, headers = route(request)
        except BaseException:  # noqa: BLE001 - a JSON 500, never a trap
            # the detail (a runtime's error object, a traceback) goes to the log, as the
            # host's does: it means nothing to the client and may name internals
            traceback.print_exc(file=sys.stderr)
            status, body, headers = 500, error_body("internal_error", "internal error"), []
        respond(response_out, status, body, headers)
