"""Publishing: rule packs become a numbered snapshot in the edge store.

Revisions increase strictly: the manifest is replaced by compare-and-swap on its ETag, so
of two concurrent publishers one retries with the next number. The snapshot is loaded by
the decision core before anything is written, so the edge never sees one that would not
load; it is signed with the control plane's key, and its object is written before the
manifest that names it. Works the same on every edge store backend (folder, S3).

Every manifest entry (publish, recalibration, rollback) is signed too: its revision,
content hash, time, `sequence` and rollback statement (`signing.ENTRY_FIELDS`). The
sequence increases with every entry (it is at least the publish time in ms, so a store
started afresh continues above an old one), and edges refuse an entry whose sequence is not
above the one they serve: copying an old entry into the manifest re-points nobody.

A rollback re-points the manifest at an earlier revision's snapshot object, which keeps
its revision label (the edge then reports serving that old number), in a new signed entry
marked `rollback_from`. The next publish still takes a number above every revision ever
published, so a number always means one snapshot. Each entry records the packs (name and
source hash) its snapshot was compiled from; the snapshot object itself carries them too,
so the recalibration job republishes exactly what is served (`publish_snapshot`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_module.core import SnapshotError, load_snapshot
from edge_module.distribution.edge_store import (
    MANIFEST_FORMAT,
    EdgeStore,
    ManifestConflict,
    StoreError,
    object_key,
    sha256_text,
)
from edge_module.distribution.signing import entry_statement

from ..rulepack import ContentCatalog, Pack, compile_snapshot
from .keys import SigningKey
from .manifest_cache import uncached
from .manifest_trust import vouch_of

MAX_ATTEMPTS = 20  # compare-and-swap retries against concurrent publishers


class PublishError(Exception):
    """The compiled snapshot was refused by the decision core (a compiler bug, never input)."""


class RevisionError(Exception):
    """A revision that cannot be used: `code` is stable ("unknown_revision", "not_published",
    "unloadable_revision", "superseded"), `message` says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Published:
    revision: int
    sha256: str
    object: str
    published_ms: int
    triggers: int
    packs: tuple[str, ...]
    rollback_from: int | None = None  # the revision that was current before a rollback
    signature: str | None = None  # Ed25519 over the object's bytes, base64
    key_id: str | None = None
    sequence: int | None = None  # strictly increasing over the manifest's entries
    pack_sha256: tuple[tuple[str, str], ...] = ()  # (pack, source hash) compiled from
    recalibrated_from: int | None = None  # the revision whose snapshot was re-tuned
    entry_signature: str | None = None  # Ed25519 over signing.entry_statement(entry)
    entry_key_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"revision": self.revision, "sha256": self.sha256,
                               "object": self.object, "published_ms": self.published_ms,
                               "triggers": self.triggers, "packs": list(self.packs)}
        optional = {"rollback_from": self.rollback_from, "sequence": self.sequence,
                    "pack_sha256": dict(self.pack_sha256) or None,
                    "recalibrated_from": self.recalibrated_from}
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.signature is not None:
            out["signature"] = self.signature
            out["key_id"] = self.key_id
        if self.entry_signature is not None:
            out["entry_signature"] = self.entry_signature
            out["entry_key_id"] = self.entry_key_id
        return out

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> Published:
        def number(name: str) -> int | None:
            value = entry.get(name)
            return None if value is None else int(value)

        hashes = entry.get("pack_sha256")
        return cls(int(entry["revision"]), str(entry["sha256"]), str(entry["object"]),
                   int(entry["published_ms"]), int(entry["triggers"]),
                   tuple(entry.get("packs", ())), number("rollback_from"),
                   entry.get("signature"), entry.get("key_id"), number("sequence"),
                   tuple(sorted(hashes.items())) if isinstance(hashes, dict) else (),
                   number("recalibrated_from"), entry.get("entry_signature"),
                   entry.get("entry_key_id"))


def publish(store: EdgeStore, packs: Sequence[Pack], signer: SigningKey,
            now_ms: int | None = None, catalog: ContentCatalog | None = None) -> Published:
    """Compile `packs` (with the content variants of `catalog`) into the next revision,
    sign it and make it current."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return _publish(store, lambda revision: compile_snapshot(packs, str(revision), now_ms,
                                                             catalog), signer, now_ms)


def publish_snapshot(store: EdgeStore, snapshot: dict[str, Any], based_on: Published,
                     signer: SigningKey, now_ms: int | None = None) -> Published:
    """Publish `snapshot` (the compiled snapshot of `based_on`, changed: recalibrated
    models) as the next revision; its packs are `based_on`'s, whatever the registry holds.

    `RevisionError("superseded")` if `based_on` stopped being current meanwhile (a publish
    or rollback since it was read is never overwritten by a re-tuned older snapshot)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms

    def build(revision: int) -> dict[str, Any]:
        return {**snapshot, "revision": str(revision), "created_ms": now_ms}

    return _publish(store, build, signer, now_ms, based_on)


