"""What the edges report: which edge runs which revision, and how it fares."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

STALE_AFTER_MS = 30_000  # an edge silent this long is shown as stale
# Edges remembered at most: past it, the one silent longest is forgotten (the edge token
# is shared by a fleet, so made-up edge ids must not grow the control plane without end)
MAX_EDGES = 10_000
# ... and their reports' bytes (as JSON), at most: the view is open to anyone, so reports
# made up under a shared token must not grow each of its answers without bound (a
# re-review: 43 MB from 3,000 edges, 144 MB at 10,000). An edge's report is about 2 KB.
MAX_BYTES = 24 * 1024 * 1024


def _rate(before: dict[str, Any] | None, status: dict[str, Any], now_ms: int) -> float | None:
    """Decisions per second between an edge's last two reports (its `decisions` counter);
    None after a restart (the counter went back) or before a second report."""
    if before is None:
        return None
    old, new = before.get("decisions"), status.get("decisions")
    elapsed_ms = now_ms - before["last_seen_ms"]
    if (type(old) is not int or type(new) is not int or not 0 <= old <= new < 2**63
            or elapsed_ms <= 0):
        return None
    return round((new - old) * 1000 / elapsed_ms, 2)


class FleetRegistry:
    def __init__(self, max_edges: int = MAX_EDGES, max_bytes: int = MAX_BYTES) -> None:
        self._edges: dict[str, dict[str, Any]] = {}  # in order of their last report
        self._sizes: dict[str, int] = {}  # each edge's report, bytes as JSON
        self._bytes = 0
        self._lock = threading.Lock()
        self.max_edges, self.max_bytes = max_edges, max_bytes

    def report(self, edge_id: str, status: dict[str, Any], now_ms: int | None = None) -> None:
        """Keep an edge's report; the edges silent longest are forgotten past the bounds."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        size = len(json.dumps(status, default=str))
        with self._lock:
            before = self._edges.pop(edge_id, None)
            self._bytes -= self._sizes.pop(edge_id, 0)
            while self._edges and (len(self._edges) >= self.max_edges
                                   or self._bytes + size > self.max_bytes):
                oldest = next(iter(self._edges))
                del self._edges[oldest]
                self._bytes -= self._sizes.pop(oldest)
            self._edges[edge_id] = {**status, "edge_id": edge_id, "last_seen_ms": now_ms,
                                    "decisions_per_s": _rate(before, status, now_ms)}
            self._sizes[edge_id] = size
            self._bytes += size

    def view(self, current_revision: int | None, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Each edge with how many revisions it is behind the published one (`behind`, 0
        when it serves that one or a higher one) and whether it serves exactly that one
        (`in_sync`): after a rollback, an edge still on the revision rolled back from (it
        refused the rollback: its `last_error` says why) is behind 0 and not in sync."""
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
