"""The manifest as the control plane may believe it: only the entries it signed.

Edges check every manifest entry's signature before they serve it; the control plane read
the store's manifest as it found it. An independent review with write access to the store
and no key forged `manifest.json`: `GET /v1/snapshots/current` showed the forged entry, the
next publish took its numbers and copied its history, and a rollback to a forged history
entry, or the hourly recalibration of a forged current one, would have signed the forger's
snapshot with the control plane's key, which every edge trusts. A second review then put
back an older genuine manifest, history cut to match: the recalibration re-tuned the
withdrawn revision and signed it anew under a reused number, and edges served it.

So every read of the manifest goes through `VouchedStore.view`:
- An entry of the store's manifest counts only if its entry signature (over
  `signing.entry_statement`) is by a key this control plane holds (`ManifestKeys`: the
  public halves of its own private keys and the keys edges are told to trust) and its
  object is the content address of its hash. An entry signed by a key retired since counts
  only if the ledger holds it (a leaked retired key signs nothing new into the history).
- The ledger (`Ledger`, `DATA_DIR/manifest-ledger.json`) keeps every entry that counted,
  and every entry this control plane wrote, as it was then. Its entries count whatever the
  store holds now, so cutting or replaying the store's history changes nothing here: the
  newest entry by sequence is the current one, numbers continue above every entry ever
  seen, and the ledger's copy of an entry wins over the store's (the labels the signature
  does not cover, `packs`, `triggers`, `recalibrated_from`, stay as written). An entry
  known only from the store whose labels are malformed is relabelled from its object.
- The rest is set aside: never current, numbered from, copied or signed; the reasons go to
  the API (`untrusted`), the fleet view, `status`, the console and the log. The next
  publish or rollback writes a manifest of the entries that count, which repairs the store.
A manifest that does not parse, or holds more than MAX_HISTORY entries, is set aside whole.

Still open: a control plane that starts with an empty ledger (a new DATA_DIR) believes the
store's newest genuine entry, a replayed one included; keep DATA_DIR on persistent disk.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edge_module.distribution.atomic_file import write_atomic
from edge_module.distribution.edge_store import (
    READABLE_FORMATS,
    EdgeStore,
    NoManifest,
    StoreError,
    object_key,
    sha256_text,
)
from edge_module.distribution.signing import (
    ENTRY_FIELDS,
    TrustedKeys,
    entry_statement,
    key_id,
)

from .keys import RETIRED

log = logging.getLogger("control_plane.manifest_trust")

MAX_HISTORY = 100_000  # entries of a manifest read at all (eleven years of hourly runs)
MAX_REASONS = 20  # reasons listed; the rest are counted
MAX_VERIFIED = 200_000  # signature checks remembered (good and bad)
LEDGER_FILE = "manifest-ledger.json"

Keys = dict[str, tuple[Ed25519PublicKey, bool]]  # key id: (key, retired)
Ident = tuple[int, str]  # (sequence, entry signature): one entry, wherever it is copied


class ManifestKeys:
    """The public keys a manifest entry may be signed by: the trusted-keys folders given,
    the public half of every private key in `own`, and the retired keys in `retired`
    (each folder re-read when it changes)."""

    def __init__(self, *trusted: str | Path, own: str | Path | None = None,
                 retired: str | Path | None = None) -> None:
        self._folders = [TrustedKeys(folder) for folder in trusted]
        self._retired = TrustedKeys(retired) if retired is not None else None
        self._own = Path(own) if own is not None else None
        self._own_keys: dict[str, Ed25519PublicKey] = {}
        self._own_seen: tuple[tuple[str, int], ...] = ()
        # Signature checks already made (a manifest gains an entry an hour, and every read
        # checks them all), with the keys they were made with.
        self._checked: dict[tuple[str, str, str], bool] = {}
        self._checked_with: Keys = {}

    @classmethod
    def of_ring(cls, keys_dir: str | Path, trusted_dir: str | Path) -> ManifestKeys:
        """A key ring's: its own keys, what edges trust, and its retired keys."""
        return cls(trusted_dir, own=keys_dir, retired=Path(keys_dir) / RETIRED)

    def keys(self) -> Keys:
        found: Keys = {}
        if self._retired is not None:
            found.update((kid, (k, True)) for kid, k in self._retired.refresh().items())
        for folder in self._folders:
            found.update((kid, (k, False)) for kid, k in folder.refresh().items())
        found.update((kid, (k, False)) for kid, k in self._own_public().items())
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

    def refusal(self, entry: Any, keys: Keys | None = None, ledgered: bool = True
                ) -> str | None:
        """Why `entry` does not count (None: it does); `ledgered`: the ledger holds it (an
        entry signed by a retired key counts only then). `keys`: `self.keys()`, read once
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
        found = keys.get(signer)
        if found is None:
            return f"signed by key {signer[:64]!r}, which this control plane does not hold"
        key, retired = found
        if not self._verifies(key, signer, signature, entry, keys):
            return (f"bad entry signature (key {signer!r}): altered or signed with another "
                    "key")
        if retired and not ledgered:
            return (f"signed by key {signer!r}, retired since, and not an entry this "
                    "control plane recorded")
        return None

    def _verifies(self, key: Ed25519PublicKey, signer: str, signature: str,
                  entry: dict[str, Any], keys: Keys) -> bool:
        if keys != self._checked_with or len(self._checked) >= MAX_VERIFIED:
            self._checked, self._checked_with = {}, dict(keys)
        seen = (signer, signature[:200], repr([entry.get(k) for k in ENTRY_FIELDS]))
        if seen not in self._checked:
            try:
                key.verify(base64.b64decode(signature, validate=True), entry_statement(entry))
                self._checked[seen] = True
            except (InvalidSignature, ValueError):
                self._checked[seen] = False
        return self._checked[seen]


def ident(entry: dict[str, Any]) -> Ident | None:
    sequence, signature = entry.get("sequence"), entry.get("entry_signature")
    if type(sequence) is not int or not isinstance(signature, str):
        return None
    return sequence, signature


class Ledger:
    """The manifest entries this control plane wrote or saw count, as they were then: a
    JSON list in `path` (written whole, `write_atomic`; re-read when it changes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._entries: dict[Ident, dict[str, Any]] = {}
        self.version = 0  # changes whenever the entries are read anew

    def entries(self) -> dict[Ident, dict[str, Any]]:
        with self._lock:
            return self._read()

    def _read(self) -> dict[Ident, dict[str, Any]]:
        try:
            st = self.path.stat()
            marker: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            marker = None
        if marker != self._seen:
            entries: dict[Ident, dict[str, Any]] = {}
            if marker is not None:
                try:
                    doc = json.loads(self.path.read_bytes())
                except (OSError, ValueError, RecursionError) as exc:
                    log.error("%s: not readable (%s); entries are read from the store "
                              "alone until the next publish rewrites it", self.path, exc)
                    doc = []
                for entry in doc if isinstance(doc, list) else []:
                    key = ident(entry) if isinstance(entry, dict) else None
                    if key is not None:
                        entries[key] = entry
            self._entries, self._seen = entries, marker
            self.version += 1
        return self._entries

    def remember(self, entries: list[dict[str, Any]]) -> None:
        """Add the entries it does not hold yet."""
        with self._lock:
            held = self._read()
            new = {k: e for e in entries if (k := ident(e)) is not None and k not in held}
            if not new:
                return
            merged = sorted({**held, **new}.values(), key=lambda e: e["sequence"])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(merged, separators=(",", ":")).encode())
            os.chmod(self.path, 0o600)
            self._seen = None  # re-read: the file is what counts


