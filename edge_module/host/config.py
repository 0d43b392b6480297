"""Edge host settings: defaults that work on one laptop, overridden by EDGE_* variables."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..channels.sinks import check_webhook_url
from ..http.cors import OriginError, parse_allowed_origins
from ..setting_bounds import MAX_REQUEST_TIMEOUT_S, MAX_SECONDS
from ..state_token import parse_keys


class ConfigError(Exception):
    pass


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
SERVERS = ("granian", "loop", "waitress")


@dataclass(frozen=True)
class EdgeConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    # the HTTP server: loop (httptools on the worker's event loop, default), granian (HTTP in
    # Rust) or waitress (pure Python)
    server: str = "loop"
    log_level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR (granian's own log too)
    # Decision threads, and as many component instances: one per core (2 to 8). The guest
    # runs without the GIL, so each core runs a decision; more threads than cores only add
    # GIL hand-offs (measured: docs/performance.md). Under loop or granian with the memory store
    # the event loop is one of these deciders (one thread fewer, as many instances).
    threads: int = min(max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else os.cpu_count() or 2, 2), 8)
    io_threads: int = 1  # granian only: Rust threads parsing HTTP and moving bytes
    # loop, granian: worker processes, each with `threads` threads and instances; more than
    # one needs a shared session store (lmdb or redis)
    workers: int = 1
    worker: int = 1  # which of them this process is (set by the server, from 1)
    # The edge store: a folder or s3://bucket/prefix (TRIGGERS_STORE, shared with the
    # control plane); S3 credentials come from the usual AWS chain.
    store: str = ".var/edge-store"
    s3_endpoint_url: str = ""  # TRIGGERS_S3_ENDPOINT_URL: any S3-compatible endpoint
    trusted_keys: Path = Path(".var/trusted-keys")  # TRIGGERS_TRUSTED_KEYS: *.pub files
    state_dir: Path = Path(".var/edge")  # the last good snapshot, kept across restarts
    edge_id: str = ""  # default: host:port
    control_url: str = "http://127.0.0.1:8600"  # where status is reported ("" = nowhere)
    token: str = ""  # this edge's token for the control plane
    report_interval_s: float = 5.0
    # Decisions waiting or running; beyond it: 503 + Retry-After. Admission happens before
    # queueing, so this is the queue a burst may build (256: about 50 ms at 2 cores); much
    # smaller refuses bursts that a short wait would absorb. 0 refuses every decision and
    # outcome (503, a maintenance stop; /healthz is still answered).
    max_pending: int = 256
    drain_timeout_s: float = 10.0  # on SIGTERM, how long in-flight requests may finish
    component: Path = Path("build/decision-engine.wasm")
    cache_dir: Path = Path("build/cache")
    decide_deadline_ms: int = 50  # a guest running longer is stopped and replaced
    load_deadline_ms: int = 5000
    # a snapshot whose load was stopped (deadline, memory) is tried this many times in all,
    # with backoff, before it is rejected until the next publish
    load_attempts: int = 3
    memory_limit_mb: int = 64  # per instance (the guest needs ~13 MiB to start)
    sync_interval_s: float = 1.0
    session_ttl_s: float = 1800.0
    max_sessions: int = 100_000
    # Bytes of session state a store keeps: memory evicts the least recently used beyond
    # it, lmdb counts its pages against it (the least recently written go). Redis: each state
    # at most session_state_max_kb; its total is the server's maxmemory (volatile-lru).
    session_store_max_mb: int = 256
    session_state_max_kb: int = 64  # a larger state is not kept (the session starts over)
    max_body_bytes: int = 256 * 1024
    # loop, granian: a request body must arrive whole within this many seconds of the request
    # head (else 408 and the connection is closed); no decision thread waits for a body.
    body_timeout_s: float = 10.0
    # a request head must arrive within this many seconds of the connection opening or of
    # the previous response (idle keep-alive connections are closed after it)
    header_timeout_s: float = 15.0
    # loop, granian (Linux): an answer the client does not read (its receive window stays shut)
    # for this many seconds closes the connection (TCP_USER_TIMEOUT): otherwise a client
    # that pipelines requests and never reads keeps its connection slot for ever
    send_timeout_s: float = 30.0
    # an oversized body is read and discarded up to this many bytes so the client reads its
    # 413 (RFC 9112 section 9.6); beyond it the connection is closed after the answer
    max_discard_bytes: int = 16 * 1024 * 1024
    max_connections: int = 10_000  # connections served at once per worker process
    outcome_key: str = ""  # MAC key of outcome tokens (hex); default: one kept in state_dir
    outcome_window_s: float = 86_400.0  # outcomes are taken this long after their decision
    acquire_timeout_s: float = 1.0  # waiting longer for a free instance answers 503
    session_store: str = "memory"  # or a redis:// URL shared by the edge hosts of one PoP
    # session_store "client": the state travels with the visitor in a signed token. Keys:
    # "kid:hexkey,..." (the first signs, all verify); tokens live session_ttl_s.
    state_token_keys: str = ""
    # Telemetry (the decision log): on when control_url is set; spooled in state_dir/spool.
    telemetry: bool = True
    telemetry_interval_s: float = 0.5  # flush to the spool and ship this often
    telemetry_salt: str = ""  # hashes session ids; share it across a fleet (default: per host)
    telemetry_max_buffer: int = 10_000  # records in memory before the request thread flushes
    telemetry_max_spool_mb: int = 256  # beyond it new batches are dropped (and counted)
    # Batch files are cut at this many bytes of JSON lines: under the control plane's
    # request body limit (1 MiB by default); a 413 still splits the batch and retries.
    telemetry_batch_bytes: int = 768 * 1024
    telemetry_max_tries: int = 5  # a batch refused this often is set aside, counted dropped
    telemetry_max_set_aside: int = 100  # set-aside batch files kept; the oldest go first
    telemetry_max_field_chars: int = 128  # each logged string field (device, ids...)
    telemetry_max_url_chars: int = 1024  # logged url and referrer (no query, no userinfo)
    telemetry_max_list_items: int = 64  # logged fired/suppressed entries per decision
    telemetry_max_report_triggers: int = 16  # triggers kept of a decision's `report`
    telemetry_max_report_values: int = 16  # condition values kept per reported trigger
    # Browser pages that may call /v1/decide and /v1/outcome: comma-separated exact origins
    # (http://shop.example:8800) or *; empty: none (a request with an Origin gets 403)
    # Channels (push, email, webhook actions): sent to a signed webhook or a Kinesis stream
    # (one of them; none: such deliveries are counted dropped, reason no_sink). The outbox
    # is state_dir/channels.sqlite3, shared by this host's workers.
    channel_webhook_url: str = ""  # https://... (http only to 127.0.0.1 / localhost)
    channel_webhook_secret: str = ""  # HMAC-SHA256 key shared with the receiver (>= 32 chars)
    channel_kinesis_stream: str = ""  # a stream name; endpoint: EDGE_CHANNEL_KINESIS_ENDPOINT
    channel_kinesis_endpoint: str = ""  # any Kinesis-compatible endpoint (default: AWS)
    # sends of one delivery before it is set aside: at the 300 s backoff cap, about a day,
    # so a receiver down for hours loses nothing; the age bound usually comes first
    channel_max_attempts: int = 300
    channel_max_age_s: float = 86_400.0  # a delivery this far past its due moment is dropped
    channel_backoff_base_s: float = 1.0  # the first retry's wait, doubled each time
    channel_backoff_max_s: float = 300.0
    # set-aside deliveries kept; beyond, the oldest anonymous ones go first (docs/channels.md)
    channel_max_set_aside: int = 10_000
    # deliveries waiting (and settled keys kept); beyond it new ones are dropped
    channel_max_outbox: int = 1_000_000
    # the part of it deliveries without a verified recipient (crm_id_verified) may take: the
    # rest is kept for the customers the site signed for, whatever visitors make up
    channel_anonymous_share: float = 0.5
    channel_max_per_session: int = 8  # deliveries one session may have waiting
    channel_max_per_recipient: int = 32  # ...and one verified recipient (CRM id)
    # The site's key for visitors' CRM ids (hex): with it, a delivery carries context.crm_id
    # only when context.crm_id_sig is its HMAC-SHA256 under this key; without, unverified.
    crm_id_key: str = ""
    allowed_origins: str = ""
    sdk_dir: Path = Path("build/sdk")  # the SDK build served under /sdk/ (its manifest.json)
    # GET /metrics (Prometheus): not served unless one of these is set. A token: served on
    # the public port to a caller presenting it (Authorization: Bearer). An address
    # (host:port): served there, on a listener of its own that serves nothing else.
    metrics_token: str = ""
    metrics_address: str = ""

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise ConfigError(f"EDGE_SERVER={self.server!r}: expected one of {', '.join(SERVERS)}")
        store = self.session_store
        if store not in ("memory", "lmdb", "client") and not store.startswith("lmdb:") and \
                not store.startswith(REDIS_SCHEMES):
            raise ConfigError(f"EDGE_SESSION_STORE={store!r}: expected 'memory', 'lmdb' (a "
                              "file shared by this host's workers, in EDGE_STATE_DIR), "
                              "'lmdb:/path', a redis:// URL (e.g. redis://127.0.0.1:6379/0) "
                              "or 'client' (state carried by the visitor in a signed token)")
        if store == "client":
            if not self.state_token_keys:
                raise ConfigError("EDGE_SESSION_STORE=client needs EDGE_STATE_TOKEN_KEYS="
                                  "kid:hexkey[,kid:hexkey...] (the first signs; 32 random "
                                  "bytes: python -c 'import secrets; "
                                  "print(secrets.token_hex(32))')")
            _parsed("EDGE_STATE_TOKEN_KEYS", parse_keys, self.state_token_keys, ValueError)
        self._check_numbers()
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"EDGE_LOG_LEVEL={self.log_level!r}: expected DEBUG, INFO, "
                              "WARNING, ERROR or CRITICAL")
        for name in ("s3_endpoint_url", "channel_kinesis_endpoint"):
            url = getattr(self, name)
            if url and not url.startswith(("http://", "https://")):
                env = "TRIGGERS_S3_ENDPOINT_URL" if name == "s3_endpoint_url" else \
                    f"EDGE_{name.upper()}"
                raise ConfigError(f"{env}={url!r}: expected an http:// or https:// URL")
        if self.session_store.startswith(REDIS_SCHEMES[:2]):
            try:
                _ = urlsplit(self.session_store).port  # the attribute parses it
            except ValueError as exc:
                raise ConfigError(f"EDGE_SESSION_STORE: {exc}") from None
        for name in ("body_timeout_s", "header_timeout_s", "send_timeout_s"):
            value = getattr(self, name)
            if not 0 < value <= MAX_REQUEST_TIMEOUT_S:
                raise ConfigError(f"EDGE_{name.upper()}={value}: expected seconds, more than "
                                  f"0 and at most {MAX_REQUEST_TIMEOUT_S}")
        if self.workers < 1 or self.threads < 1:
            raise ConfigError(f"EDGE_WORKERS={self.workers}, EDGE_THREADS={self.threads}: "
                              "each must be at least 1")
        if self.workers > 1 and store == "memory":
            raise ConfigError(f"EDGE_WORKERS={self.workers} needs a session store the worker "
                              "processes share: EDGE_SESSION_STORE=lmdb (this host) or a "
                              "redis:// URL (hosts of a PoP)")
        _parsed("EDGE_ALLOWED_ORIGINS", parse_allowed_origins, self.allowed_origins, OriginError)
        if self.metrics_address and not _is_address(self.metrics_address):
            raise ConfigError(f"EDGE_METRICS_ADDRESS={self.metrics_address!r}: expected "
                              "host:port (e.g. 127.0.0.1:9700)")
        if self.workers > 1 and self.server == "waitress":
            raise ConfigError(f"EDGE_WORKERS={self.workers}: waitress runs one worker process "
                              "(EDGE_SERVER=loop or granian run several)")
        self._check_channels()

    def _check_numbers(self) -> None:
        """Every number finite and positive (a few may be 0), some bounded above: -1 ms
        deadlines aborted every decision, 0 pending refused every request, a 0 or NaN
        interval spun a core, 100,000 threads ate the memory, port 99999 listened elsewhere."""
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) not in (int, float):
                continue
            low_ok = value >= 0 if f.name in _ZERO_OK else value > 0
            most = _MAX.get(f.name, MAX_SECONDS if f.name.endswith("_s") else math.inf)
            if not (math.isfinite(value) and low_ok and value <= most):
                bound = f" and at most {most} (ten years)" if most == MAX_SECONDS else (
                    f" and at most {most}" if most != math.inf else "")
                raise ConfigError(f"EDGE_{f.name.upper()}={value}: expected a finite number, "
                                  f"{'0 or more' if f.name in _ZERO_OK else 'more than 0'}"
                                  f"{bound}")

    def _check_channels(self) -> None:
        if self.channel_webhook_url and self.channel_kinesis_stream:
            raise ConfigError("EDGE_CHANNEL_WEBHOOK_URL and EDGE_CHANNEL_KINESIS_STREAM: "
                              "deliveries go to one sink; set one of them")
        if self.channel_webhook_url:
            _parsed("EDGE_CHANNEL_WEBHOOK_URL", check_webhook_url, self.channel_webhook_url,
                    ValueError)
            if len(self.channel_webhook_secret) < 32:
                raise ConfigError("EDGE_CHANNEL_WEBHOOK_URL needs EDGE_CHANNEL_WEBHOOK_SECRET, "
                                  "at least 32 characters shared with the receiver (python -c "
                                  "'import secrets; print(secrets.token_hex(32))')")
        if self.crm_id_key:
            _parsed("EDGE_CRM_ID_KEY", bytes.fromhex, self.crm_id_key, ValueError)
        if self.channel_max_attempts < 1 or self.channel_backoff_base_s <= 0 or \
                self.channel_backoff_max_s < self.channel_backoff_base_s:
            raise ConfigError("EDGE_CHANNEL_MAX_ATTEMPTS must be at least 1 and "
                              "0 < EDGE_CHANNEL_BACKOFF_BASE_S <= EDGE_CHANNEL_BACKOFF_MAX_S")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> EdgeConfig:
        """Defaults, then EDGE_<FIELD> (or the shared TRIGGERS_*) variables, then overrides."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in fields(cls):
            for name in _ENV_NAMES.get(f.name, (f"EDGE_{f.name.upper()}",)):
                # a folder set to nothing is unset: "" was the current folder (a publish
                # or the edge's state written wherever it was started)
                # ...and an empty name (default "") defers to the next alternative name
                if name in env and (env[name] or not (_is_place(f) or f.default == "")):
                    values[f.name] = _convert(name, env[name], f.default)
                    break
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


