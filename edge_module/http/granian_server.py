"""The default HTTP server: granian (HTTP in Rust) speaking RSGI to an asyncio loop.

Why RSGI and not granian's WSGI: a WSGI app reads its body on the thread that will
decide, so a client that sends a head and one byte of its body would hold a decision
thread for as long as it likes. Here a body is read whole on the event loop, with a
deadline (408 and the connection closed when it runs out) and a size bound (413, the
excess read and discarded so the client sees the answer), before a decision thread or an
instance is involved. Only complete requests reach the threads, and admission
(`EdgeApp.admit`) happens before queueing, so a saturated edge answers 503 at once instead
of queueing without bound.
What the loop does per request is kept small (it competes with the decisions for the GIL):
one timer sweep instead of a timer per body, a plain queue to the decision threads, and the
decision thread sends its own answer (granian's protocol object may be used from any
thread) and counts the decision out itself. The loop is not woken to hear that a decision
is done (a wake-up per decision is a large share of the host's cost): finished requests are
collected whenever the loop runs anyway and by a short timer while decisions are out, so a
request's task ends at most COLLECT_S after its answer left.
With the memory session store the loop is also one of the deciders: there is one decision
thread fewer than instances, and a request whose body is in while every decision thread is
busy is decided on the loop, on the instance they leave free (never waiting for one): no
thread hand-off, and the guest still runs without the GIL beside the threads'. The loop is
then busy for one decision (bounded by its deadline) before it reads the next body, and
decides at most one between two polls of its sockets (`loop_turn`). Shared
stores (LMDB, Redis) may wait for a lease or the network, which the loop must never do:
with them every decision goes to a thread. `/healthz` and `/openapi.json` are answered on
the loop itself.
HTTP parsing and connection handling stay in Rust threads that do not hold the GIL. One
worker process keeps every session of the memory store in one place; EDGE_WORKERS=N with
EDGE_SESSION_STORE=lmdb (or redis://) runs N processes sharing sessions. The figures
behind these choices are in docs/performance.md (History).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import stat
from collections import deque
from dataclasses import replace
from functools import partial
from typing import Any

from granian.rsgi import ProtocolClosed, ProtocolError

from ..host.config import EdgeConfig
from ..host.edge_host import EdgeHost, configure_logging, settle_heap
from ..sessions.session_store import MemorySessionStore
from .app import BODILESS, NO_HEADERS, EdgeApp, Headers, Reply, Route, error_body
from .lane import Lane
from .open_files import raise_open_files_limit

log = logging.getLogger("edge.host")
_LEVELS = ("critical", "error", "warning", "info", "debug")
_JSON = [("content-type", "application/json")]


SWEEP_S = 0.25  # how often overdue body reads are looked for (the deadline's precision)
COLLECT_S = 0.002  # while decisions are out, how often the loop collects the finished ones


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
        # the loop decides too (module docstring): one thread fewer than instances
        self.loop_decides = self.config.threads > 1 and isinstance(self.app.sessions,
                                                                   MemorySessionStore)
        self.decide_threads = Lane(self.config.threads - 1 if self.loop_decides
                                   else self.config.threads, "decide")
        # decisions that may wait in the threads' queue before the loop decides one itself:
        # 0 under granian (its Rust threads read the next requests while the loop decides);
        # the loop server reads nothing while its loop decides, so there the threads keep
        # work queued (loop_server.QUEUE_AHEAD)
        self.queue_ahead = 0
        # the loop decides at most one request between two polls of its sockets: requests
        # whose bodies are in (pipelined ones above all: one per connection) would else be
        # decided back to back, each connection's turn in one go, while no other socket is
        # read (a reviewer's 200 connections pipelining decisions held a visitor 4.9 s,
        # /healthz 11 s); the others go to the threads' queue, in the order they came
        self.loop_turn = True
        # /v1/decide once admitted on the loop (the thread must not count it in again)
        self.admitted = Route("POST", self.app.decide_admitted, self.config.max_body_bytes,
                              lane="decide")
        self.admitted_now = Route("POST", partial(self.app.decide_admitted, wait=False),
                                  self.config.max_body_bytes, lane="decide")
        # /healthz (it counts spool files) and outcomes (a MAC and a buffer append) run
        # here: never on the loop, never queued behind decisions
        self.side = Lane(2, "side")
        self.side_pending = 0  # side requests queued or running (loop thread only)
        self._health_running: asyncio.Future[Reply] | None = None  # /healthz being computed
        # requests reading their body now, with their deadline (loop time): one sweeper
        # cancels the overdue ones, cheaper on the hot path than a timer per request
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.overdue: set[asyncio.Task[Any]] = set()
        # decisions answered by their thread, whose request task the loop has not ended yet
        # (appended by decision threads, emptied on the loop), and how many are out
        self.finished: deque[asyncio.Future[None]] = deque()
        self.deciding = 0  # loop thread only
        self._collector: asyncio.TimerHandle | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.decide_threads.start(loop)
        self.side.start(loop)
        loop.call_later(SWEEP_S, self._sweep)
        loop.call_soon(self._bound_sends, 0)

    def _bound_sends(self, tries: int) -> None:
        """Give the listening socket its send timeout (`limit_stalled_sends`), once granian
        has opened it (it may not have when the loop starts: look again for a few seconds)."""
        if limit_stalled_sends(self.config.port, self.config.send_timeout_s):
            return
        if tries < 50:
            self.loop.call_later(0.1, self._bound_sends, tries + 1)
        else:
            log.warning("no listening socket on port %d found: answers a client does not "
                        "read are not timed out", self.config.port)

    def _sweep(self) -> None:
        """Cancel the body reads past their deadline (they answer 408)."""
        now = self.loop.time()
        for task, deadline in list(self.reading.items()):
            if now >= deadline:
                self.overdue.add(task)
                task.cancel()
        self.loop.call_later(SWEEP_S, self._sweep)

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
        self.decide_threads.stop()
        self.side.stop()
        self.host.close()
        log.info("edge host stopped")

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if self.finished:  # the loop runs anyway: end the requests answered meanwhile
            self._collect()
        if scope.proto != "http":
            return
        method, path = scope.method, scope.path
        route = self.app.route(method, path)
        if not isinstance(route, Route):
            return _send(proto, route)
        cors = NO_HEADERS
        screened: Reply | None = None  # answered from the request's headers alone
        if route.cors or route.etag or route.guarded:
            headers = scope.headers
            verdict = self.app.screen(route, headers.get("origin"),
                                      headers.get("if-none-match"), headers.get("authorization"))
            if isinstance(verdict, tuple):
                screened = verdict
            else:
                cors = verdict
        body = b""
        if route.max_body:
            # read even when refused: the client then reads its answer on a clean connection
            got = await self._read_body(scope, proto, route)
            if not isinstance(got, bytes):
                return _send(proto, got, cors)
            body = got
        if screened is not None:
            return _send(proto, screened)
        if route.lane == "loop":
            return _send(proto, self.app.run(route, body, method, path), cors)
        if route.lane == "decide":  # admitted before queueing, not in the thread
            refused = self.app.admit()
            if refused is not None:
                if self.app.metrics is not None:  # as `EdgeApp.run` counts the others
                    self.app.metrics.answered(refused[0])
                return _send(proto, refused, cors)
            if self.finished:  # a thread that finished while this body was read is free
                self._collect()
            if (self.loop_decides and self.loop_turn
                    and self.deciding >= self.decide_threads.size + self.queue_ahead
                    and self.app.pool.idle()):
                self.loop_turn = False
                self.loop.call_soon(self._next_turn)  # runs after the next poll of sockets
                try:
                    return _send(proto, self.app.run(self.admitted_now, body, method, path),
                                 cors)
                finally:
                    self.app.release()
            # the decision thread answers and releases; this task only waits to end
            done = self.loop.create_future()
            self.deciding += 1
            self.decide_threads.submit(self._decide_and_send, done, proto, body, method, path,
                                       cors)
            if self._collector is None:
                self._collector = self.loop.call_later(COLLECT_S, self._collect_tick)
            await done
            return None
        if path == "/healthz":
            return _send(proto, await self._health(route, method, path), cors)
        if self.side_pending >= self.config.max_pending:
            self.app.counters.add("busy")
            return _send(proto, (503, error_body("overloaded", "edge host saturated, retry "
                                                 "shortly"), [("Retry-After", "1")]), cors)
        self.side_pending += 1
        try:
            reply = await self.side.run(self.app.run, route, body, method, path)
        finally:
            self.side_pending -= 1
        _send(proto, reply, cors)

    async def _health(self, route: Route, method: str, path: str) -> Reply:
        """`/healthz`, computed once for every probe waiting meanwhile: a flood of probes
        costs one computation at a time and takes no slot from outcome reports (they
        shared the side lane's bound, and both got 503 under 300 looping probes)."""
        running = self._health_running
        if running is None or running.done():
            running = self._health_running = self.side.run(self.app.run, route, b"", method,
                                                            path)
        return await asyncio.shield(running)  # type: ignore[no-any-return]

    def _decide_and_send(self, done: asyncio.Future[None], proto: Any, body: bytes,
                         method: str, path: str, cors: Headers) -> None:
        """On a decision thread: decide, answer, count the decision out, and leave `done`
        for the loop to collect (no wake-up: see the module's docstring)."""
        try:
            _send(proto, self.app.run(self.admitted, body, method, path), cors)
        finally:
            self.app.release()
            self.finished.append(done)  # deque.append: atomic, no lock needed

    def _next_turn(self) -> None:
        self.loop_turn = True

    def _collect(self) -> None:
        """End the request tasks of the decisions answered since the last call."""
        finished = self.finished
        while finished:
            done = finished.popleft()
            self.deciding -= 1
            if not done.done():  # its task may have been cancelled (client gone)
                done.set_result(None)

    def _collect_tick(self) -> None:
        self._collector = None
        self._collect()
        if self.deciding:
            self._collector = self.loop.call_later(COLLECT_S, self._collect_tick)

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
                # read and dropped so a client sending already sees the answer; beyond the
                # bound, or from a client waiting for 100 Continue, nothing is read (the
                # answer says close)
                if (length <= self.config.max_discard_bytes
                        and scope.headers.get("expect", "").lower() != "100-continue"):
                    await self._discard(proto, 0)
                return self.app.too_large(route, length)
        if self.app.draining:  # the stop came before this read began: it would not be
            return _draining()  # cancelled with the others, and would wait out its deadline
        # The request's own task is registered, so that a stop can cancel the reads still
        # waiting (granian runs each request as an asyncio task).
        task = asyncio.current_task()
        if task is not None:
            self.reading[task] = self.loop.time() + self.config.body_timeout_s
        try:
            if declared is not None:  # hyper holds it to its length: read it at once
                return await proto()  # type: ignore[no-any-return]
            return await _collect(proto, route.max_body)
        except asyncio.CancelledError:
            if task is None or not (task in self.overdue or self.app.draining):
                raise  # this request itself was cancelled (the client went away)
            task.uncancel()
            if task in self.overdue:
                return self.app.slow_body()
            return _draining()
        except BodyRefused as exc:
            return exc.reply
        except BodyTooLarge as exc:  # chunked, no length declared
            await self._discard(proto, exc.seen)
            return self.app.too_large(route, exc.seen)
        except (BodyBroken, ProtocolClosed, ProtocolError):
            return self.app.broken_body()  # the client left mid-body, or framed it wrong
        finally:
            if task is not None:
                self.reading.pop(task, None)
                self.overdue.discard(task)

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


def limit_stalled_sends(port: int, timeout_s: float) -> int:
    """Set TCP_USER_TIMEOUT on this process's listening sockets on `port` (the connections
    they accept inherit it), so a connection whose peer leaves an answer unread (zero
    window) or unacknowledged for `timeout_s` is closed by the kernel and its slot freed:
    granian has no send timeout. The sockets are granian's, opened in Rust: found among
    this process's descriptors. Returns how many were set (0 where Linux's option or
    /proc is missing)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None or not os.path.isdir("/proc/self/fd"):
        return 0
    done = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except (ValueError, OSError):
            continue
        with sock:  # closes the duplicate only
            try:
                if (sock.family in (socket.AF_INET, socket.AF_INET6)
                        and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                        and sock.getsockname()[1] == port):
                    sock.setsockopt(socket.IPPROTO_TCP, option, int(timeout_s * 1000))
                    done += 1
            except OSError:
                continue
    return done


def _draining() -> Reply:
    return 503, error_body("draining", "edge host shutting down, retry shortly"), [
        ("Retry-After", "1"), ("Connection", "close")]


class BodyBroken(Exception):
    """A chunked body that did not end with its last chunk."""


class BodyRefused(Exception):
    """The server refused a body mid-way (the loop server: a chunked body in too many
    chunks); `reply` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply[0])
        self.reply = reply