class VouchedStore:
    """An `EdgeStore` whose manifest the control plane reads through `view`; every other
    attribute is the store's."""

    def __init__(self, store: EdgeStore, keys: ManifestKeys, ledger: Ledger | None = None
                 ) -> None:
        self.store = store
        self.manifest_keys = keys
        self.ledger = ledger
        self._memo: tuple[Any, tuple[dict[str, Any] | None, list[str]]] | None = None
        self._memo_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def view(self, reader: EdgeStore, fresh: bool = False
             ) -> tuple[dict[str, Any] | None, str | None, list[str]]:
        """The manifest as far as this control plane believes it (None: nothing counts),
        the store's ETag (for a compare-and-swap over it), and why entries were set aside.
        `reader`: the store itself or the control plane's shared reads of it."""
        try:
            got = reader.get_manifest(None)
        except NoManifest:
            got = None
        data, etag = got if got is not None else (None, None)
        ledger = self.ledger.entries() if self.ledger is not None else None
        keys = self.manifest_keys.keys()
        memo_key = (etag, self.ledger.version if self.ledger is not None else 0,
                    tuple(sorted((k, r) for k, (_, r) in keys.items())))
        with self._memo_lock:
            if self._memo is not None and self._memo[0] == memo_key:
                view, refused = self._memo[1]
                return view, etag, refused
        doc, problem = _parse(data)
        view, refused = vouched(doc, self.manifest_keys, keys, ledger,
                                lambda e: _object_snapshot(self.store, e))
        if problem is not None:
            refused.insert(0, problem)
        if refused:
            log.warning("manifest.json: %d entr%s set aside (not signed by this control "
                        "plane's keys, or replayed): %s", len(refused),
                        "y" if len(refused) == 1 else "ies", "; ".join(refused[:5]))
        if self.ledger is not None and view is not None:
            self.ledger.remember(view["history"])
        refused = _bounded(refused)
        with self._memo_lock:
            self._memo = (memo_key, (view, refused))
        return view, etag, refused

    def remember(self, entry: dict[str, Any]) -> None:
        """An entry this control plane just wrote."""
        if self.ledger is not None:
            self.ledger.remember([entry])


