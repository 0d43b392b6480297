"""Control plane settings: defaults for one laptop, overridden by CONTROL_* variables."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from edge_module.host.config import _ENV_NAMES as SHARED_ENV_NAMES
from edge_module.host.config import EdgeConfig

from .rulepack.pack_limits import PackLimits

_PACK = PackLimits()  # the rule-pack reader's defaults, which tools without a config use

DEFAULTS: dict[str, Any] = {
    "HOST": "127.0.0.1",
    "PORT": 8600,
    "DATA_DIR": ".var/control",  # the pack registry lives in DATA_DIR/packs
    # The edge store, shared with the edges (TRIGGERS_STORE): a folder or s3://bucket/prefix;
    # S3 credentials come from the usual AWS chain, the endpoint from TRIGGERS_S3_ENDPOINT_URL.
    # Shared settings take the edge's defaults, so both ends agree without being told.
    "STORE_DIR": EdgeConfig.store,
    "S3_ENDPOINT_URL": EdgeConfig.s3_endpoint_url,
    "KEYS_DIR": "",  # private signing keys (0600); empty: DATA_DIR/keys
    "TRUSTED_KEYS": str(EdgeConfig.trusted_keys),  # TRIGGERS_TRUSTED_KEYS: keys edges trust
    "PUBLISHER_TOKENS": "",  # comma-separated; empty: DATA_DIR/publisher.token
    "EDGE_TOKENS": "",  # comma-separated; empty: DATA_DIR/edge.token
    # Edge tokens bound to one edge id each, `edge-id=token` comma-separated: a holder can
    # report (fleet, telemetry) as that edge only. Shared EDGE_TOKENS may claim any id.
    "BOUND_EDGE_TOKENS": "",
    # Authoring (validate, compile: read-only, but they parse untrusted YAML): the publisher
    # token or one of these; comma-separated; empty: DATA_DIR/author.token if it exists.
    "AUTHOR_TOKENS": "",
    # The console's cookie is Secure (sent over https only): "auto" when the request came
    # over https, to this server or (X-Forwarded-Proto: https) to the proxy in front of it;
    # "1" always (a proxy that does not say so); "0" never.
    "CONSOLE_COOKIE_SECURE": "auto",
    # Failed console sign-ins one client address may make in a burst (then one per 6 s;
    # beyond: 429 with Retry-After); 0: no bound (behind a proxy that limits them itself).
    "CONSOLE_SIGNIN_FAILURES": 10,
    "MAX_REQUEST_BYTES": 1024 * 1024,  # any request body (telemetry batches included)
    # The server (http_server.py): threads running requests; connections held at once; a
    # request must arrive whole within REQUEST_TIMEOUT_S of its first byte; an idle
    # connection is closed after IDLE_TIMEOUT_S.
    "THREADS": 4,
    "MAX_CONNECTIONS": 1000,
    # per client address; 0: no bound (behind a proxy, which then limits its clients)
    "MAX_CONNECTIONS_PER_CLIENT": 100,
    "REQUEST_TIMEOUT_S": 30.0,
    "IDLE_TIMEOUT_S": 30,
    # What one rule pack may ask of the reader (CONTROL_MAX_PACK_BYTES...): checked before
    # it is validated or compiled; over a limit is 413 pack_too_large with the position.
    "MAX_PACK_BYTES": _PACK.bytes,  # the YAML's bytes, and its text with aliases expanded
    "MAX_PACK_NODES": _PACK.nodes,  # YAML values with every alias written out
    "MAX_TRIGGERS": _PACK.triggers,  # per pack, sequence steps included
    "MAX_CONDITIONS_PER_TRIGGER": _PACK.conditions_per_trigger,
    "MAX_CONDITIONS": _PACK.conditions,  # per pack
    "MAX_SNAPSHOT_BYTES": 8 * 1024 * 1024,  # a compiled draft answered by POST /v1/compile
    "CATALOG_FILE": "",  # the content catalog; empty: catalog.yaml beside the registry's packs
    # Telemetry: "sqlite" (DATA_DIR/telemetry.sqlite3) or kinesis://stream-name (fleets; the
    # endpoint is TRIGGERS_S3_ENDPOINT_URL's sibling CONTROL_KINESIS_ENDPOINT_URL).
    "TELEMETRY_SINK": "sqlite",
    "KINESIS_ENDPOINT_URL": "",
    "TELEMETRY_MAX_FIELD_CHARS": 4096,  # a telemetry record's string field; longer: rejected
    "FALSE_TRIGGER_WINDOW_S": 30.0,  # a firing with no click/conversion within it is false
    "RECALIBRATE_INTERVAL_S": 3600.0,  # adaptive thresholds re-tuned this often; 0 = off
    # Decisions, firings and outcomes older than this are deleted (hourly, by `serve`, and
    # by `trigger-engine prune`); 0 keeps them forever. 90: the console's longest period.
    "TELEMETRY_RETENTION_DAYS": 90.0,
    # The learning loop's settings (CONTROL_LEARN_*; learning.proposal.Settings documents each)
    "LEARN_WINDOW_S": 6 * 3600,  # learn from this much recent history, not all of it
    "LEARN_HOLDOUT_SHARE": 0.3,  # of the last hour's sessions, kept for the guardrail
    "LEARN_MIN_SESSIONS": 200,  # per segment, before its thresholds move
    "LEARN_MIN_CONVERSIONS": 20,
    "LEARN_SEGMENT_MODEL_SESSIONS": 600,  # a segment gets its own intent model from this many
    "LEARN_MAX_STEP": 0.15,  # firing falls by at most this share of sessions per run
    "LEARN_MAX_RISE": 0.3,  # and rises by at most this share
    "LEARN_CONFIDENCE": 0.9,  # the recall target must hold at this bootstrap lower bound
    "LEARN_BACKGROUND_SHARE": 0.1,  # background conversions from the least engaged share; 0: none
    "LEARN_REGULARISATION": 0.5,  # C of the logistic regression
}


# Settings shared with the edges (TRIGGERS_*), read from the variables the edge reads.
SHARED = {
    "STORE_DIR": SHARED_ENV_NAMES["store"],
    "S3_ENDPOINT_URL": SHARED_ENV_NAMES["s3_endpoint_url"],
    "TRUSTED_KEYS": SHARED_ENV_NAMES["trusted_keys"],
}


def pack_limits(config: dict[str, Any]) -> PackLimits:
    """The rule-pack reader's limits from a loaded configuration."""
    return PackLimits(bytes=int(config["MAX_PACK_BYTES"]), nodes=int(config["MAX_PACK_NODES"]),
                      triggers=int(config["MAX_TRIGGERS"]),
                      conditions_per_trigger=int(config["MAX_CONDITIONS_PER_TRIGGER"]),
                      conditions=int(config["MAX_CONDITIONS"]))


