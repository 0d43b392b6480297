"""The edge store: where published snapshots wait for the edges.

Layout (the same in every backend):
  snapshots/<sha256>.json   content-addressed snapshot objects, never rewritten
  manifest.json             names the current object, its hash and signature, and signs
                            that entry (revision, hash, time, sequence, rollback); written last

The control plane writes, edge hosts read. Objects are written before the manifest that
names them, and the manifest is replaced by compare-and-swap on its ETag, so publishers
never overwrite each other and a reader never sees a manifest without its object.
Backends: a local folder (the embedded default) and S3 (any S3-compatible endpoint).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from .atomic_file import write_atomic

MANIFEST_KEY = "manifest.json"
MANIFEST_FORMAT = "edge-manifest/2"  # /2: the entry itself is signed (docs/snapshot-format.md)
READABLE_FORMATS = ("edge-manifest/1", MANIFEST_FORMAT)  # a store an older version wrote
_SHA256 = re.compile(r"[0-9a-f]{64}")


class StoreError(Exception):
    """The store cannot be read or written, or holds something it should not."""


class ManifestConflict(StoreError):
    """Another publisher replaced the manifest first: read it again and retry."""


def object_key(sha256: str) -> str:
    return f"snapshots/{sha256}.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


class EdgeStore(Protocol):
    def put_object(self, key: str, data: bytes) -> None:
        """Write an immutable object."""

    def get_object(self, key: str) -> bytes:
        """Read an object; StoreError if it is missing or the store unreachable."""

    def get_manifest(self, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        """(manifest bytes, ETag); None when the ETag still matches. StoreError if absent."""

    def put_manifest(self, data: bytes, if_match: str | None) -> str:
        """Replace the manifest if its ETag is `if_match` (None: only if there is none)."""

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Manifest:
    revision: int
    object: str
    sha256: str
    signature: str | None  # of the snapshot object's bytes
    key_id: str | None
    doc: dict[str, Any]
    sequence: int | None = None  # increases with every publish and rollback (signed)
    rollback_from: int | None = None  # present on a rollback: the revision it replaced
    entry_signature: str | None = None  # of `signing.entry_statement(doc)`
    entry_key_id: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested beyond reason
            raise StoreError(f"{MANIFEST_KEY} is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") not in READABLE_FORMATS:
            raise StoreError(f"{MANIFEST_KEY} is not an {MANIFEST_FORMAT} manifest")
        revision, key, sha = doc.get("revision"), doc.get("object"), doc.get("sha256")
        if not isinstance(revision, int) or not isinstance(key, str) or not isinstance(sha, str):
            raise StoreError(f"{MANIFEST_KEY} lacks revision, object or sha256")
        # The object must be the content address of its hash: a manifest cannot point an
        # edge anywhere else (another folder, a device file) whoever wrote it.
        if not _SHA256.fullmatch(sha) or key != object_key(sha):
            raise StoreError(f"{MANIFEST_KEY}: object {key!r} is not the content address of "
                             f"its sha256")
        return cls(revision, key, sha, _text(doc, "signature"), _text(doc, "key_id"), doc,
                   _integer(doc, "sequence"), _integer(doc, "rollback_from"),
                   _text(doc, "entry_signature"), _text(doc, "entry_key_id"))


def _text(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    return value if isinstance(value, str) else None


def _integer(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    return value if type(value) is int else None


def read_manifest(store: EdgeStore) -> tuple[Manifest, str] | None:
    """The current manifest and its ETag, or None when nothing was published yet."""
    try:
        got = store.get_manifest(None)
    except NoManifest:
        return None
    assert got is not None
    return Manifest.parse(got[0]), got[1]


class NoManifest(StoreError):
    """Nothing has been published to this store yet."""


class LocalFolderStore:
    """The embedded default: a folder; every write atomic (temp file, fsync, rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"folder {self.root}"

    def put_object(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)

    def get_object(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{key} is missing from {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key} from {self.root}: {exc}") from None

    def get_manifest(self, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        try:
            data = (self.root / MANIFEST_KEY).read_bytes()
        except FileNotFoundError:
            # a mistyped TRIGGERS_STORE reads as an empty store: say which it is
            missing = "" if self.root.is_dir() else " (there is no such folder)"
            raise NoManifest(f"nothing published in {self.root} yet{missing}") from None
        except OSError as exc:
            raise StoreError(f"cannot read the manifest in {self.root}: {exc}") from None
        etag = sha256_bytes(data)
        return None if etag == if_none_match else (data, etag)

    def put_manifest(self, data: bytes, if_match: str | None) -> str:
        with self._lock():
            try:
                current: str | None = sha256_bytes((self.root / MANIFEST_KEY).read_bytes())
            except FileNotFoundError:
                current = None
            if current != if_match:
                raise ManifestConflict("the manifest changed since it was read")
            self.put_object(MANIFEST_KEY, data)
        return sha256_bytes(data)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".manifest.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class S3Store:
    """S3 or any S3-compatible store, through boto3 (credentials: the usual AWS chain)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None,
                 endpoint_url: str | None = None, region: str | None = None,
                 timeout_s: float = 2.0) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        try:
            self._client = client or boto3.client(
                "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                config=Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                              retries={"max_attempts": 2, "mode": "standard"}))
        except ValueError as exc:  # botocore: "Invalid endpoint: ..."
            raise StoreError(f"TRIGGERS_S3_ENDPOINT_URL={endpoint_url!r}: {exc}") from None

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("304", "NotModified") or status == 304:
                return None
            if code in ("412", "PreconditionFailed") or status == 412:
                raise ManifestConflict("the manifest changed since it was read") from None
            if code in ("NoSuchKey", "404") or status == 404:
                missing = NoManifest if kwargs.get("Key") == self._key(MANIFEST_KEY) \
                    else StoreError
                raise missing(f"{what}: not found in {self.describe()}") from None
            raise StoreError(f"{what} in {self.describe()}: {code or exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"{what}: {self.describe()} unreachable ({exc})") from None

    def put_object(self, key: str, data: bytes) -> None:
        self._call(f"writing {key}", self._client.put_object, Key=self._key(key), Body=data)

    def _read(self, **kwargs: Any) -> tuple[bytes, str]:
        """An object's bytes and ETag: the body is read within `_call` too, so a store that
        breaks off mid-body is a StoreError like any other (it was a raw botocore error)."""
        resp = self._client.get_object(**kwargs)
        return bytes(resp["Body"].read()), str(resp["ETag"])

    def get_object(self, key: str) -> bytes:
        return self._call(f"reading {key}", self._read, Key=self._key(key))[0]  # type: ignore[no-any-return]

    def get_manifest(self, if_none_match: str | None = None) -> tuple[bytes, str] | None:
        kwargs: dict[str, Any] = {"Key": self._key(MANIFEST_KEY)}
        if if_none_match:
            kwargs["IfNoneMatch"] = if_none_match
        return self._call("reading the manifest", self._read, **kwargs)  # type: ignore[no-any-return]

    def put_manifest(self, data: bytes, if_match: str | None) -> str:
        kwargs: dict[str, Any] = {"Key": self._key(MANIFEST_KEY), "Body": data}
        if if_match is None:
            kwargs["IfNoneMatch"] = "*"
        else:
            kwargs["IfMatch"] = if_match
        resp = self._call("writing the manifest", self._client.put_object, **kwargs)
        return str(resp["ETag"])


def open_store(spec: str | Path, endpoint_url: str | None = None) -> EdgeStore:
    """A store from a folder path or an `s3://bucket/prefix` URL."""
    text = str(spec)
    if text.startswith("s3://"):
        url = urlparse(text)
        if not url.netloc:
            raise StoreError(f"{text}: expected s3://bucket[/prefix]")
        return S3Store(url.netloc, url.path, endpoint_url=endpoint_url)
    return LocalFolderStore(text)
