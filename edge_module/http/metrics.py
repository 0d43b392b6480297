"""`GET /metrics`: the edge host's numbers in the Prometheus text format (prometheus-client).

Most of them are counted already (the app's `counters`, the pool's traps, the decision log,
the session store: what /healthz shows); they are read when metrics are asked for
(`EdgeMetrics.refresh`) and carried into prometheus-client's counters by their increase, so
the decision path does no new work for them. What only a decision knows (its latency, the
component call, the triggers it fired, its status) is tallied per decision in plain numbers,
by each thread in its own tally (`DecisionTally`: no lock, no prometheus-client call on the
decision path), and added to the metrics at `refresh`.

With several worker processes (EDGE_WORKERS>1) prometheus-client's multi-process mode keeps
every worker's values in files (`use_multiprocess_dir`) and a scrape, whichever worker
answers it, adds them up. Values read from a worker's state reach its files when it is
scraped and every `MIRROR_INTERVAL_S` (`MetricsMirror`): another worker's are at most that
old, far below any scrape interval.

Longer than most modules on purpose: each metric's declaration sits next to the reading
that feeds it, so adding one is a change in one place.
"""

from __future__ import annotations

import hmac
import logging
import os
import queue
import shutil
import struct
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from ..host.periodic import PeriodicTask
from ..runtime.component import Instance
from ..runtime.pool import InstancePool

log = logging.getLogger("edge.host")

if TYPE_CHECKING:
    from .app import EdgeApp, Reply

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MIRROR_INTERVAL_S = 1.0
READ_ATTEMPTS = 5  # reads of the workers' files before a scrape is an error
MAX_TRIGGERS = 1000  # distinct trigger labels; beyond (a runaway of revisions): "other"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
# the app's counters that are refusals, by the reason label they get
REJECTED = {"busy": "overloaded", "aborted": "decision_aborted", "oversized": "body_too_large",
            "slow_bodies": "body_timeout", "broken_bodies": "incomplete_body",
            "outcomes_refused": "invalid_outcome_token",
            "origins_refused": "origin_not_allowed"}


