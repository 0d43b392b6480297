"""Keeps the instance pool on the edge store's current snapshot.

Each poll asks for the manifest with If-None-Match (a 304 costs next to nothing); on a
change it checks the manifest entry's signature and that it is newer than the one served
(its signed `sequence`; a lower revision only with a signed rollback statement), then
fetches the object, checks its content hash and signature, and installs it (the guest must
accept it). A manifest or snapshot that fails a check is rejected for good (until the
manifest changes) and reported in `status`; a load that may succeed later (the guest
stopped at its load deadline, no free instance, the store timing out) is retried at later
polls, a bounded number of times with backoff. The last good one keeps serving. It is also
kept on local disk, so a host (re)starts and serves even while the store is unreachable,
and remembers which entry it served: a restart does not accept a replayed older manifest.
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

from ..host.periodic import PeriodicTask
from ..runtime.pool import InstancePool, PoolBusy, SnapshotRejected
from .edge_store import (
    EdgeStore,
    Manifest,
    NoManifest,
    StoreError,
    sha256_bytes,
)
from .signing import SignatureError, TrustedKeys, entry_statement

log = logging.getLogger("edge.sync")

MAX_BACKOFF_S = 60.0  # the longest wait between two tries of a load that may succeed later


def check_entry(manifest: Manifest, trusted: TrustedKeys) -> None:
    """SignatureError unless a trusted key signed the manifest's entry."""
    trusted.verify(entry_statement(manifest.doc), manifest.entry_signature,
                   manifest.entry_key_id, what="manifest entry")


def check_content(manifest: Manifest, snapshot: bytes, trusted: TrustedKeys) -> None:
    """SignatureError unless `snapshot` is the object the manifest names (its sha256) and
    a trusted key signed it."""
    actual = sha256_bytes(snapshot)
    if actual != manifest.sha256:
        raise SignatureError(f"content hash {actual[:12]} does not match the manifest's "
                             f"{manifest.sha256[:12]} (corrupt or tampered object)")
    trusted.verify(snapshot, manifest.signature, manifest.key_id)


