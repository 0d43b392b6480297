"""The one shape of the host's background duties (snapshot sync, status reporting,
telemetry shipping): `run_once` on an interval in a daemon thread, with `start`, `stop`
and `close`."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("edge.periodic")


class PeriodicTask:
    name = "task"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # a background duty must outlive any surprise
                log.exception("%s failed unexpectedly", self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        """Stop for good; a duty with work a clean stop must not leave undone does it here."""
        self.stop()
