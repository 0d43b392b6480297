"""One edge host's parts wired together: the component engine and its instances, snapshot
sync, the session store the settings name (`make_session_store`), the HTTP API object,
status reports and telemetry, started and stopped as one (`EdgeHost.build`, `close`).
The servers (`waitress_server.py`, `granian_server.py`) build one per process and serve
its `app`."""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..channels.dispatcher import ChannelDispatcher
from ..channels.outbox import Outbox, OutboxError
from ..channels.sinks import KinesisSink, Sink, WebhookSink
from ..distribution.edge_store import open_store
from ..distribution.signing import TrustedKeys
from ..distribution.snapshot_sync import SnapshotSync
from ..http.app import EdgeApp
from ..http.metrics import EdgeMetrics, MeteredPool, MetricsListener, MetricsMirror
from ..runtime.component import EpochTicker, Instance, load_component, make_engine
from ..sessions.lmdb_session_store import LmdbSessionStore
from ..sessions.redis_session_store import RedisSessionStore
from ..sessions.session_store import MemorySessionStore, NoSessionStore, SessionStore
from ..telemetry.decision_log import RecordLimits, load_salt
from ..telemetry.log_spool import SPOOL_SUFFIX, DecisionLog
from ..telemetry.shipper import TelemetryShipper
from ..telemetry.status_report import StatusReporter
from .config import ConfigError, EdgeConfig
from .periodic import PeriodicTask

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(config: EdgeConfig) -> None:
    """The host's log lines, on stderr, at EDGE_LOG_LEVEL."""
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)


@dataclass
class EdgeHost:
    """Everything one edge host runs, started and stopped together."""

    config: EdgeConfig
    app: EdgeApp
    sync: SnapshotSync
    ticker: EpochTicker
    # the background duties, closed in this order (last telemetry, last report, sync)
    duties: tuple[PeriodicTask, ...]
    metrics_listener: MetricsListener | None = None  # EDGE_METRICS_ADDRESS (worker 1)

    @property
    def shipper(self) -> TelemetryShipper | None:
        return self.app.shipper

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

        pool = MeteredPool(factory, config.threads,
                           decide_deadline_ms=config.decide_deadline_ms,
                           load_deadline_ms=config.load_deadline_ms,
                           acquire_timeout_s=config.acquire_timeout_s)
        store = open_store(config.store, config.s3_endpoint_url or None)
        sync = CountedSync(store, pool, TrustedKeys(config.trusted_keys),
                           config.sync_interval_s, config.state_dir / "last-good",
                           config.load_attempts)
        sync.load_cached()  # serve the last good snapshot even if the store is down
        sync.run_once()
        app = EdgeApp(pool, make_session_store(config), sync, config)
        app.channels = make_dispatcher(config)
        app.channels.start()
        duties: list[PeriodicTask] = []
        if config.control_url and config.telemetry:
            app.decision_log = _decision_log(config, app.edge_id)
            app.shipper = TelemetryShipper(
                app.decision_log, config.control_url, config.token, config.telemetry_interval_s,
                max_tries=config.telemetry_max_tries,
                max_set_aside=config.telemetry_max_set_aside)
            duties.append(app.shipper)
        if config.control_url:
            duties.append(StatusReporter(config.control_url, config.token, app.status,
                                         config.report_interval_s))
        duties.append(sync)
        listener = None
        if config.metrics_token or config.metrics_address:
            app.metrics = EdgeMetrics(app)
            pool.observe_wait = app.metrics.wait_seconds.observe
            if app.metrics.folder is not None:  # several workers: see metrics.py
                duties.append(MetricsMirror(app.metrics))
            if config.metrics_address and config.worker == 1:  # one listener per host
                listener = MetricsListener(app.metrics, config.metrics_address)
                listener.start()
        for duty in duties:
            duty.start()
        return cls(config, app, sync, ticker, tuple(duties), listener)

    def close(self) -> None:
        if self.metrics_listener is not None:
            self.metrics_listener.close()
        if self.app.channels is not None:  # sends in flight are sent again after a restart
            self.app.channels.stop()
        for duty in self.duties:
            duty.close()
        self.ticker.stop()
        self.app.sessions.close()


class CountedSync(SnapshotSync):
    """Snapshot sync counting its failed polls (`errors`, for edge_sync_errors_total)."""

    errors = 0

    def run_once(self) -> bool:
        before = self.status.last_error_ms
        try:
            return super().run_once()
        finally:  # each failure stamps its time (polls are far more than 1 ms apart)
            if self.status.last_error_ms != before:
                self.errors += 1


