"""What the edges report: which edge runs which revision, and how it fares."""

from __future__ import annotations

import threading
import time
from typing import Any

STALE_AFTER_MS = 30_000  # an edge silent this long is shown as stale


class FleetRegistry:
    def __init__(self) -> None:
        self._edges: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def report(self, edge_id: str, status: dict[str, Any], now_ms: int | None = None) -> None:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            self._edges[edge_id] = {**status, "edge_id": edge_id, "last_seen_ms": now_ms}

    def view(self, current_revision: int | None, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Each edge with how many revisions it is behind the published one."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            edges = [dict(e) for e in self._edges.values()]
        for edge in edges:
            try:
                running = int(edge.get("revision"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                running = None
            edge["behind"] = None if current_revision is None or running is None else \
                max(0, current_revision - running)
            edge["in_sync"] = running is not None and running == current_revision
            edge["stale"] = now_ms - edge["last_seen_ms"] > STALE_AFTER_MS
        return sorted(edges, key=lambda e: e["edge_id"])