class ManifestRefused(Exception):
    """A correctly signed manifest entry that must not be served now (replayed, stale)."""


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
                 interval_s: float = 1.0, cache_dir: Path | None = None,
                 load_attempts: int = 3) -> None:
        super().__init__(interval_s)
        self._store = store
        self._pool = pool
        self._trusted = trusted
        self._cache = cache_dir
        self._load_attempts = max(1, load_attempts)
        self._etag: str | None = None
        self._rejected: str | None = None  # ETag of a manifest refused for good
        # (ETag, tries so far, monotonic time before which it is not tried again) of a
        # manifest whose snapshot failed to load in a way a later try may not
        self._retry: tuple[str, int, float] | None = None
        # The newest signed entry accepted (served, or read back from the local copy):
        # nothing older is accepted after it.
        self._served: Manifest | None = None
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
        if self._retry is not None and self._retry[0] == etag and \
                time.monotonic() < self._retry[2]:
            return False  # backing off before the next try: keep its error on show
        try:
            manifest = Manifest.parse(data)
            self._authorise(manifest)
            current = self._pool.current
            if current is not None and current.sha256 == manifest.sha256:
                # the content is served already (the same entry, or a newer one naming it)
                self._accept(manifest, etag, data, current.text.encode(), current.revision,
                             now_ms, changed=False)
                return False
            snapshot = self._store.get_object(manifest.object)
            self._check(manifest, snapshot)
            self.status.last_error = None  # before it can be seen serving: no stale error
            revision = self._pool.install(snapshot.decode("utf-8"))
        except StoreError as exc:
            self._fail(f"edge store: {exc}", now_ms)  # may be transient: retried next poll
            return False
        except PoolBusy as exc:
            self._fail(f"snapshot revision {_revision_of(data)} not loaded yet: {exc}; "
                       "retried at the next poll", now_ms)
            return False
        except SnapshotRejected as exc:
            if exc.trapped:
                self._retry_later(etag, data, exc, now_ms)
            else:
                self._reject(etag, f"snapshot revision {_revision_of(data)} rejected: {exc}",
                             now_ms)
            return False
        except ManifestRefused as exc:
            self._reject(etag, f"manifest for revision {_revision_of(data)} refused: {exc}",
                         now_ms)
            return False
        except (SignatureError, UnicodeDecodeError) as exc:
            self._reject(etag, f"snapshot revision {_revision_of(data)} rejected: {exc}", now_ms)
            return False
        self._accept(manifest, etag, data, snapshot, revision, now_ms, changed=True)
        log.info("serving snapshot revision %s", revision)
        return True

    def _authorise(self, manifest: Manifest) -> None:
        """SignatureError unless a trusted key signed the entry; ManifestRefused unless it
        is newer than the one served (a lower revision only as a rollback statement)."""
        check_entry(manifest, self._trusted)
        if manifest.sequence is None:
            raise ManifestRefused("the signed entry has no sequence")
        served = self._served
        if served is None or served.sequence is None:
            return
        if manifest.sequence < served.sequence or (
                manifest.sequence == served.sequence and manifest.sha256 != served.sha256):
            raise ManifestRefused(
                f"its entry (sequence {manifest.sequence}) is older than the one served "
                f"(revision {served.revision}, sequence {served.sequence}): a replayed or "
                "stale manifest")
        if manifest.revision < served.revision and manifest.rollback_from is None:
            raise ManifestRefused(
                f"revision {manifest.revision} is lower than the served revision "
                f"{served.revision} and the entry is no signed rollback statement")

    def _check(self, manifest: Manifest, snapshot: bytes) -> None:
        check_content(manifest, snapshot, self._trusted)

    def _accept(self, manifest: Manifest, etag: str, data: bytes, snapshot: bytes,
                revision: str, now_ms: int, changed: bool) -> None:
        """`manifest` is served now: nothing older is accepted from here on (nor after a
        restart: it is kept on disk with its snapshot)."""
        newer = self._served is None or self._served.sequence != manifest.sequence or \
            self._served.sha256 != manifest.sha256
        self._etag = etag
        self._rejected = None
        self._retry = None
        self._served = manifest
        if newer or changed:
            self._save(data, snapshot)
        self.status.revision = revision
        if changed:
            self.status.last_change_ms = now_ms
        self.status.last_error = None
        self.status.from_cache = False

    def _reject(self, etag: str, message: str, now_ms: int) -> None:
        self._rejected = etag
        self._retry = None
        self._fail(message, now_ms)

    def _retry_later(self, etag: str, data: bytes, exc: Exception, now_ms: int) -> None:
        """A load that may succeed later: tried again after a backoff, `load_attempts`
        times in all, then rejected like any bad snapshot (no endless reloading)."""
        tries = (self._retry[1] if self._retry is not None and self._retry[0] == etag
                 else 0) + 1
        revision = _revision_of(data)
        if tries >= self._load_attempts:
            self._reject(etag, f"snapshot revision {revision} rejected after {tries} "
                               f"attempt(s): {exc}", now_ms)
            return
        wait_s = min(self.interval_s * 2 ** (tries - 1), MAX_BACKOFF_S)
        self._retry = (etag, tries, time.monotonic() + wait_s)
        self._fail(f"snapshot revision {revision} not loaded (attempt {tries} of "
                   f"{self._load_attempts}, tried again in {wait_s:g} s): {exc}", now_ms)

    def _fail(self, message: str, now_ms: int) -> None:
        if message != self.status.last_error:
            log.warning("%s (still serving revision %s)", message, self.status.revision)
        self.status.last_error = message
        self.status.last_error_ms = now_ms

    # -- the last good snapshot on local disk ---------------------------------------------

    def load_cached(self) -> bool:
        """Serve the last good snapshot from disk (checked again) until the store answers;
        its signed entry is the one the store's manifests must be newer than."""
        if self._cache is None:
            return False
        try:
            data = (self._cache / "manifest.json").read_bytes()
            snapshot = (self._cache / "snapshot.json").read_bytes()
            manifest = Manifest.parse(data)
            if manifest.entry_signature is not None or manifest.entry_key_id is not None:
                self._authorise(manifest)
                # remembered even if the snapshot below no longer loads: a restart must
                # not make an older manifest acceptable again
                self._served = manifest
            # else: kept by an edge from before signed entries; served, but sets no floor
            self._check(manifest, snapshot)
            revision = self._pool.install(snapshot.decode("utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, StoreError, SignatureError, ManifestRefused, SnapshotRejected,
                PoolBusy, UnicodeDecodeError) as exc:
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