def vouch_of(store: Any) -> VouchedStore:
    """The `VouchedStore` `store` is or wraps (the control plane's shared reads, a test's
    faulty store: each keeps the store it wraps as `.store`)."""
    for _ in range(8):
        if isinstance(store, VouchedStore):
            return store
        store = vars(store).get("store") if hasattr(store, "__dict__") else None
    raise TypeError("the control plane reads the edge store through VouchedStore "
                    "(manifest_trust): this store is not one")


def _parse(data: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest document (None: none, or unusable) and why it is unusable."""
    if data is None:
        return None, None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        return None, f"manifest.json is not readable JSON ({str(exc)[:120]}): set aside whole"
    if not isinstance(doc, dict) or doc.get("format") not in READABLE_FORMATS:
        return None, "manifest.json is not an edge manifest: set aside whole"
    history = doc.get("history", [])
    if not isinstance(history, list):
        return {**doc, "history": []}, "manifest.json: its history is not a list"
    if len(history) > MAX_HISTORY:
        return None, (f"manifest.json holds {len(history)} entries, more than "
                      f"{MAX_HISTORY}: set aside whole")
    return doc, None


def _object_snapshot(store: EdgeStore, entry: dict[str, Any]) -> dict[str, Any]:
    text = store.get_object(entry["object"]).decode("utf-8", errors="replace")
    if sha256_text(text) != entry["sha256"]:
        raise StoreError(f"{entry['object']}: content does not match its hash")
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise StoreError(f"{entry['object']}: not a snapshot")
    return doc


def vouched(doc: dict[str, Any] | None, keys: ManifestKeys, known: Keys,
            ledger: dict[Ident, dict[str, Any]] | None,
            snapshot_of: Callable[[dict[str, Any]], dict[str, Any]] | None = None
            ) -> tuple[dict[str, Any] | None, list[str]]:
    """The manifest `doc` (None: none) with only the entries that count, the ledger's
    included, the newest of them current (None: none counts), and why each other entry
    does not or why the store's current entry is not the current one."""
    doc = doc or {}
    history = doc.get("history")
    top = {k: v for k, v in doc.items() if k not in ("history", "format")} if doc else None
    refused: list[str] = []
    kept: dict[Ident, dict[str, Any]] = {}

    def counted(entry: Any, where: str) -> str | None:
        key = ident(entry) if isinstance(entry, dict) else None
        held = ledger.get(key) if ledger is not None and key is not None else None
        reason = keys.refusal(entry, known, ledgered=ledger is None or held is not None)
        chosen = held if held is not None else entry
        if reason is None and _label_problem(chosen) is not None:
            chosen, reason = _relabelled(chosen, snapshot_of)
        if reason is not None:
            refused.append(f"{where} revision {_shown(entry, 'revision')} (sequence "
                           f"{_shown(entry, 'sequence')}): {reason}")
        elif key is not None and key not in kept:
            kept[key] = chosen
        return reason

    for entry in history if isinstance(history, list) else []:
        counted(entry, "history")
    top_reason = counted(top, "current") if top is not None else None
    for key, entry in (ledger or {}).items():
        if key not in kept and keys.refusal(entry, known, ledgered=True) is None \
                and _label_problem(entry) is None:
            kept[key] = entry  # cut from the store's history, or never there
    if not kept:
        return None, refused
    history_kept = sorted(kept.values(), key=lambda e: e["sequence"])
    newest = history_kept[-1]
    if top is not None and top_reason is None and ident(top) != ident(newest):
        refused.insert(0, f"current revision {_shown(top, 'revision')} (sequence "
                          f"{_shown(top, 'sequence')}): older than revision "
                          f"{newest['revision']} (sequence {newest['sequence']}), which "
                          "this control plane signed: a replayed or cut manifest")
    return {"format": doc.get("format"), **newest, "history": history_kept}, refused


def _shown(entry: Any, name: str) -> str:
    value = entry.get(name) if isinstance(entry, dict) else None
    return repr(value)[:40]


def _label_problem(entry: dict[str, Any]) -> str | None:
    """Why the fields the signature does not cover cannot be read (None: they can)."""
    if type(entry.get("triggers")) is not int or entry["triggers"] < 0:
        return "triggers"
    packs = entry.get("packs")
    if not isinstance(packs, list) or not all(isinstance(p, str) for p in packs):
        return "packs"
    hashes = entry.get("pack_sha256")
    if hashes is not None and not (isinstance(hashes, dict) and all(
            isinstance(v, str) for v in hashes.values())):
        return "pack_sha256"
    for name in ("recalibrated_from", "rollback_from"):
        if entry.get(name) is not None and type(entry[name]) is not int:
            return name
    for name in ("signature", "key_id", "entry_key_id"):
        if entry.get(name) is not None and not isinstance(entry[name], str):
            return name
    if type(entry.get("published_ms")) is not int:
        return "published_ms"
    return None


def _relabelled(entry: dict[str, Any],
                snapshot_of: Callable[[dict[str, Any]], dict[str, Any]] | None
                ) -> tuple[dict[str, Any], str | None]:
    """`entry` with `triggers`, `packs` and `pack_sha256` read from its object (whose hash
    is signed) and the labels nothing can restore dropped; or why that failed."""
    problem = _label_problem(entry)
    if snapshot_of is None or problem == "published_ms":
        return entry, f"its {problem} is malformed"
    try:
        snapshot = snapshot_of(entry)
    except (StoreError, ValueError, RecursionError) as exc:
        return entry, f"its {problem} is malformed and its object unreadable ({exc})"
    packs = [p for p in snapshot.get("packs", []) if isinstance(p, dict)]
    triggers = snapshot.get("triggers")
    fixed = {**entry, "triggers": len(triggers) if isinstance(triggers, list) else 0,
             "packs": [str(p.get("pack")) for p in packs],
             "pack_sha256": {str(p.get("pack")): str(p.get("sha256")) for p in packs}}
    if fixed.get("recalibrated_from") is not None and \
            type(fixed["recalibrated_from"]) is not int:
        del fixed["recalibrated_from"]  # nothing says what it was
    if not isinstance(fixed.get("signature"), str) or not isinstance(fixed.get("key_id"), str):
        fixed.pop("signature", None)  # the object's signature: signed anew when re-served
        fixed.pop("key_id", None)
    remaining = _label_problem(fixed)
    return (fixed, None) if remaining is None else (entry, f"its {remaining} is malformed")


def _bounded(reasons: list[str]) -> list[str]:
    if len(reasons) <= MAX_REASONS:
        return reasons
    return [*reasons[:MAX_REASONS], f"and {len(reasons) - MAX_REASONS} more"]