async def _collect(proto: Any, limit: int) -> bytes:
    """A body sent without a length, chunk by chunk, up to `limit` (BodyTooLarge). granian
    hands over an empty chunk when the body ends, and also when it fails (the connection
    closed before the last chunk, a chunk size that is not one): only the last one may be
    empty (BodyBroken)."""
    parts: list[bytes] = []
    size = 0
    ended = False
    async for chunk in proto:
        if ended:
            raise BodyBroken
        if not chunk:
            ended = True
            continue
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        parts.append(chunk)
    return b"".join(parts)


def _send(proto: Any, reply: Reply, cors: Headers = NO_HEADERS) -> None:
    status, body, extra = reply
    headers = [(k.lower(), v) for k, v in extra]
    if cors:
        headers += [(k.lower(), v) for k, v in cors]
    if status not in BODILESS and not any(k == "content-type" for k, _ in headers):
        headers = _JSON + headers
    proto.response_bytes(status, headers, body)


# -- two hooks into granian's internals ------------------------------------------------------
# No public granian API tells a worker which one it is or lets the app hear the stop signal.
# Both hooks are tied to the pinned granian (pyproject.toml); an upgrade that breaks them
# fails tests/edge/test_edge_host.py (the workers' edge ids) and tests/adversarial/
# test_edge_http.py (Ctrl-C with a stalled body open).

