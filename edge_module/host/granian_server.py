"""The default HTTP server: granian (HTTP in Rust) speaking RSGI to an asyncio loop.

Why RSGI and not granian's WSGI: a WSGI app reads its body on the thread that will
decide, so a client that sends a head and one byte of its body holds a decision thread
for as long as it likes (with threads = cores, two such clients stopped the edge). Here a
body is read whole on the event loop, with a deadline (408 and the connection closed
when it runs out) and a size bound (413, the excess read and discarded so the client
sees the answer), before a decision thread or an instance is involved. Only complete
requests reach the thread pool, and admission (`EdgeApp.admit`) happens before queueing,
so a saturated edge answers 503 at once instead of queueing without bound.
`/healthz` and `/openapi.json` are answered on the loop itself.

Measured on the project's 2-core VM (README, Performance): HTTP parsing and connection
handling stay in Rust threads that do not hold the GIL, so the GIL is left to the
decision (JSON parse, the component call's wrapper, the response) and the guest runs on
the other core. One worker process keeps every session of the memory store in one place;
EDGE_WORKERS=N with EDGE_SESSION_STORE=lmdb (or redis://) runs N processes sharing
sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

from .config import EdgeConfig
from .server import LOG_FORMAT, EdgeApp, EdgeHost, Reply, Route, error_body, settle_heap

log = logging.getLogger("edge.host")
_LEVELS = ("critical", "error", "warning", "info", "debug")
_JSON = [("content-type", "application/json")]


class BodyTooLarge(Exception):
    def __init__(self, seen: int) -> None:
        super().__init__(seen)
        self.seen = seen


class RsgiEdge:
    """The RSGI application of one worker process: bodies read on the loop, decisions on
    `threads` threads (one per component instance)."""

    def __init__(self, host: EdgeHost) -> None:
        self.host = host
        self.app: EdgeApp = host.app
        self.config: EdgeConfig = host.config
        self.executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="decide")
        # /healthz (it counts spool files) and outcomes (a MAC and a buffer append) run
        # here: never on the loop, never queued behind decisions
        self.side = ThreadPoolExecutor(2, thread_name_prefix="side")
        self.side_pending = 0  # side requests queued or running (loop thread only)
        self.reading: set[asyncio.Task[Any]] = set()  # requests reading their body now

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_default_executor(self.executor)

    def stop_reading(self) -> None:
        """The worker was told to stop: no new decisions, and requests still waiting for
        their body are answered 503 now (granian waits for every open request before the
        worker exits: a stalled body would hold the stop for the whole body deadline)."""
        log.info("signal: draining (in-flight decisions finish, at most %.0f s)",
                 self.config.drain_timeout_s)
        self.app.draining = True
        for reading in list(self.reading):
            reading.cancel()

    def __rsgi_del__(self, _loop: asyncio.AbstractEventLoop) -> None:
        """After granian has stopped serving: finish what is queued, then stop the host."""
        self.app.draining = True
        self.executor.shutdown(wait=True)
        self.side.shutdown(wait=True)
        self.host.close()
        log.info("edge host stopped")

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        method, path = scope.method, scope.path
        route = self.app.route(method, path)
        if not isinstance(route, Route):
            return _send(proto, route)
        body = b""
        if route.max_body:
            got = await self._read_body(scope, proto, route)
            if not isinstance(got, bytes):
                return _send(proto, got)
            body = got
        loop = asyncio.get_running_loop()
        if route.lane == "loop":
            return _send(proto, self.app.run(route, body, method, path))
        if route.lane == "decide":  # admitted before queueing, not in the thread
            refused = self.app.admit()
            if refused is not None:
                return _send(proto, refused)
            try:
                reply = await loop.run_in_executor(
                    self.executor, self.app.run, _admitted(self.app), body, method, path)
            finally:
                self.app.release()
            return _send(proto, reply)
        if self.side_pending >= self.config.max_pending:
            self.app.counters.add("busy")
            return _send(proto, (503, error_body("overloaded", "edge host saturated, retry "
                                                 "shortly"), [("Retry-After", "1")]))
        self.side_pending += 1
        try:
            reply = await loop.run_in_executor(self.side, self.app.run, route, body, method,
                                               path)
        finally:
            self.side_pending -= 1
        _send(proto, reply)

    async def _read_body(self, scope: Any, proto: Any, route: Route) -> bytes | Reply:
        """The whole body within the deadline and the route's limit, or the 4xx answer."""
        declared = scope.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                return 400, error_body("invalid_request", "bad Content-Length"), [
                    ("Connection", "close")]
            if length > route.max_body:
                if length <= self.config.max_discard_bytes:  # beyond: answer, then close
                    await self._discard(proto, 0)
                return self.app.too_large(route, length)
        # The request's own task is registered, so that a stop can cancel the reads still
        # waiting (granian runs each request as an asyncio task).
        task = asyncio.current_task()
        if task is not None:
            self.reading.add(task)
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                if declared is not None:  # hyper holds it to its length: read it at once
                    return await proto()  # type: ignore[no-any-return]
                return await _collect(proto, route.max_body)
        except TimeoutError:
            return self.app.slow_body()
        except asyncio.CancelledError:
            if not self.app.draining or task is None:
                raise  # this request itself was cancelled (the client went away)
            task.uncancel()
            return 503, error_body("draining", "edge host shutting down, retry shortly"), [
                ("Retry-After", "1"), ("Connection", "close")]
        except BodyTooLarge as exc:  # chunked, no length declared
            await self._discard(proto, exc.seen)
            return self.app.too_large(route, exc.seen)
        finally:
            if task is not None:
                self.reading.discard(task)

    async def _discard(self, proto: Any, seen: int) -> None:
        """Read and drop the rest of an oversized body (`seen` bytes of it read already),
        up to a bound and within the deadline, so the client, still sending, reads its 413
        instead of a reset (RFC 9112 section 9.6)."""
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                async for chunk in proto:
                    seen += len(chunk)
                    if seen > self.config.max_discard_bytes:
                        return
        except (TimeoutError, Exception):  # noqa: BLE001 - the client went away: fine
            return


