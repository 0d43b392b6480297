"""Hand-written snapshots for the learning-loop tests (issue #12): the core's own format,
not the compiler's output, so these tests pin what the core reads."""

from __future__ import annotations

import json
from typing import Any

from edge_module.core.catalog import SNAPSHOT_FORMAT


def trigger(tid: str, when: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A state trigger on every page, at most once per page."""
    return {"id": tid, "when": when, "action": {"content": tid},
            "cap": {"per_page": 1}, **extra}


def snapshot(*triggers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"format": SNAPSHOT_FORMAT, "revision": "r1", "triggers": list(triggers),
            "index": {"any": list(range(len(triggers)))}, **extra}


def text(doc: dict[str, Any]) -> str:
    return json.dumps(doc)


# One trigger reads dwell, depth (adaptive) and velocity; one the intent score.
LEARNING = snapshot(
    trigger("deep", [{"signal": "dwell", "op": ">=", "value": 3000},
                     {"signal": "scroll_depth", "op": ">=", "value": 0.8, "mode": "adaptive",
                      "target": {"recall": 0.95}},
                     {"signal": "scroll_velocity", "op": "<", "value": 5000,
                      "window_ms": 1000}]),
    trigger("keen", [{"signal": "intent", "op": ">=", "value": 0.7}]),
    models={"intent": {"bias": -2.0, "weights": {"dwell": 0.5, "scroll_depth": 2.0},
                       "scale": {"dwell": 1000}}},
)

# Nothing adaptive, no intent: decisions report nothing unless the envelope asks.
PLAIN = snapshot(
    trigger("plain", [{"signal": "dwell", "op": ">=", "value": 3000},
                      {"signal": "scroll_depth", "op": ">=", "value": 0.5}]),
)