def _numbered_workers(server_class: Any) -> Any:
    """`server_class` whose workers' loader is told which worker it builds (from 1)."""

    class NumberedWorkers(server_class):  # type: ignore[misc,valid-type]
        def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:
            return super()._spawn_worker(idx, target, partial(callback_loader, worker=idx + 1))

        def _respawn_workers(self, workers: Any, *args: Any, **kwargs: Any) -> Any:
            # a worker that died could not mark its live gauges dead; one still running
            # (a SIGHUP reload replaces them all) marks its own when it stops
            from .metrics import forget_worker_metrics

            for idx in workers:
                try:
                    worker = self.wrks[idx]
                    if worker.is_alive():
                        continue
                    pid = worker._id()  # granian's own name for the process id
                except Exception:  # never in the way of the respawn itself
                    log.exception("could not tell which process worker %d was", idx + 1)
                    continue
                log.error("worker %d (process %d) ended; starting it again (what it had "
                          "not yet spooled of its telemetry is lost)", idx + 1, pid)
                forget_worker_metrics(pid)
            return super()._respawn_workers(workers, *args, **kwargs)

    return NumberedWorkers


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


# -- the server ----------------------------------------------------------------------------

def _worker_app(config: EdgeConfig, worker: int = 1, server: str = "granian") -> RsgiEdge:
    """Runs in the worker process: the engine, instances and threads are made there (none
    of them survives a fork). With several workers each is an edge of its own in the fleet
    view and in telemetry (`<edge id>/w<k>`): counters and instances are per process."""
    configure_logging(config)
    if config.workers > 1:
        config = replace(config, worker=worker,
                         edge_id=f"{config.edge_id or f'{config.host}:{config.port}'}/w{worker}")
    host = EdgeHost.build(config)
    settle_heap()
    log.info("edge host %s on http://%s:%s (revision %s, %s, worker %d of %d, "
             "%d threads)", host.app.edge_id, config.host, config.port,
             host.sync.status.revision, server, worker, config.workers, config.threads)
    edge = RsgiEdge(host)
    if server == "granian":
        _hook_stop_signals(edge)
    return edge


