"""Every setting the edge host and the control plane read is in docs/operations.md's
table or in docs/security-model.md's table of limits (a review found nine in neither,
`EDGE_DRAIN_TIMEOUT_S` and `CONTROL_KEYS_DIR` among them), under the name the process
reads."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from control_plane.config import DEFAULTS, SHARED
from edge_module.host.config import _ENV_NAMES, EdgeConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"
INTERNAL = {"worker"}  # which worker process this is: set by the server, not by anyone


def _table() -> str:
    operations = (DOCS / "operations.md").read_text()
    limits = (DOCS / "security-model.md").read_text()
    return operations[operations.index("## Configuration"):] + \
        limits[limits.index("## Limits, defaults and settings"):]


@pytest.mark.parametrize("field", [f.name for f in fields(EdgeConfig) if f.name not in INTERNAL])
def test_every_edge_setting_is_in_the_table(field):
    names = _ENV_NAMES.get(field, (f"EDGE_{field.upper()}",))
    assert any(f"`{name}`" in _table() for name in names), names


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_control_plane_setting_is_in_the_table(key):
    names = (f"CONTROL_{key}", *SHARED.get(key, ()))
    assert any(f"`{name}`" in _table() for name in names), names
