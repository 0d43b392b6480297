"""Signatures: Ed25519 over the exact bytes of the snapshot object, and over the manifest
entry that makes it current.

The control plane holds the private key and signs at publish (and at rollback); edges hold
only public keys (a folder of `<key id>.pub` PEM files) and refuse a snapshot or manifest
entry that is unsigned, signed by a key they do not trust, or whose signature does not
match. The entry's signature covers `ENTRY_FIELDS` (revision, content hash, time, sequence,
rollback), so whoever can only write to the store cannot re-point edges at an old snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class SignatureError(Exception):
    """A signature does not prove the snapshot (or manifest entry) came from the control plane."""


ENTRY_STATEMENT = "edge-manifest-entry/1"
# What an entry's signature covers. `sequence` increases with every publish and rollback
# (edges refuse one not above what they serve: no replay); `rollback_from` is present only
# on a rollback (the one statement that may lower the revision an edge serves).
ENTRY_FIELDS = ("revision", "sha256", "published_ms", "sequence", "rollback_from")


def entry_statement(entry: Mapping[str, Any]) -> bytes:
    """The canonical bytes a manifest entry's signature covers (its ENTRY_FIELDS)."""
    body = {"statement": ENTRY_STATEMENT, **{k: entry.get(k) for k in ENTRY_FIELDS}}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


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

    def verify(self, data: bytes, signature: str | None, signer: str | None,
               what: str = "snapshot") -> None:
        """Raise SignatureError unless `signature` is a trusted key's signature of `data`
        (`what` names it in the message)."""
        if not signature or not signer:
            raise SignatureError(f"the {what} is not signed")
        key = self.refresh().get(signer)
        if key is None:
            trusted = ", ".join(sorted(self._keys)) or "none"
            raise SignatureError(f"the {what} is signed by key {signer}, which this edge does not trust "
                                 f"(trusted: {trusted}; folder {self.folder})")
        try:
            key.verify(base64.b64decode(signature, validate=True), data)
        except (InvalidSignature, ValueError):
            raise SignatureError(f"bad signature (key {signer}): the {what} was altered "
                                 "or signed with another key") from None
