"""The edge host's HTTP API: `POST /v1/decide` and `GET /healthz`, served by waitress.

A plain WSGI callable rather than a framework: this is the hot path, and all it does is
parse the body once, fetch the session state, call the component and splice the answer.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..core.api import pack, unpack
from ..edge_store import LocalFolderStore
from .component import EpochTicker, GuestTrap, Instance, load_component, make_engine
from .config import ConfigError, EdgeConfig
from .pool import InstancePool, PoolBusy
from .session_store import MemorySessionStore, SessionLocks, SessionStore
from .snapshot_sync import SnapshotSync

log = logging.getLogger("edge.host")

StartResponse = Callable[..., Any]
JSON = "application/json"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found",
           405: "405 Method Not Allowed", 413: "413 Payload Too Large",
           415: "415 Unsupported Media Type", 422: "422 Unprocessable Entity",
           500: "500 Internal Server Error", 503: "503 Service Unavailable"}


@dataclass
class Counters:
    decisions: int = 0
    errors: int = 0
    timeouts: int = 0
    busy: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


def error_body(code: str, message: str, field_name: str | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if field_name is not None:
        err["field"] = field_name
    return json.dumps({"error": err}).encode()


class EdgeApp:
    """The WSGI application of one edge host."""

    def __init__(self, pool: InstancePool, sessions: SessionStore, sync: SnapshotSync | None,
                 config: EdgeConfig, clock_ms: Callable[[], int] | None = None) -> None:
        self.pool = pool
        self.sessions = sessions
        self.sync = sync
        self.config = config
        self.locks = SessionLocks()
        self.counters = Counters()
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/v1/decide":
                if method != "POST":
                    return self._reply(start_response, 405, error_body(
                        "method_not_allowed", "use POST for /v1/decide"), [("Allow", "POST")])
                status, body, extra = self.decide(environ)
            elif path == "/healthz":
                status, body, extra = self.health()
            else:
                status, body, extra = 404, error_body("not_found", f"no route {path}"), []
        except Exception:  # noqa: BLE001 - a bug must cost one request, not the worker
            log.exception("unhandled error on %s %s", method, path)
            self.counters.add("errors")
            status, body, extra = 500, error_body("internal_error", "internal error"), []
        return self._reply(start_response, status, body, extra)

    @staticmethod
    def _reply(start_response: StartResponse, status: int, body: bytes,
               extra: list[tuple[str, str]] | None = None) -> list[bytes]:
        headers = [("Content-Type", JSON), ("Content-Length", str(len(body)))]
        start_response(_STATUS.get(status, f"{status} Error"), headers + (extra or []))
        return [body]

    def decide(self, environ: dict[str, Any]) -> tuple[int, bytes, list[tuple[str, str]]]:
        started = time.perf_counter_ns()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return 400, error_body("invalid_request", "bad Content-Length"), []
        if length > self.config.max_body_bytes:
            return 413, error_body(
                "body_too_large",
                f"request body of {length} bytes; at most {self.config.max_body_bytes}"), []
        raw = environ["wsgi.input"].read(length)
        try:
            text = raw.decode("utf-8")
            request = json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            return 400, error_body("invalid_json", f"request body is not valid JSON: {exc}"), []
        if type(request) is not dict:
            return 400, error_body("invalid_request", "the request body must be a JSON object"), []
        session_id = request.get("session_id")
        if type(session_id) is not str or not session_id:
            return 400, error_body("invalid_request", "session_id must be a non-empty string",
                                   "session_id"), []

        with self.locks(session_id):
            envelope = pack((self._clock_ms(), self.sessions.get(session_id), request))
            try:
                result = self.pool.decide(envelope)
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
            response, new_state = unpack(result.text)  # type: ignore[misc]
            self.sessions.put(session_id, new_state)
        self.counters.add("decisions")
        response["decision_id"] = uuid.uuid4().hex
        response["latency_us"] = (time.perf_counter_ns() - started) // 1000
        return 200, _dumps(response).encode(), []

    def health(self) -> tuple[int, bytes, list[tuple[str, str]]]:
        current = self.pool.current
        status = self.sync.status if self.sync is not None else None
        doc = {
            "status": "ok" if current is not None else "no_snapshot",
            "revision": current.revision if current is not None else None,
            "last_sync_ms": status.last_sync_ms if status else None,
            "last_error": status.last_error if status else None,
            "instances": self.pool.size,
            "traps": self.pool.traps,
            "sessions": len(self.sessions),
            "decisions": self.counters.decisions,
        }
        return (200 if current is not None else 503), json.dumps(doc).encode(), []


def _guest_error(error_json: str) -> tuple[int, bytes, list[tuple[str, str]]]:
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
        sync = SnapshotSync(LocalFolderStore(config.store_dir), pool, config.sync_interval_s)
        sync.sync_once()
        sync.start()
        sessions = MemorySessionStore(config.max_sessions, config.session_ttl_s)
        return cls(config, EdgeApp(pool, sessions, sync, config), sync, ticker)

    def close(self) -> None:
        self.sync.stop()
        self.ticker.stop()


def serve(config: EdgeConfig) -> None:
    from waitress.server import create_server

    host = EdgeHost.build(config)
    server = create_server(host.app, host=config.host, port=config.port, threads=config.threads,
                           ident="edge-host", max_request_body_size=config.max_body_bytes,
                           connection_limit=1000, channel_timeout=30)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signum)
        server.close()

    signal.signal(signal.SIGTERM, stop)
    log.info("edge host on http://%s:%s (revision %s)", config.host, server.effective_port,
             host.sync.status.revision)
    try:
        server.run()
    except (KeyboardInterrupt, OSError):
        pass  # OSError: the loop's sockets were closed by the signal handler
    finally:
        server.close()
        host.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("EDGE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = EdgeConfig.from_env()
    except ConfigError as exc:
        print(f"edge-host: {exc}", file=sys.stderr)
        return 2
    if not config.component.exists():
        print(f"edge-host: {config.component} not found; run ./build.sh build first",
              file=sys.stderr)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
