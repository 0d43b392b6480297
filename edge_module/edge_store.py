"""The edge store: where published snapshots wait for the edges.

Layout (the same in every backend):
  snapshots/<sha256>.json   content-addressed snapshot objects, never rewritten
  manifest.json             points at the current object; written last, atomically

The control plane writes, edge hosts read. A reader that sees a manifest always finds the
object it names, because objects are written (and synced) before the manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

MANIFEST_KEY = "manifest.json"
MANIFEST_FORMAT = "edge-manifest/1"


class StoreError(Exception):
    """The store cannot be read or written, or holds something it should not."""


@dataclass(frozen=True)
class Fetched:
    manifest: dict[str, Any]
    snapshot_text: str
    etag: str


def object_key(sha256: str) -> str:
    return f"snapshots/{sha256}.json"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LocalFolderStore:
    """The embedded default: a folder, every write atomic (temp file, fsync, rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalFolderStore({str(self.root)!r})"

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{key} is missing from {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key} from {self.root}: {exc}") from None

    def etag(self, key: str) -> str | None:
        """A cheap change marker for `key` (None if absent)."""
        try:
            st = (self.root / key).stat()
        except FileNotFoundError:
            return None
        return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"

    @contextlib.contextmanager
    def publish_lock(self) -> Iterator[None]:
        """Serialises publishers so revisions stay strictly increasing."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".publish.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- the manifest -----------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        if self.etag(MANIFEST_KEY) is None:
            return None
        try:
            doc = json.loads(self.get(MANIFEST_KEY))
        except ValueError as exc:
            raise StoreError(f"{MANIFEST_KEY} is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise StoreError(f"{MANIFEST_KEY} is not an {MANIFEST_FORMAT} manifest")
        return doc

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.put(MANIFEST_KEY, json.dumps(manifest, indent=1, sort_keys=True).encode())

    def fetch_current(self, known_etag: str | None = None) -> Fetched | None:
        """The current snapshot, verified against its content hash; None if unchanged."""
        etag = self.etag(MANIFEST_KEY)
        if etag is None:
            raise StoreError(f"no manifest in {self.root} yet: nothing has been published")
        if etag == known_etag:
            return None
        manifest = self.read_manifest()
        assert manifest is not None
        key = manifest.get("object")
        expected = manifest.get("sha256")
        if not isinstance(key, str) or not isinstance(expected, str):
            raise StoreError(f"{MANIFEST_KEY} names no object and hash")
        text = self.get(key).decode("utf-8", errors="replace")
        actual = sha256_text(text)
        if actual != expected:
            raise StoreError(f"{key}: content hash {actual[:12]} does not match the manifest's "
                             f"{expected[:12]} (corrupt or tampered object)")
        return Fetched(manifest, text, etag)