class ConfigError(ValueError):
    """A CONTROL_* (or TRIGGERS_*) setting that cannot be used; the message names it."""


# Numeric settings' ranges (inclusive); every numeric one must also be finite.
_RANGES: dict[str, tuple[float, float]] = {
    "PORT": (0, 65535), "FALSE_TRIGGER_WINDOW_S": (0.001, 86_400 * 365),
    "RECALIBRATE_INTERVAL_S": (0, 86_400 * 365), "LEARN_HOLDOUT_SHARE": (0, 0.9),
    "TELEMETRY_RETENTION_DAYS": (0, 36_500),
    "LEARN_MAX_STEP": (0, 1), "LEARN_MAX_RISE": (0, 1), "LEARN_CONFIDENCE": (0, 0.999),
    "LEARN_BACKGROUND_SHARE": (0, 0.9), "LEARN_REGULARISATION": (1e-6, 1e6),
    "THREADS": (1, 256), "MAX_CONNECTIONS": (8, 100_000), "REQUEST_TIMEOUT_S": (1, 3600),
    "MAX_CONNECTIONS_PER_CLIENT": (0, 100_000), "CONSOLE_SIGNIN_FAILURES": (0, 100_000),
    "IDLE_TIMEOUT_S": (1, 3600),
}


def _setting(key: str, raw: str, default: Any) -> Any:
    """`raw` (from CONTROL_<key>) as the default's type, within its range."""
    name = f"CONTROL_{key}"
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected {'an integer' if kind is int else 'a number'}"
                          ) from None
    if kind in (int, float):
        low, high = _RANGES.get(key, (1 if kind is int else 0, float("inf")))
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{name}={raw!r}: expected a finite number from {low:g} to "
                              f"{high:g}")
    return value


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULTS, then the environment, then `overrides` (tests). A variable set to nothing
    counts as unset: an empty TRIGGERS_STORE or CONTROL_DATA_DIR meant the current folder,
    where a publish then wrote its manifest. ConfigError for a value that cannot be used."""
    config = dict(DEFAULTS)
    for key, names in SHARED.items():
        for name in names:
            if os.environ.get(name):
                config[key] = os.environ[name]
                break
    for key, default in DEFAULTS.items():
        raw = os.environ.get(f"CONTROL_{key}")
        if raw:
            config[key] = _setting(key, raw, default) if type(default) is not str else raw
    config.update(overrides or {})
    bound_edge_tokens(config)  # refused at start, not at an edge's first report
    listed_tokens(config)
    cookie_secure(config)
    if not config["KEYS_DIR"]:
        config["KEYS_DIR"] = os.path.join(config["DATA_DIR"], "keys")
    return config


def bound_edge_tokens(config: dict[str, Any]) -> dict[str, str]:
    """CONTROL_BOUND_EDGE_TOKENS as {edge id: token}: `edge-id=token` entries, comma-
    separated (an id has no `=`; a token may)."""
    out: dict[str, str] = {}
    for n, entry in enumerate(str(config.get("BOUND_EDGE_TOKENS") or "").split(","), 1):
        if not entry.strip():
            continue
        edge_id, sep, token = (part.strip() for part in entry.strip().partition("="))
        where = f"CONTROL_BOUND_EDGE_TOKENS: entry {n}"  # never the token: a secret
        if not sep or not edge_id or not token:
            raise ConfigError(f"{where} is not edge-id=token")
        if "/" in edge_id:  # `/w<k>` names an edge's workers: pop-a could speak for pop-a/x
            raise ConfigError(f"{where}: an edge id has no '/' ({edge_id!r})")
        if any(c.isspace() or c in ";," for c in token):
            raise ConfigError(f"{where}: the token holds a space or ';' (a typo for ','?)")
        if edge_id in out:
            raise ConfigError(f"{where}: edge id {edge_id!r} is listed twice")
        if token in out.values():
            raise ConfigError(f"{where}: its token is also another edge's (one token, "
                              "one edge)")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{where}: its token is {len(token)} characters; at least "
                              f"{MIN_TOKEN_CHARS} are needed (`trigger-engine tokens` makes "
                              "32)")
        out[edge_id] = token
    return out


MIN_TOKEN_CHARS = 16  # a bearer token shorter than this is guessable online
TOKEN_ROLES = ("PUBLISHER", "EDGE", "AUTHOR", "VIEWER", "METRICS")


def listed_tokens(config: dict[str, Any]) -> None:
    """Refuse (ConfigError) a CONTROL_<ROLE>_TOKENS entry, or the DATA_DIR/<role>.token file
    used in its place (the embedded default), shorter than MIN_TOKEN_CHARS, naming the
    setting or file and the entry's position, never the token."""
    for role in TOKEN_ROLES:
        raw = str(config.get(f"{role}_TOKENS") or "")
        listed = [t.strip() for t in raw.split(",") if t.strip()]
        where = f"CONTROL_{role}_TOKENS"
        if not listed and config.get("DATA_DIR"):
            path = Path(config["DATA_DIR"]) / f"{role.lower()}.token"
            try:
                listed = [path.read_text().strip()] if path.is_file() else []
            except (OSError, UnicodeDecodeError):
                listed = []
            listed, where = [t for t in listed if t], str(path)
        for n, token in enumerate(listed, 1):
            if len(token) < MIN_TOKEN_CHARS:
                raise ConfigError(
                    f"{where}: token {n} is {len(token)} characters; at least "
                    f"{MIN_TOKEN_CHARS} are needed (`trigger-engine tokens` makes 32)")


_SECURE = {"auto": "auto", "1": True, "true": True, "yes": True, "on": True,
           "0": False, "false": False, "no": False, "off": False}


def cookie_secure(config: dict[str, Any]) -> bool | str:
    """CONTROL_CONSOLE_COOKIE_SECURE as True, False or "auto"."""
    raw = config.get("CONSOLE_COOKIE_SECURE", "auto")
    value = raw if isinstance(raw, bool) else _SECURE.get(str(raw).strip().lower())
    if value is None:
        raise ConfigError(f"CONTROL_CONSOLE_COOKIE_SECURE={raw!r}: expected auto, 1 or 0")
    return value