def use_multiprocess_dir(path: Path) -> None:
    """Keep every metric of this process and the worker processes it starts in files under
    `path`, emptied first (values of an earlier run must not be added to this one's). Call
    before the workers start: a worker's values then survive it (counters) and are added
    across workers at each scrape."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)  # how prometheus-client's file values find it
    # chosen at prometheus-client's import, which may have happened before this call
    values.ValueClass = values.MultiProcessValue()


def multiprocess_dir() -> Path | None:
    found = os.environ.get(MULTIPROC_ENV)
    return Path(found) if found and values.ValueClass is not values.MutexValue else None


def forget_worker_metrics(pid: int) -> None:
    """A worker is gone: its live gauges must no longer count in a scrape. A worker that
    stops marks itself (`EdgeMetrics.close`); one killed cannot, so its supervisor (the
    loop server's, or granian's respawning it) does, or its last values stay in the sums
    (a revision it served, the lowest, for ever)."""
    folder = multiprocess_dir()
    if folder is None:
        return
    try:
        multiprocess.mark_process_dead(pid, str(folder))
        # a worker killed while creating a file leaves it without its header: every scrape
        # would fail reading it, and it holds no value
        for path in folder.glob(f"*_{pid}.db"):
            if path.stat().st_size < 8:
                path.unlink()
    except Exception:  # restarting workers must not hang on bookkeeping
        log.exception("could not drop the metrics of worker process %d", pid)


class EdgeMetrics:
    """One process's metrics: tallied per decision, or read from `app`, and carried into
    prometheus-client's metrics at `refresh`."""

    def __init__(self, app: EdgeApp) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        self.folder = multiprocess_dir()
        reg = self.registry

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=reg)

        def gauge(name: str, doc: str, mode: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=reg, multiprocess_mode=mode)

        self.decisions = counter("edge_decisions", "Answers to POST /v1/decide, by HTTP "
                                 "status (refusals at admission included)", ["status"])
        self.decision_seconds = Histogram(
            "edge_decision_duration_seconds", "Time to decide (answers 200): body parsed to "
            "answer encoded", registry=reg, buckets=LATENCY_BUCKETS)
        self.component_seconds = Histogram(
            "edge_component_call_duration_seconds", "The component call of a decision, "
            "waiting for an instance included", registry=reg, buckets=LATENCY_BUCKETS)
        self.wait_seconds = Histogram(
            "edge_instance_wait_seconds", "Waits for a free component instance (decisions "
            "that found none free)", registry=reg, buckets=WAIT_BUCKETS)
        self.actions = counter("edge_actions", "Actions fired, by trigger id", ["trigger"])
        self.tally = DecisionTally()
        # per decision (app.py): tallied, then added to the metrics at refresh
        self.answered = self.tally.answered
        self.decided = self.tally.decided
        self._triggers: set[str] = set()
        self._folded: dict[Histogram, list[float]] = {}  # per bucket, then the sum
        self._lock = threading.Lock()
        # read from the app at refresh: counters carried by their increase
        self.rejected = counter("edge_rejected", "Requests refused, by reason (503s and "
                                "refusals)", ["reason"])
        self.errors = counter("edge_errors", "Requests answered 500 (a bug)")
        self.traps = counter("edge_traps", "Component instances replaced after a trap")
        self.sync_errors = counter("edge_sync_errors", "Snapshot polls that failed")
        self.records = counter("edge_telemetry_records", "Telemetry records by state: taken "
                               "(logged), spooled (written to disk), shipped (answered for "
                               "by the control plane)", ["state"])
        self.dropped = counter("edge_telemetry_dropped", "Telemetry records lost, by "
                               "reason", ["reason"])
        self.session_drops = counter("edge_session_store_dropped", "Session states not "
                                     "kept: evicted, refused (too large), fenced", ["reason"])
        self.channel_records = counter("edge_channel_deliveries", "Push, email and webhook "
                                       "deliveries by result: queued (kept in the outbox), "
                                       "delivered, retried (a send to try again), cancelled "
                                       "(the visitor converted first)", ["result"])
        self.channel_dropped = counter("edge_channel_dropped", "Deliveries lost or set "
                                       "aside, by reason", ["reason"])
        self._seen: dict[tuple[Counter, tuple[str, ...]], float] = {}
        # gauges: a lower revision in any worker is the host's (min); shared stores are
        # seen whole by each worker (max); the rest add up
        self.revision = gauge("edge_snapshot_revision", "Snapshot revision served "
                              "(the lowest of the workers')", "livemin")
        self.last_sync = gauge("edge_snapshot_last_sync_timestamp_seconds", "When the edge "
                               "store last answered a poll (Unix time)", "livemin")
        self.sessions = gauge("edge_sessions", "Sessions in the store (memory, lmdb)",
                              "livemax")
        self.session_bytes = gauge("edge_session_store_bytes", "Bytes of session state "
                                   "held (memory store)", "livemax")
        self.pending = gauge("edge_pending_decisions", "Decisions waiting or running",
                             "livesum")
        self.backlog = gauge("edge_telemetry_backlog_records", "Telemetry records "
                             "buffered in memory, not yet spooled", "livesum")
        self.spool_files = gauge("edge_telemetry_spool_files", "Telemetry batch files "
                                 "waiting to be shipped", "livesum")
        # the outbox is one file shared by the host's workers: each sees all of it
        self.channel_pending = gauge("edge_channel_outbox_records", "Deliveries waiting in "
                                     "the outbox (due later, or to be retried)", "livemax")
        self.channel_set_aside = gauge("edge_channel_set_aside_records", "Deliveries set "
                                       "aside in the outbox (refused, gave up, expired)",
                                       "livemax")

    def fold(self) -> None:
        """Add what the decisions tallied since the last call to the metrics."""
        total = self.tally.totals()
        for status, n in total.statuses.items():
            self._carry(self.decisions, n, str(status))
        fired: dict[str, int] = {}
        for trigger, n in total.fired.items():
            # the snapshot's trigger ids, kept for the process's life: bounded by what was
            # published, and by MAX_TRIGGERS should that ever grow without end
            if type(trigger) is not str or (trigger not in self._triggers and
                                            len(self._triggers) >= MAX_TRIGGERS):
                trigger = "other"
            self._triggers.add(trigger)
            fired[trigger] = fired.get(trigger, 0) + n
        for trigger, n in fired.items():
            self._carry(self.actions, n, trigger)
        for histogram, counts, total_s in ((self.decision_seconds, total.latency,
                                            total.sums[0]),
                                           (self.component_seconds, total.component,
                                            total.sums[1])):
            # prometheus-client has no public way to add many observations at once; a
            # bucket's own value and the sum are what observe() adds to (pinned version:
            # tests/edge/test_metrics.py checks the counts)
            seen = self._folded.setdefault(histogram, [0.0] * (len(counts) + 1))
            for i, (bucket, n) in enumerate(zip(histogram._buckets, counts, strict=True)):
                if n > seen[i]:
                    bucket.inc(n - seen[i])
                    seen[i] = n
            if total_s > seen[-1]:
                histogram._sum.inc(total_s - seen[-1])
                seen[-1] = total_s

    # -- read at scrape time ---------------------------------------------------------------
    def refresh(self) -> None:
        """Carry what the app counted into the metrics (counters by their increase)."""
        app = self.app
        status = app.status()
        with self._lock:
            self.fold()
            for name, reason in REJECTED.items():
                self._carry(self.rejected, status[name], reason)
            self._carry(self.errors, status["errors"])
            self._carry(self.traps, status["traps"])
            self._carry(self.sync_errors, getattr(app.sync, "errors", 0))
            for reason, n in (status["session_store"] or {}).items():
                if n is not None:
                    self._carry(self.session_drops, n, reason)
            log, shipper = app.decision_log, app.shipper
            if log is not None:
                self._carry(self.records, log.recorded, "taken")
                self._carry(self.records, log.spooled, "spooled")
                for reason, n in log.dropped_counts().items():
                    self._carry(self.dropped, n, reason)
                self.backlog.set(log.pending())
            if shipper is not None:
                self._carry(self.records, shipper.shipped_records, "shipped")
                self.spool_files.set(len(log.spool_files()) if log is not None else 0)
            channels = status["channels"]
            if channels is not None:
                for result in ("queued", "delivered", "retried", "cancelled"):
                    self._carry(self.channel_records, channels[result], result)
                for reason, n in channels["dropped_by_reason"].items():
                    self._carry(self.channel_dropped, n, reason)
                if channels["pending"] is not None:
                    self.channel_pending.set(channels["pending"])
                    self.channel_set_aside.set(channels["set_aside"])
        revision = status["revision"]
        if revision is not None and str(revision).isascii() and str(revision).isdigit():
            self.revision.set(int(revision))
        if status["last_sync_ms"] is not None:
            self.last_sync.set(status["last_sync_ms"] / 1000)
        if status["sessions"] is not None:
            self.sessions.set(status["sessions"])
        held = getattr(app.sessions, "accounted_bytes", None)
        if held is not None:
            self.session_bytes.set(held)
        self.pending.set(status["pending"])

    def _carry(self, metric: Counter, total: float, *labels: str) -> None:
        key = (metric, labels)
        increase = total - self._seen.get(key, 0)
        if increase > 0:
            (metric.labels(*labels) if labels else metric).inc(increase)
            self._seen[key] = total

    def render(self) -> bytes:
        """The text exposition: this process's metrics, or every worker's (multi-process)."""
        self.refresh()
        if self.folder is None:
            return generate_latest(self.registry)
        every = CollectorRegistry()
        every.register(_WorkerFiles(self.folder))
        for _ in range(READ_ATTEMPTS - 1):
            try:
                return generate_latest(every)
            except (struct.error, ValueError, OSError):
                time.sleep(0.01)  # a worker starting: its files exist before their bytes
        return generate_latest(every)

    def reply(self) -> Reply:
        return 200, self.render(), [("Content-Type", CONTENT_TYPE_LATEST)]

    def close(self) -> None:
        """This worker is gone: its live gauges no longer count (its counters still do)."""
        if self.folder is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.folder))


