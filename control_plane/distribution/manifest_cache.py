"""The edge store as the control plane's requests use it: one manifest read at a time.

Every page of the console, `GET /v1/fleet`, `/v1/snapshots` and each scrape read the
manifest, most of them anonymously; with the store slow or unreachable each read held a
request thread for its whole timeout (8 s on S3), so six anonymous clients stalled
telemetry, healthz and the console behind them. Here one read serves every request for
`fresh_s`; while a read is under way the others get the last manifest read, however old,
at once, or, before any, the error; a failed read is the answer for `retry_s` without
asking the store again. A manifest this process writes is what it reads next, at once.
A publish elsewhere shows here within `fresh_s`, so whatever decides a write (publish,
rollback, the console's confirmation) reads the store itself (`uncached`): a rollback
decided on a cached manifest answered "already served" while the store served another
revision.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from edge_module.distribution.edge_store import EdgeStore, NoManifest, StoreError

FRESH_S = 1.0
RETRY_S = 5.0


class ManifestCache:
    """An `EdgeStore` whose unconditional manifest reads are shared (see the module)."""

    def __init__(self, store: EdgeStore, fresh_s: float = FRESH_S,
                 retry_s: float = RETRY_S) -> None:
        self.store = store
        self.fresh_s, self.retry_s = fresh_s, retry_s
        self._lock = threading.Lock()  # guards the fields below
        self._reading = False
        self._since = 0.0  # when the read under way began
        self._got: tuple[bytes, str] | None = None  # the last manifest read
        self._none: NoManifest | None = None  # the last read found none published
        self._error: StoreError | None = None  # the last read failed with it
        self._at = -float("inf")  # when the last read ended
        self._writes = 0  # manifest writes so far: a read begun before one is not kept

    def describe(self) -> str:
        return self.store.describe()

    def put_object(self, key: str, data: bytes) -> None:
        self.store.put_object(key, data)

    def get_object(self, key: str) -> bytes:
        return self.store.get_object(key)

    def put_manifest(self, data: bytes, if_match: str | None) -> str:
        with self._lock:
            writes = self._writes
        try:
            etag = self.store.put_manifest(data, if_match)
        except BaseException:
            with self._lock:  # whatever happened, read it afresh next time
                self._at = -float("inf")
                self._writes += 1
            raise
        with self._lock:  # what this process wrote is what it reads next, unless another
            # write of its own ended meanwhile: then which is newer is the store's to say
            if writes == self._writes:
                self._got, self._none, self._error = (data, etag), None, None
                self._at = time.monotonic()
            else:
                self._at = -float("inf")
            self._writes += 1
        return etag

    def get_manifest(self, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        if if_none_match is not None:  # a conditional read is about one caller's ETag
            return self.store.get_manifest(if_none_match)
        now = time.monotonic()
        with self._lock:
            age = now - self._at
            if self._reading:  # another request is asking the store: never wait for it
                if self._got is None and self._none is None:
                    raise StoreError(f"{self.store.describe()}: no answer yet to a read "
                                     f"begun {now - self._since:.0f} s ago")
                return self._answer()
            if self._error is not None:
                if age < self.retry_s:
                    raise self._error
            elif age < self.fresh_s:
                return self._answer()
            self._reading, self._since, writes = True, now, self._writes
        got: tuple[bytes, str] | None = None
        none: NoManifest | None = None
        error: StoreError | None = None
        answered = False
        try:
            got = self.store.get_manifest(None)
            answered = True
        except NoManifest as exc:
            none, answered = exc, True
        except StoreError as exc:
            error, answered = exc, True
        finally:
            with self._lock:
                self._reading = False
                # kept unless a write came since, or the read ended in a surprise
                if answered and writes == self._writes:
                    self._at, self._error = time.monotonic(), error
                    if error is None:
                        self._got, self._none = got, none
        if error is not None:
            raise error
        if none is not None:
            raise none
        return got

    def _answer(self) -> tuple[bytes, str] | None:
        if self._none is not None:
            raise self._none
        return self._got

    def __getattr__(self, name: str) -> Any:  # what else the store offers (bucket, root...)
        return getattr(self.store, name)


def uncached(store: EdgeStore) -> EdgeStore:
    """The store itself, for a read that decides a write."""
    return store.store if isinstance(store, ManifestCache) else store