def _publish(store: EdgeStore, build: Callable[[int], dict[str, Any]], signer: SigningKey,
             now_ms: int, based_on: Published | None = None) -> Published:
    """The compare-and-swap loop: `build(revision)` is the snapshot to publish as `revision`."""
    for _ in range(MAX_ATTEMPTS):
        manifest, etag = _read(store, fresh=True)
        if based_on is not None:
            _still_current(manifest, based_on)
        revision = _highest_revision(manifest) + 1
        snapshot = build(revision)
        text = json.dumps(snapshot, separators=(",", ":"))
        try:
            load_snapshot(text)
        except SnapshotError as exc:
            raise PublishError(f"compiled snapshot does not load: {exc.message}") from None
        data = text.encode()
        sha = sha256_text(text)
        key = object_key(sha)
        store.put_object(key, data)
        packs = [p for p in snapshot.get("packs", []) if isinstance(p, dict)]
        entry = Published(revision, sha, key, now_ms, len(snapshot["triggers"]),
                          tuple(str(p.get("pack")) for p in packs), signature=signer.sign(data),
                          key_id=signer.id, sequence=_next_sequence(manifest, now_ms),
                          pack_sha256=tuple(sorted((str(p.get("pack")), str(p.get("sha256")))
                                                   for p in packs)),
                          recalibrated_from=None if based_on is None else based_on.revision)
        doc = _signed(entry.to_dict(), signer)
        if not _written(store, manifest, etag, doc):
            continue  # another publisher took this number: compile the next one
        vouch_of(store).remember(doc)
        return Published.from_dict(doc)
    raise PublishError("the manifest kept changing under concurrent publishers; try again")


@dataclass(frozen=True)
class Rollback:
    entry: Published  # what is current now
    changed: bool  # False: the revision was already current


def rollback(store: EdgeStore, revision: int, signer: SigningKey,
             now_ms: int | None = None) -> Rollback:
    """Make an earlier revision's snapshot current again; a no-op if it already is.

    `RevisionError` if nothing is published, the revision never was, or its snapshot no
    longer loads (its object is checked against its hash and by the decision core first).
    The snapshot (the same object, byte for byte) and the new entry, a rollback statement
    edges accept below the revision they serve, are both signed by `signer`: the key that
    signed the revision then may have been retired since, as operations.md says to do once
    edges moved on, and every edge refused a rollback that kept its signature.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    for _ in range(MAX_ATTEMPTS):
        manifest, etag = _read(store, fresh=True)
        if manifest is None:
            raise RevisionError("not_published", "nothing has been published yet, so there "
                                                 "is nothing to roll back to")
        recorded = _entry(manifest, revision)
        target = Published.from_dict(recorded)
        current = int(manifest["revision"])
        if current == revision and manifest.get("object") == target.object:
            return Rollback(Published.from_dict(manifest), changed=False)
        text = _object_text(store, target)
        try:
            load_snapshot(text)
        except SnapshotError as exc:
            raise RevisionError("unloadable_revision",
                                f"revision {revision}'s snapshot no longer loads in this "
                                f"decision core: {exc.message}") from None
        # Everything recorded with the revision comes back with it, marked as a rollback,
        # in a newly signed entry, over the object signed anew by the active key.
        doc = _signed({**recorded, "published_ms": now_ms, "rollback_from": current,
                       "sequence": _next_sequence(manifest, now_ms),
                       "signature": signer.sign(text.encode()), "key_id": signer.id}, signer)
        if not _written(store, manifest, etag, doc):
            continue
        vouch_of(store).remember(doc)
        return Rollback(Published.from_dict(doc), changed=True)
    raise PublishError("the manifest kept changing under concurrent publishers; try again")


def current_entry(store: EdgeStore, fresh: bool = False) -> Published | None:
    """The manifest's current entry (None: nothing published yet)."""
    manifest, _ = _read(store, fresh)
    return None if manifest is None else Published.from_dict(manifest)


def served(store: EdgeStore) -> tuple[Published, dict[str, Any]] | None:
    """The current entry and its compiled snapshot, read together (None: nothing yet)."""
    manifest, _ = _read(store)
    if manifest is None:
        return None
    entry = Published.from_dict(manifest)
    return entry, json.loads(_object_text(store, entry))


def published_snapshot(store: EdgeStore, revision: int | None = None) -> dict[str, Any]:
    """The compiled snapshot of a published revision (None: the current one)."""
    manifest, _ = _read(store)
    if manifest is None:
        raise RevisionError("not_published", "nothing has been published yet")
    entry = Published.from_dict(manifest if revision is None else _entry(manifest, revision))
    doc: dict[str, Any] = json.loads(_object_text(store, entry))
    return doc


def _signed(entry: dict[str, Any], signer: SigningKey) -> dict[str, Any]:
    """`entry` with its signature (over `signing.entry_statement`), by `signer`."""
    return {**entry, "entry_signature": signer.sign(entry_statement(entry)),
            "entry_key_id": signer.id}


