"""Keeps the instance pool on the edge store's current snapshot.

Polls the manifest (a cheap change marker per poll); on a change it fetches the object,
checks its content hash and installs it. A snapshot that fails any step is rejected and
reported in `status`; the last good one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ..edge_store import LocalFolderStore, StoreError
from .pool import InstancePool, SnapshotRejected

log = logging.getLogger("edge.sync")


@dataclass
class SyncStatus:
    revision: str | None = None
    last_sync_ms: int | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    rejected_etag: str | None = None


class SnapshotSync:
    def __init__(self, store: LocalFolderStore, pool: InstancePool, interval_s: float = 1.0) -> None:
        self._store = store
        self._pool = pool
        self._interval = interval_s
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = SyncStatus()

    def sync_once(self) -> bool:
        """One poll; True when a new snapshot was installed."""
        now_ms = int(time.time() * 1000)
        try:
            fetched = self._store.fetch_current(self._etag)
            if fetched is None:
                return False
            if fetched.etag == self.status.rejected_etag:
                return False  # already refused this exact manifest; keep the error shown
            revision = self._pool.install(fetched.snapshot_text,
                                          label=str(fetched.manifest.get("revision")))
        except (StoreError, OSError) as exc:
            self._fail(f"edge store: {exc}", now_ms)
            return False
        except SnapshotRejected as exc:
            self.status.rejected_etag = self._store.etag("manifest.json")
            self._fail(f"snapshot revision {exc.revision_hint} rejected: {exc.reason}", now_ms)
            return False
        self._etag = fetched.etag
        self.status.revision = revision
        self.status.last_sync_ms = now_ms
        self.status.last_error = None
        self.status.rejected_etag = None
        log.info("serving snapshot revision %s", revision)
        return True

    def _fail(self, message: str, now_ms: int) -> None:
        if message != self.status.last_error:
            log.warning("%s (still serving revision %s)", message, self.status.revision)
        self.status.last_error = message
        self.status.last_error_ms = now_ms

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapshot-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sync_once()
            except Exception:  # noqa: BLE001 - the poller must outlive any surprise
                log.exception("snapshot sync failed unexpectedly")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
