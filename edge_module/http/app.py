"""The edge host's HTTP API as an object apart from any server: `POST /v1/decide`,
`POST /v1/outcome` (and their CORS preflights), `GET /healthz`, `GET /openapi.json`, the
browser SDK's files under `/sdk/` and `GET /metrics` (with EDGE_METRICS_TOKEN), routed
through one table.

Plain handlers rather than a framework: this is the hot path, and all a decision does is
parse the body once, fetch the session state, call the component and splice the answer.
`EdgeApp` is also a WSGI callable (waitress); the granian server reads bodies on its event
loop and calls the same handlers (`granian_server.py`). `edge_host.py` builds it.

Longer than most modules on purpose: a request's whole path (route, CORS, body limits,
session lease, component call, telemetry) reads top to bottom in one place, which is what
someone chasing a latency or an error needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ..channels.dispatcher import ChannelDispatcher
from ..channels.outbox import OutboxError
from ..channels.records import delivery_records
from ..core.api import pack_envelope, unpack
from ..distribution.snapshot_sync import SnapshotSync
from ..host.config import EdgeConfig
from ..runtime.component import GuestTrap
from ..runtime.pool import InstancePool, PoolBusy
from ..sessions.lmdb_session_store import LmdbSessionStore
from ..sessions.session_store import (
    MemorySessionStore,
    SessionStore,
    SessionStoreUnavailable,
)
from ..state_token import EXPIRED, StateTokenError, StateTokens, parse_keys
from ..telemetry.decision_log import OutcomeError, outcome_record
from ..telemetry.log_spool import DecisionLog
from ..telemetry.shipper import TelemetryShipper
from .cors import PREFLIGHT_HEADERS, CorsPolicy
from .metrics import EdgeMetrics, check_bearer
from .outcome_tokens import OutcomeTokens, TokenError, load_key
from .sdk_files import SdkFile, SdkFiles, etag_matches

log = logging.getLogger("edge.host")

StartResponse = Callable[..., Any]
JSON = "application/json"
_STATUS = {200: "200 OK", 204: "204 No Content", 304: "304 Not Modified",
           400: "400 Bad Request", 401: "401 Unauthorized", 403: "403 Forbidden",
           404: "404 Not Found", 405: "405 Method Not Allowed", 408: "408 Request Timeout",
           413: "413 Payload Too Large", 415: "415 Unsupported Media Type",
           422: "422 Unprocessable Entity", 429: "429 Too Many Requests",
           500: "500 Internal Server Error",
           503: "503 Service Unavailable"}
MAX_OUTCOME_BYTES = 16 * 1024
# Decisions of one session in one process at once: one deciding, one waiting for its lock
# (two tabs of a visit); a third is refused (429 session_busy) rather than park a thread
SESSION_TURNS = 2

Headers = list[tuple[str, str]]
Reply = tuple[int, bytes, Headers]
NO_HEADERS: Headers = []  # shared: never appended to
BODILESS = (204, 304)  # answers without content, hence without Content-Type or -Length


class Counters:
    """What went wrong or right, by name, counted from any thread (shown by /healthz)."""

    NAMES = ("decisions", "errors",
             "aborted",  # decisions whose guest was stopped (deadline, memory)
             "busy",
             "slow_bodies",  # request bodies that did not arrive within the deadline (408)
             "oversized",  # request bodies over their route's limit (413)
             "broken_bodies",  # bodies the client broke off or framed wrong (400)
             "outcomes_refused",  # outcome reports without a valid token
             "origins_refused")  # browser requests from an origin not allowed (403)

    def __init__(self) -> None:
        self._counts = dict.fromkeys(self.NAMES, 0)
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _seal(carried: StateTokens, session_id: str, state: bytes, now_ms: int) -> str:
    """The state's token; over the token bound (never, for a state within the core's 16 KiB
    budget: `state_token.DEFAULT_MAX_BYTES`) the session starts over, as a store does with
    a state it cannot keep."""
    try:
        return carried.seal(session_id, state, now_ms)
    except StateTokenError as exc:
        log.warning("session %r: %s; the session starts over", session_id[:64], exc.message)
        return carried.seal(session_id, None, now_ms)


def error_body(code: str, message: str, field_name: str | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if field_name is not None:
        err["field"] = field_name
    return json.dumps({"error": err}).encode()


@dataclass(frozen=True)
class Route:
    """One endpoint: its method, handler, body limit, and where an asynchronous server runs
    it: `decide` (a decision thread, admitted against EDGE_MAX_PENDING), `side` (a thread
    of its own: never queued behind decisions) or `loop` (at once: constant work)."""

    method: str
    handler: Callable[[bytes], Reply]
    max_body: int = 0  # 0: no body expected
    lane: str = "loop"
    cors: bool = False  # browsers may call it: the Origin rule applies (`EdgeApp.screen`)
    etag: str = ""  # its answer's entity tag: If-None-Match may get a 304
    guarded: bool = False  # the caller must present the metrics token (`EdgeApp.screen`)


class EdgeApp:
    """The edge host's endpoints, independent of the HTTP server that carries them: a
    handler takes the request body (already read whole, within its limit) and returns
    (status, body, extra headers). `__call__` serves them as WSGI (waitress); the granian
    server reads bodies asynchronously first (`granian_server.py`)."""

    def __init__(self, pool: InstancePool, sessions: SessionStore, sync: SnapshotSync | None,
                 config: EdgeConfig, clock_ms: Callable[[], int] | None = None) -> None:
        self.pool = pool
        self.sessions = sessions
        self.sync = sync
        self.config = config
        self.counters = Counters()
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.edge_id = config.edge_id or f"{config.host}:{config.port}"
        self.started_ms = self._clock_ms()
        self.draining = False
        self.pending = 0  # decisions waiting for or holding an instance
        self._pending_lock = threading.Lock()
        self._turns: dict[str, int] = {}  # session id -> its decisions in this process
        self.decision_log: DecisionLog | None = None  # set when telemetry is on
        self.shipper: TelemetryShipper | None = None  # ... and what ships it
        self.channels: ChannelDispatcher | None = None  # push, email, webhook deliveries
        self.crm_key = bytes.fromhex(config.crm_id_key) if config.crm_id_key else None
        self.metrics: EdgeMetrics | None = None  # set when metrics are served
        self.tokens = OutcomeTokens(load_key(config.outcome_key, config.state_dir),
                                    int(config.outcome_window_s * 1000))
        # EDGE_SESSION_STORE=client: the visitor carries the state; `sessions` keeps nothing
        self.state_tokens = (StateTokens(parse_keys(config.state_token_keys),
                                         int(config.session_ttl_s * 1000))
                             if config.session_store == "client" else None)
        self.routes: dict[str, Route] = {
            "/v1/decide": Route("POST", self.decide, config.max_body_bytes, lane="decide"),
            "/v1/outcome": Route("POST", self.outcome, MAX_OUTCOME_BYTES, lane="side"),
            "/healthz": Route("GET", lambda _body: self.health(), lane="side"),
            "/openapi.json": Route("GET", lambda _body: self.openapi()),
        }
        if config.metrics_token:  # else not on the public port (perhaps on its own address)
            self.routes["/metrics"] = Route("GET", self.metrics_page, lane="side", guarded=True)
        for path in ("/v1/decide", "/v1/outcome"):
            self.routes[path] = replace(self.routes[path], cors=True)
        self.cors = CorsPolicy(config.allowed_origins)
        self.preflight = Route("OPTIONS", lambda _body: (204, b"", PREFLIGHT_HEADERS),
                               cors=True)
        self.origin_refused: Reply = (403, error_body(
            "origin_not_allowed", "this page's origin may not call the edge (the edge's "
            "EDGE_ALLOWED_ORIGINS lists the origins that may)"), [("Vary", "Origin")])
        self.sdk = SdkFiles.load(config.sdk_dir)
        if self.sdk.error is not None:
            log.warning("serving no SDK files: %s", self.sdk.error)
        for name, sdk_file in self.sdk.files.items():
            self.routes[f"/sdk/{name}"] = Route("GET", _static(sdk_file), etag=sdk_file.etag)

    def route(self, method: str, path: str) -> Route | Reply:
        """The route for a request, or the 404 / 405 answer."""
        route = self.routes.get(path)
        if route is None:
            return 404, error_body("not_found", f"no route {path}"), []
        if method != route.method and not (method == "HEAD" and route.method == "GET"):
            if method == "OPTIONS" and route.cors:
                return self.preflight
            allow = {"GET": "GET, HEAD", "POST": "POST, OPTIONS" if route.cors else "POST"}
            return 405, error_body("method_not_allowed", f"use {route.method} for {path}"), [
                ("Allow", allow.get(route.method, route.method))]
        return route

    def screen(self, route: Route, origin: str | None, if_none_match: str | None,
               authorization: str | None = None) -> Headers | Reply:
        """What a request's headers decide before it runs (the server calls this when
        `route.cors or route.etag or route.guarded`): the headers every answer to it carries
        (CORS), or the answer itself: 403 for a browser page of an origin not allowed
        (nothing decided, nothing logged), 304 when the client's copy is current, 401 / 403
        without the metrics token."""
        if route.guarded:
            refused = check_bearer(self.config.metrics_token, authorization)
            if refused is None:
                return NO_HEADERS
            status, code, message = refused
            return status, error_body(code, message), (
                [("WWW-Authenticate", "Bearer")] if status == 401 else [])
        if route.cors:
            if origin is None:  # not a browser page: a server, curl
                return NO_HEADERS
            allowed = self.cors.headers(origin)
            if allowed is None:
                self.counters.add("origins_refused")
                return self.origin_refused
            return allowed
        if if_none_match is not None and etag_matches(if_none_match, route.etag):
            _, _, headers = route.handler(b"")
            return 304, b"", [h for h in headers if h[0] != "Content-Type"]
        return NO_HEADERS

    def too_large(self, route: Route, length: int) -> Reply:
        self.counters.add("oversized")
        return 413, error_body("body_too_large", f"request body of {length} bytes or more; "
                               f"at most {route.max_body}"), [("Connection", "close")]

    def slow_body(self) -> Reply:
        self.counters.add("slow_bodies")
        return 408, error_body(
            "request_timeout", f"the request body did not arrive within "
            f"{self.config.body_timeout_s:g} s"), [("Connection", "close")]

    def broken_body(self) -> Reply:
        """The client went away mid-body, or its chunked framing broke: nothing of it is
        decided (a proxy retrying would otherwise apply the same events twice)."""
        self.counters.add("broken_bodies")
        return 400, error_body("incomplete_body", "the request body ended before it was "
                               "complete (connection closed, or malformed chunks)"), [
            ("Connection", "close")]

    def run(self, route: Route, body: bytes, method: str, path: str) -> Reply:
        """Call a handler; failures become answers here, and only here."""
        try:
            reply = route.handler(body)
        except SessionStoreUnavailable as exc:  # the detail names internal hosts: log only
            log.warning("%s %s: %s", method, path, exc)
            reply = 503, error_body(
                "session_store_unavailable",
                "session state is unavailable; no decision was made, retry shortly"), [
                ("Retry-After", "1")]
        except Exception:  # a bug must cost one request, not the worker
            log.exception("unhandled error on %s %s", method, path)
            self.counters.add("errors")
            reply = 500, error_body("internal_error", "internal error"), []
        if route.lane == "decide" and self.metrics is not None:
            self.metrics.answered(reply[0])
        return reply

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """WSGI (waitress: it reads a body whole, within its channel timeout, before a
        worker thread runs this). A HEAD answer has the GET's head and no body: waitress
        sends what it is given, and a body there is read as the next answer."""
        chunks = self._wsgi(environ, start_response)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else chunks

    def _wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        route = self.route(method, path)
        if not isinstance(route, Route):
            return self._reply(start_response, *route)
        cors = NO_HEADERS
        if route.cors or route.etag or route.guarded:
            screened = self.screen(route, environ.get("HTTP_ORIGIN"),
                                   environ.get("HTTP_IF_NONE_MATCH"),
                                   environ.get("HTTP_AUTHORIZATION"))
            if isinstance(screened, tuple):  # waitress has read the body already
                return self._reply(start_response, *screened)
            cors = screened
        body = b""
        if route.max_body:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0:
                reply: Reply = (400, error_body("invalid_request", "bad Content-Length"), [])
                return self._reply(start_response, *reply, cors)
            if length > route.max_body:
                return self._reply(start_response, *self.too_large(route, length), cors)
            body = environ["wsgi.input"].read(length)
        return self._reply(start_response, *self.run(route, body, method, path), cors)

    @staticmethod
    def _reply(start_response: StartResponse, status: int, body: bytes,
               extra: Headers | None = None, cors: Headers = NO_HEADERS) -> list[bytes]:
        # hop-by-hop headers are the WSGI server's to send (PEP 3333)
        headers = [h for h in extra or () if h[0].lower() != "connection"] + cors
        if status not in BODILESS:
            headers.append(("Content-Length", str(len(body))))
            if not any(h[0] == "Content-Type" for h in headers):
                headers.append(("Content-Type", JSON))
        start_response(_STATUS.get(status, f"{status} Error"), headers)
        return [body]

    def admit(self) -> Reply | None:
        """Count a decision in, or the 503 that refuses it (draining, or saturated)."""
        if self.draining:
            return 503, error_body("draining", "edge host shutting down, retry shortly"), [
                ("Retry-After", "1")]
        with self._pending_lock:
            if self.pending >= self.config.max_pending:
                self.counters.add("busy")
                return 503, error_body("overloaded", "edge host saturated, retry shortly"), [
                    ("Retry-After", "1")]
            self.pending += 1
        return None

    def release(self) -> None:
        with self._pending_lock:
            self.pending -= 1

    def _take_turn(self, session_id: str) -> bool:
        """Count a decision in for its session, unless one is deciding and another already
        waits for the session's lock: a third would only park a decision thread (a review
        slowed every visitor 25-200x with requests for one session), so it is refused."""
        with self._pending_lock:
            waiting = self._turns.get(session_id, 0)
            if waiting >= SESSION_TURNS:
                return False
            self._turns[session_id] = waiting + 1
            return True

    def _end_turn(self, session_id: str) -> None:
        with self._pending_lock:
            waiting = self._turns.pop(session_id) - 1
            if waiting:
                self._turns[session_id] = waiting

    def decide(self, raw: bytes) -> Reply:
        """`POST /v1/decide`, admitted here (the granian server admits before queueing and
        calls `decide_admitted`)."""
        refused = self.admit()
        if refused is not None:
            return refused
        try:
            return self.decide_admitted(raw)
        finally:
            self.release()

    def decide_admitted(self, raw: bytes, wait: bool = True) -> Reply:
        """A decision already counted in by `admit`; with `wait=False` it takes an instance
        only if one is free now (503 otherwise), for a caller that must not block."""
        started = time.perf_counter_ns()
        try:
            # orjson: several times faster than the stdlib's parser, and strict where
            # the stdlib is lax (NaN, Infinity and lone surrogates are refused here, not
            # stored in a session that could no longer be encoded). Integers beyond 64 bits
            # arrive as floats; the core refuses timestamps past 2^53.
            request = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return 400, error_body("invalid_json", f"request body is not valid JSON: {exc}"), []
        if type(request) is not dict:
            return 400, error_body("invalid_request", "the request body must be a JSON object"), []
        session_id = request.get("session_id")
        if type(session_id) is not str or not session_id:
            return 400, error_body("invalid_request", "session_id must be a non-empty string",
                                   "session_id"), []

        carried = self.state_tokens
        state_token = request.pop("state_token", None)  # not the core's, nor the log's
        if carried is None and not self._take_turn(session_id):
            self.counters.add("busy")
            return 429, error_body("session_busy", "a decision for this session is already "
                                   "waiting its turn: send again shortly", "session_id"), [
                ("Retry-After", "1")]
        try:
            with self.sessions.lock(session_id):
                now_ms = self._clock_ms()
                if carried is None:
                    state = self.sessions.get(session_id)
                elif state_token is None:
                    state = None
                else:
                    try:
                        state = carried.open(state_token, session_id, now_ms)
                    except StateTokenError as exc:
                        if exc.code != EXPIRED:
                            return 400, error_body(exc.code, exc.message, "state_token"), []
                        state = None  # the visitor came back after the TTL: a fresh session
                envelope = pack_envelope(now_ms, state, request)  # events compact
                called = time.perf_counter_ns()
                try:
                    result = (self.pool.decide_packed(envelope) if wait
                              else self.pool.decide_packed_now(envelope))
                except GuestTrap as trap:
                    self.counters.add("aborted")
                    log.warning("decision for a session stopped: %s", trap)
                    return 503, error_body(
                        "decision_aborted",
                        f"the decision was stopped ({trap}); no action, the session is unchanged"), []
                except PoolBusy:
                    self.counters.add("busy")
                    return 503, error_body("overloaded", "edge host saturated, retry shortly"), [
                        ("Retry-After", "1")]
                if not result.ok:
                    return _guest_error(result.text)
                component_ns = time.perf_counter_ns() - called
                response, new_state = unpack(result.text)  # type: ignore[misc]
                decision_id = os.urandom(16).hex()  # 128 bits, as uuid4
                deliveries = response.pop("deliveries", None)  # never the visitor's
                undelivered = None
                if deliveries:  # kept before the state that says they were sent
                    undelivered = self._send_later(deliveries, decision_id, session_id,
                                                   response, now_ms)
                if carried is None:
                    self.sessions.put(session_id, new_state)
                else:
                    response["state_token"] = _seal(carried, session_id, new_state, now_ms)
        finally:
            if carried is None:
                self._end_turn(session_id)
        report = response.pop("report", None)  # what the core saw: the log's, never the visitor's
        self.counters.add("decisions")
        response["decision_id"] = decision_id
        issue = self.tokens.issue
        response["outcome_token"] = issue(session_id, decision_id, "", now_ms)
        for action in response.get("actions") or ():
            trigger = action.get("trigger")
            if type(trigger) is str:
                action["outcome_token"] = issue(session_id, decision_id, trigger, now_ms)
        latency_ns = time.perf_counter_ns() - started
        response["latency_us"] = latency_ns // 1000
        # the part of it spent in the component call (waiting for an instance included)
        response["component_us"] = component_ns // 1000
        if self.metrics is not None:
            self.metrics.decided(latency_ns / 1e9, component_ns / 1e9, response.get("actions"))
        if self.decision_log is not None:
            try:
                logged = response if report is None and not deliveries else \
                    {**response, "report": report, "deliveries": deliveries,
                     "undelivered": undelivered}
                # stamped by this host's clock: a visitor's own clock (its now_ms) must not
                # place records in another period of the reports; the state it started
                # from holds the context a request without one was decided with
                self.decision_log.decision(request, logged, now_ms, state)
            except Exception:  # the visitor's decision is already made
                log.exception("decision log failed; the decision is served without it")
        try:
            body = orjson.dumps(response)
        except TypeError:  # an integer beyond 64 bits (from a pack's content): slower, exact
            body = json.dumps(response).encode()
        return 200, body, []

    def _send_later(self, deliveries: Any, decision_id: str, session_id: str,
                    response: dict[str, Any], now_ms: int) -> dict[str, str] | None:
        """Hand a decision's push, email and webhook actions to the channel dispatcher,
        each with an outcome token (a receiver reports clicks and conversions with it, for
        a day from the moment it is sent). Never fails the decision, nor waits for the
        outbox's lock. Returns the triggers whose delivery is not sent at all, with why
        (the decision log's `undelivered`). An email is never sent without a recipient the
        site signed for (`crm_id_verified`): without EDGE_CRM_ID_KEY, none is."""
        channels = self.channels
        if channels is None:
            return None
        undelivered: dict[str, str] = {}
        try:
            records = delivery_records(
                deliveries, decision_id=decision_id, session_id=session_id,
                revision=response.get("revision"), edge_id=self.edge_id, now_ms=now_ms,
                crm_key=self.crm_key)
            # any visitor writes context.crm_id: an email goes only to one the site signed
            unaddressed = [r for r in records
                           if r["channel"] == "email" and not r["crm_id_verified"]]
            if unaddressed:
                channels.drop("unverified_recipient", len(unaddressed))
                records = [r for r in records if r not in unaddressed]
                undelivered.update((r["trigger"], "unverified_recipient")
                                   for r in unaddressed)
            for record in records:
                record["outcome_token"] = self.tokens.issue(session_id, decision_id,
                                                            record["trigger"], record["due_ms"])
            for record, why in channels.enqueue(records):  # not kept: the outbox's bounds
                undelivered.setdefault(record["trigger"], why)
        except Exception as exc:  # the decision stands; what it could not keep is counted
            n = len(deliveries) if type(deliveries) is list else 1
            channels.outbox_failed(n, exc)
            log.error("%d delivery record(s) lost: %s", n, exc)
            for d in deliveries if type(deliveries) is list else ():
                if type(d) is dict and type(d.get("trigger")) is str:
                    undelivered.setdefault(d["trigger"], "outbox_error")
        return undelivered

    def outcome(self, raw: bytes) -> Reply:
        """`POST /v1/outcome`: what the visitor did with an action (impression, click...),
        taken only with the outcome token of the decision it is about."""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return 400, error_body("invalid_json", f"request body is not valid JSON: {exc}"), []
        log_ = self.decision_log
        # Without telemetry an outcome is still a conversion that cancels the visitor's
        # waiting deliveries (a cart reminder must not reach a buyer); anything else has
        # nowhere to go.
        converted = type(body) is dict and body.get("type") == "conversion"
        cancels = converted and self.channels is not None and self.channels.outbox is not None
        if log_ is None and not cancels:
            return 503, error_body("telemetry_off", "this edge records no telemetry "
                                   "(no control plane configured)"), []
        now_ms = self._clock_ms()
        try:
            rec = (outcome_record(body, now_ms, log_.salt, log_.edge_id, log_.limits)
                   if log_ is not None else outcome_record(body, now_ms, "", ""))
        except OutcomeError as exc:
            return 400, error_body("invalid_outcome", exc.message, exc.field), []
        # validated above: a dict whose session_id is a non-empty string
        session_id, decision_id = body["session_id"], body.get("decision_id")
        try:
            if type(decision_id) is not str:
                raise TokenError("decision_id is required: the decide answer's decision_id")
            issued = self.tokens.check(body.get("outcome_token"), session_id, decision_id,
                                       body.get("trigger") or "", now_ms)
        except TokenError as exc:
            self.counters.add("outcomes_refused")
            return 403, error_body("invalid_outcome_token", str(exc), "outcome_token"), []
        # The visitor's ts_ms is kept between the decision and now (its clock may be off, or
        # lie to move the record into another period of the reports).
        rec["ts_ms"] = min(max(rec["ts_ms"], issued), now_ms)
        # One record per (decision, trigger, kind): a visitor replaying its own token adds
        # nothing, as ingest drops repeated ids.
        rec["id"] = hashlib.sha256("\x1f".join(
            (log_.salt if log_ is not None else "", decision_id, body.get("trigger") or "",
             rec["type"])).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        if log_ is not None:
            log_.record(rec)
        if cancels:
            assert self.channels is not None
            try:  # a reminder or an offer still waiting is moot once the visitor converts
                self.channels.cancel(session_id)
            except OutboxError as exc:
                log.warning("waiting deliveries of a converted session kept: %s", exc)
        return 200, json.dumps({"id": rec["id"]}).encode(), []

    def openapi(self) -> Reply:
        from edge_module.http.openapi import edge_openapi

        return 200, json.dumps(edge_openapi()).encode(), []

    def metrics_page(self, _body: bytes) -> Reply:
        """`GET /metrics`: the Prometheus text format (`metrics.py`)."""
        if self.metrics is None:
            return 404, error_body("not_found", "no route /metrics"), []
        return self.metrics.reply()

    def status(self) -> dict[str, Any]:
        """What this edge runs and how it fares (healthz, and the fleet report)."""
        current = self.pool.current
        sync = self.sync.status.to_dict() if self.sync is not None else {}
        return {
            "edge_id": self.edge_id,
            "status": "draining" if self.draining else (
                "ok" if current is not None else "no_snapshot"),
            "revision": current.revision if current is not None else None,
            "last_sync_ms": sync.get("last_sync_ms"),
            "last_error": sync.get("last_error"),
            "last_error_ms": sync.get("last_error_ms"),
            "from_cache": sync.get("from_cache", False),
            "instances": self.pool.size,
            "traps": self.pool.traps,
            # counted for this host's own stores; Redis would need a scan per report
            "sessions": self._session_count(),
            "sdk": self.sdk.status(),
            # states dropped to keep the store within its bytes (evicted), refused as too
            # large for one session (refused), writes refused after a lost lease (fenced)
            "session_store": {name: getattr(self.sessions, name, None)
                              for name in ("evicted", "refused", "fenced")},
            "pending": self.pending,
            "started_ms": self.started_ms,
            **self.counters.snapshot(),
            # records taken, waiting (buffered, spooled files) and shipped; None: off
            "telemetry": self.shipper.status() if self.shipper is not None else None,
            # push, email and webhook deliveries: added, delivered, retried, dropped, waiting
            "channels": self.channels.status() if self.channels is not None else None,
        }

    def _session_count(self) -> int | None:
        if not isinstance(self.sessions, (MemorySessionStore, LmdbSessionStore)):
            return None
        try:
            return len(self.sessions)
        except SessionStoreUnavailable:
            return None

    def health(self) -> Reply:
        doc = self.status()
        return (200 if doc["status"] == "ok" else 503), json.dumps(doc).encode(), []


def _static(sdk_file: SdkFile) -> Callable[[bytes], Reply]:
    reply: Reply = (200, sdk_file.body, sdk_file.headers())
    return lambda _body: reply


def _guest_error(error_json: str) -> Reply:
    try:
        err = json.loads(error_json)
        status = int(err.pop("status", 400))
    except (ValueError, AttributeError, TypeError):
        return 500, error_body("internal_error", "the decision module answered garbage"), []
    if status >= 500:
        log.error("decision module error: %s", err.get("message"))
        if err.get("code") == "internal_error":  # a bug's text is for the log, not visitors
            err["message"] = "internal error"
    return status, json.dumps({"error": err}).encode(), []


