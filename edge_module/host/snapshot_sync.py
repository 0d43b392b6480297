"""Keeps the instance pool on the edge store's current snapshot.

Each poll asks for the manifest with If-None-Match (a 304 costs next to nothing); on a
change it fetches the object, checks its content hash and signature, and installs it
(the guest must accept it). A snapshot that fails any step is rejected and reported in
`status`; the last good one keeps serving. The last good snapshot is also kept on local
disk, so a host (re)starts and serves even while the store is unreachable.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..edge_store import EdgeStore, Manifest, NoManifest, StoreError, sha256_bytes
from ..signing import SignatureError, TrustedKeys
from .periodic import PeriodicTask
from .pool import InstancePool, SnapshotRejected

log = logging.getLogger("edge.sync")


@dataclass
class SyncStatus:
    revision: str | None = None
    last_sync_ms: int | None = None  # last time the store answered
    last_change_ms: int | None = None  # last time a new snapshot was installed
    last_error: str | None = None
    last_error_ms: int | None = None
    from_cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SnapshotSync(PeriodicTask):
    name = "snapshot-sync"

    def __init__(self, store: EdgeStore, pool: InstancePool, trusted: TrustedKeys,
                 interval_s: float = 1.0, cache_dir: Path | None = None) -> None:
        super().__init__(interval_s)
        self._store = store
        self._pool = pool
        self._trusted = trusted
        self._cache = cache_dir
        self._etag: str | None = None
        self._rejected: str | None = None  # ETag of a manifest already refused
        self.status = SyncStatus()

    def run_once(self) -> bool:
        """One poll; True when a new snapshot was installed."""
        now_ms = int(time.time() * 1000)
        try:
            got = self._store.get_manifest(self._etag)
        except NoManifest as exc:
            self._fail(f"edge store: {exc}", now_ms)
            return False
        except StoreError as exc:
            self._fail(f"edge store unreachable: {exc}", now_ms)
            return False
        self.status.last_sync_ms = now_ms
        if got is None:
            # unchanged, and the store answers: an outage's error is over (a rejected
            # manifest is never "unchanged": the store keeps sending it, see below)
            self.status.last_error = None
            return False
        data, etag = got
        if etag == self._rejected:
            return False  # the same manifest we refused: keep its error on show
        try:
            manifest = Manifest.parse(data)
            if self._current_is(manifest):
                self._etag = etag
                return False
            snapshot = self._store.get_object(manifest.object)
            self._check(manifest, snapshot)
            self.status.last_error = None  # before it can be seen serving: no stale error
            revision = self._pool.install(snapshot.decode("utf-8"), label=str(manifest.revision))
        except StoreError as exc:
            self._fail(f"edge store: {exc}", now_ms)  # may be transient: retried next poll
            return False
        except (SignatureError, SnapshotRejected, UnicodeDecodeError) as exc:
            self._rejected = etag
            self._fail(f"snapshot revision {_revision_of(data)} rejected: {exc}", now_ms)
            return False
        self._etag = etag
        self._rejected = None
        self._save(data, snapshot)
        self.status.revision = revision
        self.status.last_change_ms = now_ms
        self.status.last_error = None
        self.status.from_cache = False
        log.info("serving snapshot revision %s", revision)
        return True

    def _check(self, manifest: Manifest, snapshot: bytes) -> None:
        actual = sha256_bytes(snapshot)
        if actual != manifest.sha256:
            raise SignatureError(f"content hash {actual[:12]} does not match the manifest's "
                                 f"{manifest.sha256[:12]} (corrupt or tampered object)")
        self._trusted.verify(snapshot, manifest.signature, manifest.key_id)

    def _current_is(self, manifest: Manifest) -> bool:
        current = self._pool.current
        return current is not None and self.status.revision == str(manifest.revision) and \
            sha256_bytes(current.text.encode()) == manifest.sha256

    def _fail(self, message: str, now_ms: int) -> None:
        if message != self.status.last_error:
            log.warning("%s (still serving revision %s)", message, self.status.revision)
        self.status.last_error = message
        self.status.last_error_ms = now_ms

    # -- the last good snapshot on local disk ---------------------------------------------

    def load_cached(self) -> bool:
        """Serve the last good snapshot from disk (checked again) until the store answers."""
        if self._cache is None:
            return False
        try:
            data = (self._cache / "manifest.json").read_bytes()
            snapshot = (self._cache / "snapshot.json").read_bytes()
            manifest = Manifest.parse(data)
            self._check(manifest, snapshot)
            revision = self._pool.install(snapshot.decode("utf-8"), label=str(manifest.revision))
        except FileNotFoundError:
            return False
        except (OSError, StoreError, SignatureError, SnapshotRejected, UnicodeDecodeError) as exc:
            log.warning("ignoring the cached snapshot in %s: %s", self._cache, exc)
            return False
        self.status.revision = revision
        self.status.from_cache = True
        log.info("serving cached snapshot revision %s until the store answers", revision)
        return True

    def _save(self, manifest: bytes, snapshot: bytes) -> None:
        if self._cache is None:
            return
        try:
            self._cache.mkdir(parents=True, exist_ok=True)
            # snapshot first, manifest last: a torn pair fails the hash check on load
            for name, data in (("snapshot.json", snapshot), ("manifest.json", manifest)):
                fd, tmp = tempfile.mkstemp(dir=self._cache, prefix=".tmp-")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._cache / name)
        except OSError as exc:
            log.warning("cannot keep the last good snapshot in %s: %s", self._cache, exc)


def _revision_of(manifest: bytes) -> str:
    try:
        return str(json.loads(manifest).get("revision", "?"))
    except (ValueError, AttributeError):
        return "?"
