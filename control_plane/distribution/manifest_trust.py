"""The manifest as the control plane may believe it: only the entries it signed.

Edges check every manifest entry's signature before they serve it; the control plane read
the store's manifest as it found it. An independent review with write access to the store
and no key forged `manifest.json`: `GET /v1/snapshots/current` showed the forged entry, the
next publish took its numbers and copied its history, and a rollback to a forged history
entry, or the hourly recalibration of a forged current one, would have signed the forger's
snapshot with the control plane's key, which every edge trusts.

So every read of the manifest goes through `vouched`: an entry counts only if its entry
signature (over `signing.entry_statement`) is by a key this control plane holds or held
(`ManifestKeys`: the public halves of its own private keys, the keys edges are told to
trust, and the retired keys it keeps for the history), and its object is the content
address of its hash. The rest is set aside, counted and logged, never served, numbered
from, copied or signed: the newest entry that counts (by sequence) is the current one, and
the next publish or rollback writes a manifest of only the entries that count, which
repairs the store. Fields the entry signature does not cover (`packs`, `triggers`, the
object's signature) are labels: what is signed anew always comes from an object read back
and checked against the signed hash.

Not detected: a replayed older manifest whose entries are all genuine. Edges refuse its
entry (its sequence is below what they serve), and the next publish continues above the
time-based sequence; revision numbers published after it may repeat earlier ones.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edge_module.distribution.edge_store import EdgeStore, object_key
from edge_module.distribution.signing import (
    ENTRY_FIELDS,
    TrustedKeys,
    entry_statement,
    key_id,
)

from .keys import RETIRED

log = logging.getLogger("control_plane.manifest_trust")

MAX_VERIFIED = 100_000  # verified entry signatures remembered (about 30 MB at most)


class ManifestKeys:
    """The public keys an entry of the manifest may be signed by: the trusted-keys folders
    given, and the public half of every private key in `own` (re-read when they change)."""

    def __init__(self, *trusted: str | Path, own: str | Path | None = None) -> None:
        self._folders = [TrustedKeys(folder) for folder in trusted]
        self._own = Path(own) if own is not None else None
        self._own_keys: dict[str, Ed25519PublicKey] = {}
        self._own_seen: tuple[tuple[str, int], ...] = ()
        # Signatures already verified, with the keys they were verified with: a manifest
        # gains an entry an hour, and every read checks them all (bounded: MAX_VERIFIED).
        self._verified: set[tuple[str, str, str]] = set()
        self._verified_with: dict[str, Ed25519PublicKey] = {}

    @classmethod
    def of_ring(cls, keys_dir: str | Path, trusted_dir: str | Path) -> ManifestKeys:
        """A key ring's: its own keys, what edges trust, and its retired keys."""
        return cls(trusted_dir, Path(keys_dir) / RETIRED, own=keys_dir)

    def keys(self) -> dict[str, Ed25519PublicKey]:
        found: dict[str, Ed25519PublicKey] = {}
        for folder in self._folders:
            found.update(folder.refresh())
        found.update(self._own_public())
        return found

    def _own_public(self) -> dict[str, Ed25519PublicKey]:
        if self._own is None:
            return {}
        try:
            files = sorted(self._own.glob("*.key"))
            marker = tuple((p.name, p.stat().st_mtime_ns) for p in files)
        except OSError:
            files, marker = [], ()
        if marker != self._own_seen:
            keys = {}
            for path in files:
                try:
                    private = serialization.load_pem_private_key(path.read_bytes(), None)
                except (ValueError, TypeError, OSError):
                    continue  # damaged or foreign: KeyRing.active says so where it matters
                if isinstance(private, Ed25519PrivateKey):
                    keys[key_id(private.public_key())] = private.public_key()
            self._own_keys, self._own_seen = keys, marker
        return self._own_keys

    def refusal(self, entry: Any, keys: dict[str, Ed25519PublicKey] | None = None
                ) -> str | None:
        """Why `entry` does not count (None: it does); `keys`: `self.keys()`, read once
        for many entries."""
        if not isinstance(entry, dict):
            return "not an object"
        sha = entry.get("sha256")
        if not isinstance(sha, str) or entry.get("object") != object_key(sha):
            return "its object is not the content address of its sha256"
        if type(entry.get("revision")) is not int or type(entry.get("sequence")) is not int:
            return "no integer revision and sequence"
        signature, signer = entry.get("entry_signature"), entry.get("entry_key_id")
        if not isinstance(signature, str) or not isinstance(signer, str):
            return "the entry is not signed"
        keys = self.keys() if keys is None else keys
        key = keys.get(signer)
        if key is None:
            return f"signed by key {signer}, which this control plane never held"
        if keys != self._verified_with or len(self._verified) >= MAX_VERIFIED:
            self._verified, self._verified_with = set(), dict(keys)
        seen = (signer, signature, repr([entry.get(k) for k in ENTRY_FIELDS]))
        if seen in self._verified:
            return None
        try:
            key.verify(base64.b64decode(signature, validate=True), entry_statement(entry))
        except (InvalidSignature, ValueError):
            return f"bad entry signature (key {signer}): altered or signed with another key"
        self._verified.add(seen)
        return None