class _WorkerFiles:
    """prometheus-client's multi-process collection, without the files that have no
    header yet (a worker starting, or killed while it created one): they hold no value,
    and reading one fails the whole scrape."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterable[Any]:
        files = []
        for path in self.folder.glob("*.db"):
            try:
                if path.stat().st_size >= 8:
                    files.append(str(path))
            except OSError:
                continue  # removed meanwhile (a worker marked dead)
        return multiprocess.MultiProcessCollector.merge(files, accumulate=True)


class DecisionTally:
    """Per decision: its status, latency, component time and triggers, counted in plain
    numbers by each thread in its own tally (no lock on the decision path: measured, a
    shared lock cost ~3 % of the host's throughput under load). `totals` adds them up."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._threads: list[ThreadTally] = []
        self._lock = threading.Lock()  # a thread's first decision only

    def _mine(self) -> ThreadTally:
        try:
            return self._local.tally  # type: ignore[no-any-return]
        except AttributeError:
            tally = self._local.tally = ThreadTally()
            with self._lock:
                self._threads.append(tally)
            return tally

    def answered(self, status: int) -> None:
        try:
            statuses = self._local.tally.statuses
        except AttributeError:
            statuses = self._mine().statuses
        statuses[status] = statuses.get(status, 0) + 1

    def decided(self, seconds: float, component_seconds: float,
                actions: list[dict[str, Any]] | None) -> None:
        try:
            tally = self._local.tally
        except AttributeError:
            tally = self._mine()
        # bisect_left: the first bound >= the value, as Prometheus's `le`
        tally.latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        tally.component[bisect_left(LATENCY_BUCKETS, component_seconds)] += 1
        tally.sums[0] += seconds
        tally.sums[1] += component_seconds
        if actions:
            fired = tally.fired
            for action in actions:
                trigger = action.get("trigger")
                fired[trigger] = fired.get(trigger, 0) + 1

    def totals(self) -> ThreadTally:
        """Every thread's counts so far, added up (each copy is taken whole under the GIL;
        a decision counted meanwhile is in the next totals)."""
        with self._lock:
            threads = list(self._threads)
        total = ThreadTally()
        for tally in threads:
            for mine, theirs in ((total.statuses, dict(tally.statuses)),
                                 (total.fired, dict(tally.fired))):
                for key, n in theirs.items():
                    mine[key] = mine.get(key, 0) + n
            for mine_list, theirs_list in ((total.latency, list(tally.latency)),
                                           (total.component, list(tally.component)),
                                           (total.sums, list(tally.sums))):
                for i, n in enumerate(theirs_list):
                    mine_list[i] += n
        return total


class ThreadTally:
    """One thread's counts since it started: statuses, triggers fired, and per bucket of
    LATENCY_BUCKETS (the last: above them all) each duration, with their sums."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.fired: dict[Any, int] = {}
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.component = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sums = [0.0, 0.0]  # seconds: latency, component


def check_bearer(expected: str, authorization: str | None) -> tuple[int, str, str] | None:
    """None if `authorization` carries the token, else (status, code, message)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return 401, "unauthorized", ("GET /metrics needs the metrics token "
                                     "(Authorization: Bearer <EDGE_METRICS_TOKEN>)")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return 403, "forbidden", "the token presented is not this edge's metrics token"
    return None


class MetricsMirror(PeriodicTask):
    """Multi-process mode: carries this worker's read values into its files on an interval,
    so a scrape answered by another worker sees them."""

    name = "metrics"

    def __init__(self, metrics: EdgeMetrics, interval_s: float = MIRROR_INTERVAL_S) -> None:
        super().__init__(interval_s)
        self.metrics = metrics

    def run_once(self) -> None:
        self.metrics.refresh()

    def close(self) -> None:
        self.stop()
        self.metrics.refresh()
        self.metrics.close()


class MetricsListener:
    """EDGE_METRICS_ADDRESS: a listener of its own (waitress, one thread) that serves
    `GET /metrics` and nothing else, without a token: who can reach it may read it."""

    def __init__(self, metrics: EdgeMetrics, address: str) -> None:
        from waitress.server import create_server

        host, _, port = address.rpartition(":")
        self.metrics = metrics
        self.server: Any = create_server(self.wsgi, host=host.strip("[]"), port=int(port),
                                         threads=1, ident="edge-metrics")
        self.port: int = self.server.effective_port
        self._thread = threading.Thread(target=self._serve, name="metrics-listener",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self.server.run()
        except OSError:  # closed while the loop was in select()
            pass

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        from .app import _STATUS, JSON, error_body

        if environ.get("PATH_INFO") != "/metrics":
            status, body, headers = 404, error_body(
                "not_found", "this listener serves GET /metrics only"), [("Content-Type", JSON)]
        elif environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, body, headers = 405, error_body("method_not_allowed", "use GET for "
                                                    "/metrics"), [("Content-Type", JSON),
                                                                  ("Allow", "GET, HEAD")]
        else:
            status, body, headers = self.metrics.reply()
        start_response(_STATUS[status], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def close(self) -> None:
        self.server.task_dispatcher.shutdown(timeout=5)
        self.server.close()  # its loop thread (a daemon) notices within its 1 s poll: no wait


class MeteredPool(InstancePool):
    """The instance pool, timing the checkouts that had to wait for a free instance (most
    find one free and cost nothing more)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observe_wait: Callable[[float], object] = lambda _seconds: None

    def _acquire(self) -> Instance:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        started = time.perf_counter()
        try:
            return super()._acquire()
        finally:
            self.observe_wait(time.perf_counter() - started)
