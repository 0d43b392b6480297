"""Snapshot signatures: Ed25519 over the exact bytes of the snapshot object.

The control plane holds the private key and signs at publish; edges hold only public
keys (a folder of `<key id>.pub` PEM files) and refuse a snapshot that is unsigned, signed
by a key they do not trust, or whose signature does not match its bytes.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class SignatureError(Exception):
    """The snapshot's signature does not prove it came from the control plane."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the start of its fingerprint."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class TrustedKeys:
    """The public keys an edge trusts, read from a folder (re-read when it changes)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._seen: tuple[tuple[str, int], ...] = ()

    def refresh(self) -> dict[str, Ed25519PublicKey]:
        try:
            files = sorted(self.folder.glob("*.pub"))
            marker = tuple((p.name, p.stat().st_mtime_ns) for p in files)
        except OSError:
            files, marker = [], ()
        if marker != self._seen:
            keys = {}
            for path in files:
                try:
                    key = serialization.load_pem_public_key(path.read_bytes())
                except (ValueError, OSError):
                    continue  # not a key: ignored, like any stray file
                if isinstance(key, Ed25519PublicKey):
                    keys[key_id(key)] = key
            self._keys, self._seen = keys, marker
        return self._keys

    def verify(self, data: bytes, signature: str | None, signer: str | None) -> None:
        """Raise SignatureError unless `signature` is a trusted key's signature of `data`."""
        if not signature or not signer:
            raise SignatureError("the snapshot is not signed")
        key = self.refresh().get(signer)
        if key is None:
            trusted = ", ".join(sorted(self._keys)) or "none"
            raise SignatureError(f"signed by key {signer}, which this edge does not trust "
                                 f"(trusted: {trusted}; folder {self.folder})")
        try:
            key.verify(base64.b64decode(signature, validate=True), data)
        except (InvalidSignature, ValueError):
            raise SignatureError(f"bad signature (key {signer}): the snapshot was altered "
                                 "or signed with another key") from None
