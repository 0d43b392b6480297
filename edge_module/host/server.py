"""The edge host's HTTP API (`POST /v1/decide`, `POST /v1/outcome`, `GET /healthz`,
`GET /openapi.json`), its wiring, and the waitress server.

Plain handlers rather than a framework: this is the hot path, and all a decision does is
parse the body once, fetch the session state, call the component and splice the answer.
The default server (granian, `granian_server.py`) and waitress carry the same handlers.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from ..core.api import pack, unpack
from ..edge_store import open_store
from ..signing import TrustedKeys
from .component import EpochTicker, GuestTrap, Instance, load_component, make_engine
from .config import ConfigError, EdgeConfig
from .decision_log import (
    SPOOL_SUFFIX,
    DecisionLog,
    OutcomeError,
    RecordLimits,
    load_salt,
    outcome_record,
)
from .outcome_tokens import OutcomeTokens, TokenError, load_key
from .pool import InstancePool, PoolBusy
from .session_store import (
    LmdbSessionStore,
    MemorySessionStore,
    SessionStore,
    SessionStoreUnavailable,
    make_session_store,
)
from .snapshot_sync import SnapshotSync
from .status_report import StatusReporter
from .telemetry import TelemetryShipper

log = logging.getLogger("edge.host")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

StartResponse = Callable[..., Any]
JSON = "application/json"
_STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found",
           405: "405 Method Not Allowed", 408: "408 Request Timeout",
           413: "413 Payload Too Large", 415: "415 Unsupported Media Type",
           422: "422 Unprocessable Entity", 500: "500 Internal Server Error",
           503: "503 Service Unavailable"}
MAX_OUTCOME_BYTES = 16 * 1024

Headers = list[tuple[str, str]]
Reply = tuple[int, bytes, Headers]


@dataclass
class Counters:
    decisions: int = 0
    errors: int = 0
    timeouts: int = 0
    busy: int = 0
    slow_bodies: int = 0  # request bodies that did not arrive within the deadline (408)
    oversized: int = 0  # request bodies over their route's limit (413)
    outcomes_refused: int = 0  # outcome reports without a valid token
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


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
        self.decision_log: DecisionLog | None = None  # set when telemetry is on
        self.shipper: TelemetryShipper | None = None  # ... and what ships it
        self.tokens = OutcomeTokens(load_key(config.outcome_key, config.state_dir),
                                    int(config.outcome_window_s * 1000))
        self.routes: dict[str, Route] = {
            "/v1/decide": Route("POST", self.decide, config.max_body_bytes, lane="decide"),
            "/v1/outcome": Route("POST", self.outcome, MAX_OUTCOME_BYTES, lane="side"),
            "/healthz": Route("GET", lambda _body: self.health(), lane="side"),
            "/openapi.json": Route("GET", lambda _body: self.openapi()),
        }

    def route(self, method: str, path: str) -> Route | Reply:
        """The route for a request, or the 404 / 405 answer."""
        route = self.routes.get(path)
        if route is None:
            return 404, error_body("not_found", f"no route {path}"), []
        if method != route.method and not (method == "HEAD" and route.method == "GET"):
            return 405, error_body("method_not_allowed", f"use {route.method} for {path}"), [
                ("Allow", route.method if route.method != "GET" else "GET, HEAD")]
        return route

    def too_large(self, route: Route, length: int) -> Reply:
        self.counters.add("oversized")
        return 413, error_body("body_too_large", f"request body of {length} bytes or more; "
                               f"at most {route.max_body}"), [("Connection", "close")]

    def slow_body(self) -> Reply:
        self.counters.add("slow_bodies")
        return 408, error_body(
            "request_timeout", f"the request body did not arrive within "
            f"{self.config.body_timeout_s:g} s"), [("Connection", "close")]

    def run(self, route: Route, body: bytes, method: str, path: str) -> Reply:
        """Call a handler; failures become answers here, and only here."""
        try:
            return route.handler(body)
        except SessionStoreUnavailable as exc:  # the detail names internal hosts: log only
            log.warning("%s %s: %s", method, path, exc)
            return 503, error_body(
                "session_store_unavailable",
                "session state is unavailable; no decision was made, retry shortly"), [
                ("Retry-After", "1")]
        except Exception:  # noqa: BLE001 - a bug must cost one request, not the worker
            log.exception("unhandled error on %s %s", method, path)
            self.counters.add("errors")
            return 500, error_body("internal_error", "internal error"), []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """WSGI (waitress: it reads a body whole, within its channel timeout, before a
        worker thread runs this)."""
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        route = self.route(method, path)
        if not isinstance(route, Route):
            return self._reply(start_response, *route)
        body = b""
        if route.max_body:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0:
                reply: Reply = (400, error_body("invalid_request", "bad Content-Length"), [])
                return self._reply(start_response, *reply)
            if length > route.max_body:
                return self._reply(start_response, *self.too_large(route, length))
            body = environ["wsgi.input"].read(length)
        return self._reply(start_response, *self.run(route, body, method, path))

    @staticmethod
    def _reply(start_response: StartResponse, status: int, body: bytes,
               extra: Headers | None = None) -> list[bytes]:
        headers = [("Content-Type", JSON), ("Content-Length", str(len(body)))]
        # hop-by-hop headers are the WSGI server's to send (PEP 3333)
        headers += [h for h in extra or () if h[0].lower() != "connection"]
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
            # orjson: a fifth of the stdlib's parse time on the hot path, and strict where
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

        with self.sessions.lock(session_id):
            now_ms = self._clock_ms()
            envelope = pack((now_ms, self.sessions.get(session_id), request))
            called = time.perf_counter_ns()
            try:
                result = self.pool.decide(envelope) if wait else self.pool.decide_now(envelope)
            except GuestTrap as trap:
                self.counters.add("timeouts")
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
            self.sessions.put(session_id, new_state)
        report = response.pop("report", None)  # what the core saw: the log's, never the visitor's
        self.counters.add("decisions")
        decision_id = response["decision_id"] = os.urandom(16).hex()  # 128 bits, as uuid4
        issue = self.tokens.issue
        response["outcome_token"] = issue(session_id, decision_id, "", now_ms)
        for action in response.get("actions") or ():
            trigger = action.get("trigger")
            if type(trigger) is str:
                action["outcome_token"] = issue(session_id, decision_id, trigger, now_ms)
        response["latency_us"] = (time.perf_counter_ns() - started) // 1000
        # the part of it spent in the component call (waiting for an instance included)
        response["component_us"] = component_ns // 1000
        if self.decision_log is not None:
            try:
                self.decision_log.decision(
                    request, response if report is None else {**response, "report": report},
                    _now(request, self._clock_ms))
            except Exception:  # noqa: BLE001 - the visitor's decision is already made
                log.exception("decision log failed; the decision is served without it")
        try:
            body = orjson.dumps(response)
        except TypeError:  # an integer beyond 64 bits (from a pack's content): slower, exact
            body = json.dumps(response).encode()
        return 200, body, []

    def outcome(self, raw: bytes) -> Reply:
        """`POST /v1/outcome`: what the visitor did with an action (impression, click...),
        taken only with the outcome token of the decision it is about."""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return 400, error_body("invalid_json", f"request body is not valid JSON: {exc}"), []
        if self.decision_log is None:
            return 503, error_body("telemetry_off", "this edge records no telemetry "
                                   "(no control plane configured)"), []
        now_ms = self._clock_ms()
        log_ = self.decision_log
        try:
            rec = outcome_record(body, now_ms, log_.salt, log_.edge_id, log_.limits)
        except OutcomeError as exc:
            return 400, error_body("invalid_outcome", exc.message, exc.field), []
        # validated above: a dict whose session_id is a non-empty string
        session_id, decision_id = body["session_id"], body.get("decision_id")
        try:
            if type(decision_id) is not str:
                raise TokenError("decision_id is required: the decide answer's decision_id")
            self.tokens.check(body.get("outcome_token"), session_id, decision_id,
                              body.get("trigger") or "", now_ms)
        except TokenError as exc:
            self.counters.add("outcomes_refused")
            return 403, error_body("invalid_outcome_token", str(exc), "outcome_token"), []
        # One record per (decision, trigger, kind): a visitor replaying its own token adds
        # nothing, as ingest drops repeated ids.
        rec["id"] = hashlib.sha256("\x1f".join(
            (log_.salt, decision_id, body.get("trigger") or "", rec["type"])).encode(
            "utf-8", "surrogatepass")).hexdigest()[:32]
        log_.record(rec)
        return 200, json.dumps({"id": rec["id"]}).encode(), []

    def openapi(self) -> Reply:
        from .openapi import edge_openapi

        return 200, json.dumps(edge_openapi()).encode(), []

    def status(self) -> dict[str, Any]:
        """What this edge runs and how it fares (healthz, and the fleet report)."""
        current = self.pool.current
        sync = self.sync.status.to_dict() if self.sync is not None else {}
        with self.counters.lock:
            c = self.counters
            counters = {"decisions": c.decisions, "errors": c.errors, "aborted": c.timeouts,
                        "busy": c.busy, "slow_bodies": c.slow_bodies, "oversized": c.oversized,
                        "outcomes_refused": c.outcomes_refused}
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
            # states dropped to keep the store within its bytes (evicted), refused as too
            # large for one session (refused), writes refused after a lost lease (fenced)
            "session_store": {name: getattr(self.sessions, name, None)
                              for name in ("evicted", "refused", "fenced")},
            "pending": self.pending,
            "started_ms": self.started_ms,
            **counters,
            # records taken, waiting (buffered, spooled files) and shipped; None: off
            "telemetry": self.shipper.status() if self.shipper is not None else None,
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


def _now(request: dict[str, Any], clock_ms: Callable[[], int]) -> int:
    now = request.get("now_ms")
    return now if type(now) is int else clock_ms()


def _guest_error(error_json: str) -> Reply:
    try:
        err = json.loads(error_json)
        status = int(err.pop("status", 400))
    except (ValueError, AttributeError, TypeError):
        return 500, error_body("internal_error", "the decision module answered garbage"), []
    if status >= 500:
        log.error("decision module error: %s", err.get("message"))
    return status, json.dumps({"error": err}).encode(), []


@dataclass
class EdgeHost:
    """Everything one edge host runs, started and stopped together."""

    config: EdgeConfig
    app: EdgeApp
    sync: SnapshotSync
    ticker: EpochTicker
    reporter: StatusReporter | None = None
    shipper: TelemetryShipper | None = None

    @classmethod
    def build(cls, config: EdgeConfig) -> EdgeHost:
        engine = make_engine()
        component = load_component(engine, config.component, config.cache_dir)
        ticker = EpochTicker(engine)
        ticker.start()
        from wasmtime import component as wcomponent

        linker = wcomponent.Linker(engine)
        linker.add_wasip2()
        memory = config.memory_limit_mb * 1024 * 1024

        def factory() -> Instance:
            return Instance(engine, linker, component, memory_limit=memory)

        pool = InstancePool(factory, config.threads,
                            decide_deadline_ms=config.decide_deadline_ms,
                            load_deadline_ms=config.load_deadline_ms,
                            acquire_timeout_s=config.acquire_timeout_s)
        store = open_store(config.store, config.s3_endpoint_url or None)
        sync = SnapshotSync(store, pool, TrustedKeys(config.trusted_keys),
                            config.sync_interval_s, config.state_dir / "last-good",
                            config.load_attempts)
        sync.load_cached()  # serve the last good snapshot even if the store is down
        sync.run_once()
        sync.start()
        sessions = make_session_store(config)
        app = EdgeApp(pool, sessions, sync, config)
        reporter = None
        if config.control_url:
            reporter = StatusReporter(config.control_url, config.token, app.status,
                                      config.report_interval_s)
            reporter.start()
        shipper = None
        if config.control_url and config.telemetry:
            app.decision_log = DecisionLog(
                spool_dir(config), load_salt(config.telemetry_salt, config.state_dir),
                app.edge_id, config.telemetry_max_buffer,
                config.telemetry_max_spool_mb * 1024 * 1024,
                limits=RecordLimits(config.telemetry_max_field_chars,
                                    config.telemetry_max_url_chars,
                                    config.telemetry_max_list_items,
                                    config.telemetry_max_report_triggers,
                                    config.telemetry_max_report_values),
                max_batch_bytes=config.telemetry_batch_bytes)
            shipper = app.shipper = TelemetryShipper(
                app.decision_log, config.control_url, config.token, config.telemetry_interval_s,
                max_tries=config.telemetry_max_tries,
                max_set_aside=config.telemetry_max_set_aside)
            shipper.start()
        return cls(config, app, sync, ticker, reporter, shipper)

    def close(self) -> None:
        if self.shipper is not None:
            self.shipper.stop()
            self.shipper.log.flush()  # nothing buffered is lost on a clean stop
            self.shipper.next_attempt = 0.0
            self.shipper.run_once()  # one last delivery attempt; the spool keeps the rest
        if self.reporter is not None:
            self.reporter.stop()
            self.reporter.run_once()  # a last report: the control plane sees the new state
        self.sync.stop()
        self.ticker.stop()
        self.app.sessions.close()


def spool_dir(config: EdgeConfig) -> Path:
    """This process's telemetry spool: `spool/` alone, `spool/w<k>` for worker k of several
    (no two shippers send the same batch). The first worker also takes over the batches
    left in folders no running worker owns (after the number of workers changed), so none
    is stranded."""
    root = config.state_dir / "spool"
    own = root if config.workers == 1 else root / f"w{config.worker}"
    if config.worker == 1:
        owned = {root} if config.workers == 1 else {
            root / f"w{k}" for k in range(1, config.workers + 1)}
        strays = [root, *root.glob("w*")] if root.exists() else []
        for folder in strays:
            if folder in owned or not folder.is_dir():
                continue
            for batch in folder.glob("*" + SPOOL_SUFFIX):
                own.mkdir(parents=True, exist_ok=True)
                os.replace(batch, own / batch.name)  # names are unique (time, pid, seq)
    return own


def settle_heap() -> None:
    """Keep what startup made (modules, the wasmtime bindings, ~60k objects) out of the
    cyclic GC's full collections: measured at 26 ms each with the GIL held, they were the
    host's longest pauses under load. What the process makes later is collected as usual."""
    gc.collect()
    gc.freeze()