def _next_sequence(manifest: dict[str, Any] | None, now_ms: int) -> int:
    """Above every entry's sequence; the time in ms when that is higher, so a store
    started afresh continues above the sequence edges remember from an old one."""
    entries = [manifest, *manifest.get("history", [])] if manifest else []
    highest = max((int(e.get("sequence") or 0) for e in entries), default=0)
    return max(highest + 1, now_ms)


def _still_current(manifest: dict[str, Any] | None, based_on: Published) -> None:
    now = None if manifest is None else Published.from_dict(manifest)
    if now is None or (now.revision, now.sha256, now.sequence) != \
            (based_on.revision, based_on.sha256, based_on.sequence):
        raise RevisionError("superseded", f"revision {based_on.revision} is no longer the "
                                          "current one (published or rolled back meanwhile); "
                                          "run again against what is current")


def _highest_revision(manifest: dict[str, Any] | None) -> int:
    if manifest is None:
        return 0
    numbers = [int(h["revision"]) for h in manifest.get("history", [])]
    return max([int(manifest["revision"]), *numbers])


def _entry(manifest: dict[str, Any], revision: int) -> dict[str, Any]:
    """The history entry of `revision` as first published (a rollback entry names it too)."""
    history = manifest.get("history", [])
    for entry in history:
        if int(entry["revision"]) == revision and "rollback_from" not in entry:
            return dict(entry)
    known = sorted({int(h["revision"]) for h in history})
    listed = ", ".join(map(str, known)) if len(known) <= 10 else f"1 to {known[-1]}"
    raise RevisionError("unknown_revision", f"revision {revision} was never published "
                                            f"(published: {listed or 'none'})")


def _read(store: EdgeStore, fresh: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest as far as this control plane signed it (`manifest_trust.vouched`) and
    the store's ETag; `fresh` for a read a write is decided on (the control plane's store
    shares reads for a second: `manifest_cache`)."""
    manifest, etag, _ = _read_counted(store, fresh)
    return manifest, etag


def _read_counted(store: EdgeStore, fresh: bool = False
                  ) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """`_read`, and why each entry set aside does not count."""
    return vouch_of(store).view(uncached(store) if fresh else store)


def _object_text(store: EdgeStore, entry: Published) -> str:
    text = store.get_object(entry.object).decode("utf-8", errors="replace")
    if sha256_text(text) != entry.sha256:
        raise StoreError(f"{entry.object}: content does not match revision {entry.revision}'s "
                         "hash (corrupt or tampered object)")
    return text


def _point_at(store: EdgeStore, manifest: dict[str, Any] | None, etag: str | None,
              entry: dict[str, Any]) -> None:
    """Make `entry` current and add it to the history, if nobody changed the manifest
    since it was read (ManifestConflict otherwise); the manifest is written last."""
    history = list(manifest.get("history", [])) if manifest else []
    history.append(entry)
    doc = {"format": MANIFEST_FORMAT, **entry, "history": history}
    store.put_manifest(json.dumps(doc, indent=1, sort_keys=True).encode(), etag)


def _written(store: EdgeStore, manifest: dict[str, Any] | None, etag: str | None,
             entry: dict[str, Any]) -> bool:
    """`_point_at`, telling whether `entry` landed (False: another writer's did instead).
    A write whose answer is lost (a timeout, a conflict on the retry of a write that did
    land) is judged by the store's history, where it stays even once a newer publish
    follows: a third review saw one publish make two revisions, and a rollback that took
    effect answer 'nothing was changed'."""
    try:
        _point_at(store, manifest, etag, entry)
        return True
    except ManifestConflict:
        return _landed(store, entry)
    except StoreError:
        if _landed(store, entry):
            return True
        raise


def _landed(store: EdgeStore, entry: dict[str, Any]) -> bool:
    now, _ = _read(store, fresh=True)
    if now is None:
        return False
    return any(e.get("sequence") == entry["sequence"]
               and e.get("entry_signature") == entry["entry_signature"]
               for e in (now, *now.get("history", [])))


def revisions(store: EdgeStore) -> list[dict[str, Any]]:
    """Every published revision, newest first."""
    manifest, _ = _read(store)
    return list(reversed(manifest.get("history", []))) if manifest else []


def manifest_view(store: EdgeStore) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The manifest as this control plane believes it (history included; None: nothing
    it signed is published), the store's ETag, and why entries were set aside."""
    return _read_counted(store)


def set_aside(store: EdgeStore) -> list[str]:
    """Why entries of the store's manifest were set aside (`manifest_trust`), if any were."""
    return _read_counted(store)[2]


def current(store: EdgeStore) -> dict[str, Any] | None:
    """The current entry; with `untrusted`, the reasons entries of the store's manifest
    were set aside, if any were (None: nothing this control plane signed is published)."""
    manifest, _, refused = _read_counted(store)
    if manifest is None:
        return None
    entry = {k: v for k, v in manifest.items() if k not in ("history", "format")}
    return {**entry, "untrusted": refused} if refused else entry
