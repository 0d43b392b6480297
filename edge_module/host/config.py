"""Edge host settings: defaults that work on one laptop, overridden by EDGE_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class EdgeConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    threads: int = 4  # HTTP worker threads; also the number of component instances
    store_dir: Path = Path(".var/edge-store")  # TRIGGERS_STORE_DIR, shared with the control plane
    component: Path = Path("build/decision-engine.wasm")
    cache_dir: Path = Path("build/cache")
    decide_deadline_ms: int = 50  # a guest running longer is stopped and replaced
    load_deadline_ms: int = 5000
    memory_limit_mb: int = 64  # per instance (the guest needs ~13 MiB to start)
    sync_interval_s: float = 1.0
    session_ttl_s: float = 1800.0
    max_sessions: int = 100_000
    max_body_bytes: int = 256 * 1024
    acquire_timeout_s: float = 1.0  # waiting longer for a free instance answers 503

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> EdgeConfig:
        """Defaults, then EDGE_<FIELD> variables (TRIGGERS_STORE_DIR for the store), then overrides."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in fields(cls):
            name = "TRIGGERS_STORE_DIR" if f.name == "store_dir" else f"EDGE_{f.name.upper()}"
            if name in env:
                values[f.name] = _convert(name, env[name], f.default)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a {type(default).__name__}") from None
    return raw
