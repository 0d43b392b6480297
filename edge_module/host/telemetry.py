"""Ships the decision log to the control plane (`POST /v1/telemetry`, edge token): flushes
the buffer to the spool, then sends spooled batches oldest first, deleting each only once
stored. A failed send backs off exponentially with jitter; the spool waits on disk."""

from __future__ import annotations

import logging
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

from .decision_log import DecisionLog
from .periodic import PeriodicTask

log = logging.getLogger("edge.telemetry")


class TelemetryShipper(PeriodicTask):
    name = "telemetry"

    def __init__(self, decision_log: DecisionLog, control_url: str, token: str,
                 interval_s: float = 0.5, timeout_s: float = 5.0, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 60.0, max_files_per_run: int = 50) -> None:
        super().__init__(interval_s)
        self.log = decision_log
        self._url = control_url.rstrip("/") + "/v1/telemetry"
        self._token = token
        self._timeout = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_files_per_run = max_files_per_run
        self.failures = 0  # consecutive failed sends
        self.next_attempt = 0.0  # time.monotonic() before which nothing is sent
        self.shipped = 0  # batch files delivered by this process
        self.last_error: str | None = None

    def run_once(self) -> int:
        """Flush, then send what the spool holds (unless backing off); batches delivered."""
        self.log.flush()
        if time.monotonic() < self.next_attempt:
            return 0
        sent = 0
        for path in self.log.spool_files()[: self.max_files_per_run]:
            if not self._send(path):
                self._back_off()
                break
            sent += 1
        return sent

    def _send(self, path: Path) -> bool:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # delivered by a concurrent run (close() racing the thread)
            return True
        req = urllib.request.Request(self._url, data=data, method="POST", headers={
            "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip",
            "Authorization": f"Bearer {self._token}"})
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (400, 413, 422):  # never accepted as is: set aside, keep going
                rejected = path.parent / "rejected"
                rejected.mkdir(exist_ok=True)
                path.replace(rejected / path.name)
                log.error("control plane refused telemetry batch %s (%s); moved to %s",
                          path.name, exc.code, rejected)
                return True
            self._fail(f"control plane answered {exc.code} to a telemetry batch")
            return False
        except (OSError, ValueError) as exc:
            self._fail(f"control plane unreachable for telemetry: {exc}")
            return False
        path.unlink(missing_ok=True)
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error = None
        self.shipped += 1
        return True

    def _back_off(self) -> None:
        self.failures += 1
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (self.failures - 1))
        # full jitter: edges that lost the control plane together do not return together
        self.next_attempt = time.monotonic() + random.uniform(ceiling / 2, ceiling)

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s; the batch stays spooled", message)
        self.last_error = message

    def status(self) -> dict[str, object]:
        return {"recorded": self.log.recorded, "buffered": self.log.pending(),
                "spooled_files": len(self.log.spool_files()),
                "spooled": self.log.spooled, "shipped_batches": self.shipped,
                "dropped": self.log.dropped, "failures": self.failures,
                "last_error": self.last_error}