def make_session_store(config: EdgeConfig) -> SessionStore:
    """The store `config.session_store` names (validated by EdgeConfig): memory, a local
    LMDB file shared by this host's workers, Redis, or none (client: the visitor carries
    the state in a token)."""
    max_state = config.session_state_max_kb << 10
    if config.session_store_max_mb < 1 or max_state < 1:
        raise ConfigError(f"EDGE_SESSION_STORE_MAX_MB={config.session_store_max_mb}, "
                          f"EDGE_SESSION_STATE_MAX_KB={config.session_state_max_kb}: each "
                          "must be at least 1")
    if config.session_store == "client":
        return NoSessionStore()
    if config.session_store == "memory":
        return MemorySessionStore(config.max_sessions, config.session_ttl_s,
                                  max_bytes=config.session_store_max_mb << 20,
                                  max_state_bytes=max_state)
    if config.session_store.startswith("lmdb"):
        path = config.session_store.partition(":")[2] or str(config.state_dir / "sessions")
        return LmdbSessionStore(Path(path), config.max_sessions, config.session_ttl_s,
                                max_mb=config.session_store_max_mb,
                                max_state_bytes=max_state)
    logging.getLogger("edge.sessions").info("session state shared in Redis at %s",
                                            config.session_store.rpartition("@")[2])
    return RedisSessionStore(config.session_store, config.session_ttl_s,
                             max_state_bytes=max_state)


def make_dispatcher(config: EdgeConfig) -> ChannelDispatcher:
    """The channel dispatcher with the sink the settings name (none: deliveries are
    counted dropped) and its outbox in the state folder."""
    sink: Sink | None = None
    if config.channel_webhook_url:
        sink = WebhookSink(config.channel_webhook_url, config.channel_webhook_secret.encode())
    elif config.channel_kinesis_stream:
        sink = KinesisSink(config.channel_kinesis_stream, config.channel_kinesis_endpoint or None)
    outbox = _open_outbox(config.state_dir / "channels.sqlite3", config.channel_max_set_aside) \
        if sink is not None else None
    if sink is not None and not config.crm_id_key and config.worker == 1:  # once per host
        logging.getLogger("edge.channels").warning(
            "EDGE_CRM_ID_KEY is not set: email deliveries are dropped (unverified_recipient), "
            "as an email goes only to a CRM id the site signed; push and webhook deliveries "
            "carry the visitor's crm_id with crm_id_verified false")
    return ChannelDispatcher(outbox, sink, max_attempts=config.channel_max_attempts,
                             max_age_s=config.channel_max_age_s,
                             backoff_base_s=config.channel_backoff_base_s,
                             backoff_max_s=config.channel_backoff_max_s,
                             max_outbox=config.channel_max_outbox,
                             anonymous_share=config.channel_anonymous_share,
                             max_per_session=config.channel_max_per_session,
                             max_per_recipient=config.channel_max_per_recipient,
                             keep_keys_s=config.session_ttl_s)


OUTBOX_OPEN_WAIT_S = 300.0  # how long a starting process waits for the outbox's lock


def _open_outbox(path: Path, max_set_aside: int,
                 wait_s: float = OUTBOX_OPEN_WAIT_S) -> Outbox:
    """The outbox in `path`; one SQLite finds damaged (not a database, malformed) is moved
    aside (kept for an operator) and a new one started, so a damaged file never keeps the
    edge from serving. A file only locked (a sibling worker opening or upgrading it, a
    backup) is waited for, up to `wait_s`, then OutboxError: it holds deliveries."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return Outbox(path, max_set_aside,
                          open_wait_s=max(0.0, min(10.0, deadline - time.monotonic())))
        except OutboxError as exc:
            if exc.damaged:
                stamp = time.strftime("%Y%m%dT%H%M%S")
                for suffix in ("", "-wal", "-shm"):
                    damaged = path.with_name(path.name + suffix)
                    if damaged.exists():
                        damaged.rename(damaged.with_name(f"{path.name}.damaged-{stamp}{suffix}"))
                logging.getLogger("edge.channels").error(
                    "%s; moved aside as %s.damaged-%s, starting an empty outbox", exc,
                    path.name, stamp)
                return Outbox(path, max_set_aside, open_wait_s=10.0)
            if time.monotonic() >= deadline:
                raise OutboxError(f"{exc} (waited {wait_s:.0f} s for the channel outbox at "
                                  "start; not moved aside: it is not damaged)") from None
            logging.getLogger("edge.channels").warning("%s; waiting for the outbox", exc)
            time.sleep(0.2)


def _decision_log(config: EdgeConfig, edge_id: str) -> DecisionLog:
    return DecisionLog(
        spool_dir(config), load_salt(config.telemetry_salt, config.state_dir), edge_id,
        config.telemetry_max_buffer, config.telemetry_max_spool_mb * 1024 * 1024,
        limits=RecordLimits(config.telemetry_max_field_chars, config.telemetry_max_url_chars,
                            config.telemetry_max_list_items,
                            config.telemetry_max_report_triggers,
                            config.telemetry_max_report_values),
        max_batch_bytes=config.telemetry_batch_bytes)


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
    cyclic GC's full collections, which hold the GIL for tens of milliseconds each; what
    the process makes later is collected as usual."""
    gc.collect()
    gc.freeze()
