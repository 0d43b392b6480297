"""Publishing: rule packs become a numbered snapshot in the edge store.

Revisions increase strictly (publishers serialise on the store's lock). The snapshot is
loaded by the decision core before anything is written, so the edge never sees one that
would not load; its object is written before the manifest that names it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Sequence

from edge_module.core import SnapshotError, load_snapshot
from edge_module.edge_store import MANIFEST_FORMAT, LocalFolderStore, object_key, sha256_text

from .rulepack import Pack, compile_snapshot


class PublishError(Exception):
    """The compiled snapshot was refused by the decision core (a compiler bug, never input)."""


@dataclass(frozen=True)
class Published:
    revision: int
    sha256: str
    object: str
    published_ms: int
    triggers: int
    packs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "sha256": self.sha256, "object": self.object,
                "published_ms": self.published_ms, "triggers": self.triggers,
                "packs": list(self.packs)}


def publish(store: LocalFolderStore, packs: Sequence[Pack], now_ms: int | None = None) -> Published:
    """Compile `packs` into the next revision and make it current."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with store.publish_lock():
        manifest = store.read_manifest()
        revision = (int(manifest["revision"]) if manifest else 0) + 1
        snapshot = compile_snapshot(packs, str(revision), now_ms)
        text = json.dumps(snapshot, separators=(",", ":"))
        try:
            load_snapshot(text)
        except SnapshotError as exc:
            raise PublishError(f"compiled snapshot does not load: {exc.message}") from None
        sha = sha256_text(text)
        key = object_key(sha)
        store.put(key, text.encode())
        entry = Published(revision, sha, key, now_ms, len(snapshot["triggers"]),
                          tuple(p.name for p in packs))
        history = list(manifest.get("history", [])) if manifest else []
        history.append(entry.to_dict())
        store.write_manifest({"format": MANIFEST_FORMAT, **entry.to_dict(), "history": history})
    return entry


def revisions(store: LocalFolderStore) -> list[dict[str, Any]]:
    """Every published revision, newest first."""
    manifest = store.read_manifest()
    return list(reversed(manifest.get("history", []))) if manifest else []


def current(store: LocalFolderStore) -> dict[str, Any] | None:
    manifest = store.read_manifest()
    if manifest is None:
        return None
    return {k: v for k, v in manifest.items() if k not in ("history", "format")}