async def _collect(proto: Any, limit: int) -> bytes:
    """A body sent without a length, chunk by chunk, up to `limit` (BodyTooLarge)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in proto:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        parts.append(chunk)
    return b"".join(parts)


def _admitted(app: EdgeApp) -> Route:
    return Route("POST", app.decide_admitted, app.config.max_body_bytes, lane="decide")


def _send(proto: Any, reply: Reply) -> None:
    status, body, extra = reply
    proto.response_bytes(status, _JSON + [(k.lower(), v) for k, v in extra], body)


# -- the server ----------------------------------------------------------------------------

def _hook_stop_signals(edge: RsgiEdge) -> None:
    """Let the worker's SIGINT / SIGTERM also reach `edge.stop_reading`. granian installs
    its handlers (which only set its stop signal) when the worker starts, after this
    loader ran: wrap the function that installs them, keeping what they do."""
    import granian._signals as granian_signals

    install = granian_signals.set_loop_signals

    def set_loop_signals(loop: asyncio.AbstractEventLoop) -> Any:
        stop = install(loop)

        def on_signal() -> None:
            edge.stop_reading()
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
        return stop

    granian_signals.set_loop_signals = set_loop_signals


def _worker_app(config: EdgeConfig, worker: int = 1) -> RsgiEdge:
    """Runs in the worker process: the engine, instances and threads are made there (none
    of them survives a fork). With several workers each is an edge of its own in the fleet
    view and in telemetry (`<edge id>/w<k>`): counters and instances are per process."""
    logging.basicConfig(level=os.environ.get("EDGE_LOG_LEVEL", "INFO"), format=LOG_FORMAT)
    if config.workers > 1:
        config = replace(config, worker=worker,
                         edge_id=f"{config.edge_id or f'{config.host}:{config.port}'}/w{worker}")
    host = EdgeHost.build(config)
    settle_heap()
    log.info("edge host %s on http://%s:%s (revision %s, granian, worker %d of %d, "
             "%d threads)", host.app.edge_id, config.host, config.port,
             host.sync.status.revision, worker, config.workers, config.threads)
    edge = RsgiEdge(host)
    _hook_stop_signals(edge)
    return edge


def raise_open_files_limit(wanted: int) -> None:
    """Let the process hold `wanted` connections (and its files): raise the soft limit on
    open files toward the hard one (a common soft default, 1024, is a cheap way to refuse
    every visitor for whoever opens a thousand idle connections)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open files limit raised from %d to %d", soft, target)


def serve_granian(config: EdgeConfig) -> None:
    """Serve until SIGTERM or Ctrl-C: granian stops accepting, lets in-flight requests
    finish (at most EDGE_DRAIN_TIMEOUT_S), then the worker closes its host."""
    raise_open_files_limit(config.max_connections * config.workers + 1024)
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.server import MPServer

    class Server(MPServer):  # type: ignore[misc]
        def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:
            # the loader learns which worker it builds (granian numbers them from 0)
            return super()._spawn_worker(idx, target, partial(callback_loader, worker=idx + 1))

    # granian logs to stdout by default; the host logs to stderr, and so does granian here.
    log_config = {"handlers": {
        "console": {"formatter": "generic", "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler",
                   "stream": "ext://sys.stderr"}}}
    level = os.environ.get("EDGE_LOG_LEVEL", "INFO").lower()
    server = Server(
        "edge_module.host.granian_server:RsgiEdge", address=config.host, port=config.port,
        interface=Interfaces.RSGI, workers=config.workers,
        # backpressure bounds the requests a worker handles at once, connections waiting
        # for a slow body included; far above what the instances can decide, so idle and
        # slow connections (each reaped by its deadline) never crowd out a good request.
        runtime_threads=config.io_threads, backlog=2048, backpressure=config.max_connections,
        runtime_mode="st" if config.io_threads == 1 else "mt",
        http="1", websockets=False, log_level=level if level in _LEVELS else "info",
        http1_settings=HTTP1Settings(
            header_read_timeout=int(config.header_timeout_s * 1000), keep_alive=True),
        log_dictconfig=log_config, workers_kill_timeout=max(1, round(config.drain_timeout_s)))
    server.serve(target_loader=partial(_worker_app, config), wrap_loader=False)