# Numbers that may be 0 (all others must be more), and upper bounds.
_ZERO_OK = frozenset(("port", "max_pending", "max_discard_bytes", "telemetry_max_set_aside",
                      "channel_max_set_aside", "channel_anonymous_share",
                      "telemetry_max_report_triggers",
                      "telemetry_max_report_values"))
_MAX = {"port": 65535, "threads": 64, "io_threads": 16, "workers": 64,
        "channel_anonymous_share": 1}

# Settings shared with the control plane are named TRIGGERS_*.
_ENV_NAMES = {
    "store": ("TRIGGERS_STORE", "TRIGGERS_STORE_DIR"),
    "s3_endpoint_url": ("TRIGGERS_S3_ENDPOINT_URL",),
    "trusted_keys": ("TRIGGERS_TRUSTED_KEYS",),
    # documented as EDGE_ID (operations.md); EDGE_EDGE_ID, the generic name, also works
    "edge_id": ("EDGE_ID", "EDGE_EDGE_ID"),
}


def _parsed(name: str, parse: Callable[[str], object], value: str,
            error: type[Exception]) -> None:
    """Check one setting with its own parser; its complaint names the setting."""
    try:
        parse(value)
    except error as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _is_address(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isascii() and port.isdigit() and int(port) < 65536)


def _is_place(f: Field[Any]) -> bool:
    """A folder or store setting (empty means unset)."""
    return isinstance(f.default, Path) or f.name == "store"


def _convert(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{name}={raw!r}: expected true or false (1/0, yes/no, on/off)")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise ConfigError(f"{name}={raw!r}: expected {kind}") from None
    return raw
