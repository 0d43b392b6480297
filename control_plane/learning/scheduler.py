"""Runs the recalibration job every CONTROL_RECALIBRATE_INTERVAL_S seconds (0 = off), with
the CONTROL_LEARN_* settings, in a daemon thread of the serving control plane. It re-tunes
the snapshot being served (never the registry's drafts) and never runs over a rollback."""

from __future__ import annotations

import logging
from typing import Any

from edge_module.host.periodic import PeriodicTask

from .proposal import Settings
from .recalibration import recalibrate

log = logging.getLogger("control_plane.learning.scheduler")


class RecalibrationScheduler(PeriodicTask):
    """The host's background-duty shape (`run_once` on an interval, `start`, `stop`)."""

    name = "recalibrate"

    def __init__(self, app: Any) -> None:
        super().__init__(float(app.config["RECALIBRATE_INTERVAL_S"]))
        self.app = app
        self._last_note: str | None = None

    def run_once(self) -> Any:
        ext = self.app.extensions
        metrics = ext.get("metrics")
        try:
            result = recalibrate(ext["edge_store"], ext["telemetry_store"],
                                 ext["key_ring"].active(), Settings.from_config(self.app.config))
        except Exception:
            if metrics is not None:
                metrics.recalibrated("failed")
            raise  # PeriodicTask logs it and keeps the schedule
        if metrics is not None:
            metrics.recalibrated(result.outcome)
        if result.note is not None and result.note != self._last_note:
            log.info("recalibration: %s", result.note)  # once, not at every interval
        self._last_note = result.note
        if result.published is not None:
            log.info("recalibration published revision %s (%d threshold(s) moved)",
                     result.published.revision, len(result.moved))
        return result

    def start(self) -> None:
        if self.interval_s > 0:  # 0 turns recalibration off
            super().start()
