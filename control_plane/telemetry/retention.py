"""Telemetry retention: decisions, firings and outcomes older than
CONTROL_TELEMETRY_RETENTION_DAYS (default 90, the console's longest period; 0 keeps them
forever) are deleted, when `serve` starts and every hour after, in short batches
(`TelemetryStore.prune`). The recalibrations table, the learning loop's audit trail, stays.

Without it the store only grew: a review flooded it with a leaked edge token at 36 MB a
second, and a year of honest traffic ends in the same place more slowly. A bound on time
is what an operator can reason about (the reports cover at most 90 days); a bound on size
would let that same flood push out real records."""

from __future__ import annotations

import logging
import time
from typing import Any

from edge_module.host.periodic import PeriodicTask

from .telemetry_store import TelemetryStore

log = logging.getLogger("control_plane.telemetry.retention")

DAY_MS = 86_400_000
INTERVAL_S = 3600.0


def cutoff_ms(retention_days: float, now_ms: int | None = None) -> int | None:
    """The stamp before which records go (None: retention 0, they stay)."""
    if retention_days <= 0:
        return None
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return now_ms - int(retention_days * DAY_MS)


def prune(store: TelemetryStore, retention_days: float,
          now_ms: int | None = None) -> dict[str, int] | None:
    """Delete what is older than the retention (None: retention 0, nothing to do)."""
    before = cutoff_ms(retention_days, now_ms)
    return None if before is None else store.prune(before)


class RetentionScheduler(PeriodicTask):
    """Prunes the serving control plane's telemetry store at start and every hour."""

    name = "telemetry-retention"

    def __init__(self, app: Any, interval_s: float = INTERVAL_S) -> None:
        super().__init__(interval_s)
        self.app = app

    def run_once(self) -> dict[str, int] | None:
        store = self.app.extensions.get("telemetry_store")
        days = float(self.app.config["TELEMETRY_RETENTION_DAYS"])
        if store is None or days <= 0:
            return None
        deleted = prune(store, days)
        if deleted and any(deleted.values()):
            log.info("telemetry older than %g days deleted: %s", days,
                     ", ".join(f"{n} {table}" for table, n in deleted.items()))
        return deleted

    def _run(self) -> None:
        try:
            self.run_once()  # at start too: a store kept while serve was down
        except Exception:  # a background duty must outlive any surprise
            log.exception("%s failed unexpectedly", self.name)
        super()._run()

    def start(self) -> None:
        if float(self.app.config["TELEMETRY_RETENTION_DAYS"]) > 0:
            super().start()