class VouchedStore:
    """An `EdgeStore` that carries the keys its manifest is checked with (`manifest_keys`);
    every other attribute is the store's."""

    def __init__(self, store: EdgeStore, keys: ManifestKeys) -> None:
        self.store = store
        self.manifest_keys = keys

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def keys_of(store: Any) -> ManifestKeys:
    keys = getattr(store, "manifest_keys", None)
    if not isinstance(keys, ManifestKeys):
        raise TypeError("the control plane reads the edge store through VouchedStore "
                        "(manifest_trust): this store carries no manifest keys")
    return keys


def vouched(doc: dict[str, Any], keys: ManifestKeys,
            where: str = "manifest.json") -> tuple[dict[str, Any] | None, list[str]]:
    """The manifest `doc` with only the entries that count and the newest of them current
    (None: none counts), and why each other entry does not, or why the store's current
    entry is not the current one ("current revision N (sequence S): reason")."""
    history = doc.get("history")
    entries = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    top = {k: v for k, v in doc.items() if k not in ("history", "format")}
    refused: list[str] = []
    kept: list[dict[str, Any]] = []
    known = keys.keys()
    for entry in entries:
        reason = keys.refusal(entry, known)
        if reason is None:
            kept.append(entry)
        else:
            refused.append(f"history revision {entry.get('revision')!r} (sequence "
                           f"{entry.get('sequence')!r}): {reason}")
    reason = keys.refusal(top, known)
    if reason is not None:
        refused.insert(0, f"current revision {top.get('revision')!r} (sequence "
                          f"{top.get('sequence')!r}): {reason}")
    elif not any(_same(top, e) for e in kept):
        kept.append(top)  # a manifest written before entries went into the history
    newest = max(kept, key=lambda e: int(e["sequence"])) if kept else None
    if newest is not None and reason is None and not _same(top, newest):
        refused.insert(0, f"current revision {top.get('revision')!r} (sequence "
                          f"{top.get('sequence')!r}): older than revision "
                          f"{newest.get('revision')!r} (sequence {newest.get('sequence')!r}) "
                          "in the history, a replayed entry")
    if refused:
        log.warning("%s: %d entr%s set aside (not signed by this control plane's keys, or "
                    "replayed): %s", where, len(refused), "y" if len(refused) == 1 else "ies",
                    "; ".join(refused[:5]))
    if newest is None:
        return None, refused
    return {"format": doc.get("format"), **newest, "history": kept}, refused


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("sequence") == b.get("sequence") and \
        a.get("entry_signature") == b.get("entry_signature")
