"""The learning loop's job: re-tune the snapshot being served with what the learning
proposes (`learning.proposal`) and publish it (`models.learned`, `models.thresholds`) as the
next revision when anything moved; record every decision with its numbers
(`recalibrations`). It never runs over a rollback unless asked, and re-tunes the served
snapshot's own packs, never the registry's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from edge_module.distribution.edge_store import EdgeStore

from ..distribution import publishing
from ..distribution.keys import SigningKey
from ..telemetry.telemetry_store import TelemetryStore
from .proposal import Change, Settings, propose

DEFAULTS = Settings()


@dataclass(frozen=True)
class Result:
    changes: list[Change]
    thresholds: dict[str, dict[str, float]]
    published: publishing.Published | None
    source: publishing.Published | None = None  # the served revision it started from
    note: str | None = None  # why nothing ran, or that it ran over a rollback as asked
    learned: dict[str, dict[str, Any]] = field(default_factory=dict)
    ran: bool = True  # False: nothing was proposed (see `note` for why)

    @property
    def moved(self) -> list[Change]:
        return [c for c in self.changes if c.new is not None and c.new != c.old]

    @property
    def outcome(self) -> str:
        """published (a new revision), unchanged (ran; nothing published) or skipped."""
        if self.published is not None:
            return "published"
        return "unchanged" if self.ran else "skipped"



def override_models(snapshot: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The publishing hook: the compiled snapshot with `override`'s sections (thresholds)
    replacing those of its `models`."""
    models = dict(snapshot.get("models") or {})
    models.update(override)
    return {**snapshot, "models": models}


def recalibrate(edge_store: EdgeStore, telemetry: TelemetryStore, signer: SigningKey | None,
                settings: Settings = DEFAULTS, publish: bool = True,
                now_ms: int | None = None, over_rollback: bool = False) -> Result:
    """Propose thresholds for the snapshot being served from the telemetry; if any moved
    (and `publish`), publish that same snapshot (its packs, never the registry's) with
    them as the next revision, and record every decision and what it started from.

    While a rollback is current nothing runs (a re-tuned copy would undo it) unless
    `over_rollback`; nothing runs before anything is published."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    served = publishing.served(edge_store)
    if served is None:
        return Result([], {}, None, note="nothing is published yet: nothing to recalibrate",
                      ran=False)
    source, snapshot = served
    if source.rollback_from is not None and not over_rollback:
        return Result([], {}, None, source, note=(
            f"revision {source.revision} is a rollback (from revision {source.rollback_from}):"
            " not recalibrated, so the rollback stays; ask explicitly (--over-rollback) to "
            "re-tune the rolled-back snapshot"), ran=False)
    found, changes = propose(snapshot, telemetry, settings, now_ms)
    thresholds, learned = found["thresholds"], found["learned"]
    result = Result(changes, thresholds, None, source, learned=learned)
    published = None
    if publish and result.moved and signer is not None:
        published = publishing.publish_snapshot(
            edge_store, override_models(snapshot, {
                "thresholds": thresholds, **({"learned": learned} if learned else {})}),
            source, signer, now_ms)
    note = (f"recalibrated revision {source.revision}, a rollback from revision "
            f"{source.rollback_from}, as asked (over_rollback)"
            if source.rollback_from is not None else None)
    origin = json.dumps({"revision": source.revision, "sha256": source.sha256,
                         "packs": dict(source.pack_sha256) or _pack_hashes(snapshot),
                         "rollback_from": source.rollback_from,
                         "over_rollback": source.rollback_from is not None})
    telemetry.record_recalibrations(
        {**c.to_dict(), "ts_ms": now_ms, "revision": published.revision if published else None,
         "source": origin} for c in changes)
    return Result(changes, thresholds, published, source, note, learned)


def _pack_hashes(snapshot: dict[str, Any]) -> dict[str, str]:
    """Pack name to source hash, as compiled into the snapshot (entries of older stores
    do not list them)."""
    return {str(p.get("pack")): str(p.get("sha256")) for p in snapshot.get("packs", [])
            if isinstance(p, dict)}