def serve(config: EdgeConfig) -> None:
    """Serve the edge API with the server `config.server` names until SIGTERM or Ctrl-C."""
    if config.server == "waitress":
        serve_waitress(config)
    else:
        from .granian_server import serve_granian

        serve_granian(config)


# -- waitress: pure Python, one event loop thread and `threads` worker threads ----------------

def serve_waitress(config: EdgeConfig) -> None:
    from waitress.server import create_server

    host = EdgeHost.build(config)
    settle_heap()
    # waitress reads a body whole before a thread runs the app; a channel that sends
    # nothing for the header timeout is closed.
    server = create_server(host.app, host=config.host, port=config.port, threads=config.threads,
                           ident="edge-host", max_request_body_size=config.max_body_bytes,
                           connection_limit=config.max_connections,
                           channel_timeout=config.header_timeout_s)

    def drain(signum: int, _frame: object) -> None:
        """SIGTERM: stop accepting, let in-flight decisions finish, then stop the loop."""
        log.info("signal %s: draining (at most %.0f s)", signum, config.drain_timeout_s)
        host.app.draining = True
        server.accepting = False  # the loop stops polling the listening socket

        def finish() -> None:
            deadline = time.monotonic() + config.drain_timeout_s
            while host.app.pending and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)  # let the loop flush the last responses
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=finish, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, drain)
    # A process started in the background by a shell inherits SIGINT ignored; Ctrl-C (and
    # the end of a drain) must still stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log.info("edge host %s on http://%s:%s (revision %s)", host.app.edge_id, config.host,
             server.effective_port, host.sync.status.revision)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        host.close()
        log.info("edge host stopped")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("EDGE_LOG_LEVEL", "INFO"), format=LOG_FORMAT)
    try:
        config = EdgeConfig.from_env()
    except ConfigError as exc:
        print(f"edge-host: {exc}", file=sys.stderr)
        return 2
    if not config.component.exists():
        print(f"edge-host: {config.component} not found; run ./build.sh build first",
              file=sys.stderr)
        return 2
    if config.session_store.startswith("lmdb"):
        try:  # a store the workers cannot open is refused here, not in a respawn loop
            make_session_store(config).close()
        except SessionStoreUnavailable as exc:
            print(f"edge-host: {exc}", file=sys.stderr)
            return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