def serve_granian(config: EdgeConfig) -> None:
    """Serve until SIGTERM or Ctrl-C: granian stops accepting, lets in-flight requests
    finish (at most EDGE_DRAIN_TIMEOUT_S), then the worker closes its host."""
    raise_open_files_limit(config.max_connections * config.workers + 1024)
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.server import MPServer

    # granian logs to stdout by default; the host logs to stderr, and so does granian here.
    log_config = {"handlers": {
        "console": {"formatter": "generic", "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler",
                   "stream": "ext://sys.stderr"}}}
    level = config.log_level.lower()
    server = _numbered_workers(MPServer)(
        "edge_module.http.granian_server:RsgiEdge", address=config.host, port=config.port,
        interface=Interfaces.RSGI, workers=config.workers,
        # backpressure bounds the requests a worker handles at once, connections waiting
        # for a slow body included; far above what the instances can decide, so idle and
        # slow connections (each reaped by its deadline) never crowd out a good request.
        runtime_threads=config.io_threads, backlog=2048, backpressure=config.max_connections,
        runtime_mode="st" if config.io_threads == 1 else "mt",
        http="1", websockets=False, log_level=level if level in _LEVELS else "info",
        http1_settings=HTTP1Settings(
            header_read_timeout=int(config.header_timeout_s * 1000), keep_alive=True),
        log_dictconfig=log_config, workers_kill_timeout=max(1, round(config.drain_timeout_s)),
        # a worker that dies is started again at once; granian stops the host when one
        # dies again within 5.5 s of its restart (a crash loop), unless another worker
        # was restarted in between
        respawn_failed_workers=True)
    server.serve(target_loader=partial(_worker_app, config), wrap_loader=False)
