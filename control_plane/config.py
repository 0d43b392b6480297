"""Control plane settings: defaults for one laptop, overridden by CONTROL_* variables."""

from __future__ import annotations

import os
from typing import Any

DEFAULTS: dict[str, Any] = {
    "HOST": "127.0.0.1",
    "PORT": 8600,
    "DATA_DIR": ".var/control",  # the pack registry lives in DATA_DIR/packs
    "STORE_DIR": ".var/edge-store",  # TRIGGERS_STORE_DIR: the edge store, shared with edges
    "MAX_PACK_BYTES": 1024 * 1024,
}


def load(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULTS, then the environment, then `overrides` (tests)."""
    config = dict(DEFAULTS)
    if "TRIGGERS_STORE_DIR" in os.environ:
        config["STORE_DIR"] = os.environ["TRIGGERS_STORE_DIR"]
    for key, default in DEFAULTS.items():
        raw = os.environ.get(f"CONTROL_{key}")
        if raw is not None:
            config[key] = type(default)(raw)
    config.update(overrides or {})
    return config
