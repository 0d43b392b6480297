"""Tells the control plane what this edge runs: id, revision, last sync error, instance
count and decision counters, every few seconds (`POST /v1/fleet/report`, edge token).

Each report is one exchange within the timeout, redirects not followed
(`http_deadline.post`): a control plane trickling its answer, or a proxy pointing
elsewhere, neither holds the reporter (nor the edge's shutdown, which reports once more)
nor sends the edge's report on to another host."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Callable
from typing import Any

from ..host.periodic import PeriodicTask
from ..http_deadline import post

log = logging.getLogger("edge.status")
# what a 401 or 403 from the control plane means for an edge
TOKEN_HINT = (": EDGE_TOKEN must be one of the control plane's edge tokens "
              "(CONTROL_EDGE_TOKENS, or its data folder's edge.token)")


class StatusReporter(PeriodicTask):
    name = "status-report"

    def __init__(self, control_url: str, token: str, status: Callable[[], dict[str, Any]],
                 interval_s: float = 5.0, timeout_s: float = 2.0) -> None:
        super().__init__(interval_s)
        self._url = control_url.rstrip("/") + "/v1/fleet/report"
        self._token = token
        self._status = status
        self._timeout = timeout_s
        self.last_error: str | None = None

    def run_once(self) -> bool:
        body = json.dumps(self._status()).encode()
        try:
            status = post(self._url, body, {"Content-Type": "application/json",
                                            "Authorization": f"Bearer {self._token}"},
                          self._timeout).status
        except (OSError, ValueError, http.client.HTTPException) as exc:  # BadStatusLine...
            self._fail(f"control plane unreachable: {exc}")
            return False
        if not 200 <= status < 300:
            self._fail(f"control plane answered {status} to the status report"
                       + (TOKEN_HINT if status in (401, 403) else ""))
            return False
        self.last_error = None
        return True

    def close(self) -> None:
        """Stop, then report once more: the control plane sees the last state."""
        self.stop()
        self.run_once()

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message
