"""Adaptive thresholds: learn each `mode: adaptive` condition's value per segment from the
telemetry, publish them as `models.thresholds` in a new snapshot, record why.

What is learned from: the core does not report the values its conditions saw, so the
edge logs what the host can compute cheaply from each request (`decision_log.
request_features`): the deepest scroll of a batch and the page_view time. Per session the
control plane takes the peak scroll depth and the dwell (last decision - page_view) over
all its decisions, which is what the conditions `scroll_depth >= x` / `dwell >= x` compare
at their best moment; and whether the session engaged (a click or a conversion). For a
candidate threshold t, the sessions whose peak reaches t are the ones the trigger would
fire for: objective(t) = engaged(t) - penalty * not_engaged(t). The best t (between two
observed peaks) is taken, within a bounded step of the current value, once a segment has
enough samples. Other signals are left alone (reason: not observable at the host).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from edge_module.core import load_snapshot
from edge_module.core.conditions import context_holds
from edge_module.core.globs import glob_match  # the core's page matching, not fnmatch's
from edge_module.edge_store import EdgeStore

from . import publishing
from .keys import SigningKey
from .telemetry_store import TelemetryStore

LEARNABLE = ("scroll_depth", "dwell")
BOUNDS = {"scroll_depth": (0.0, 1.0), "dwell": (0.0, 3_600_000.0)}
STEP_FLOOR = {"scroll_depth": 0.05, "dwell": 500.0}  # the smallest step allowed from ~0


@dataclass(frozen=True)
class Settings:
    penalty: float = 0.5  # a false trigger costs half an engaged session
    min_samples: int = 50  # sessions in a segment before its threshold moves
    min_engaged: int = 5
    max_step: float = 0.25  # at most 25 % of the current value per run
    since_ms: int = 0


@dataclass(frozen=True)
class Adaptive:
    trigger: str
    model_key: str
    signal: str
    op: str
    value: float
    by_segment: dict[str, float]
    pages: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    trigger: str
    model_key: str
    segment: str
    old: float | None
    new: float | None
    samples: int
    objective: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Result:
    changes: list[Change]
    thresholds: dict[str, dict[str, float]]
    published: publishing.Published | None
    source: publishing.Published | None = None  # the served revision it started from
    note: str | None = None  # why nothing ran, or that it ran over a rollback as asked

    @property
    def moved(self) -> list[Change]:
        return [c for c in self.changes if c.new is not None and c.new != c.old]


def adaptive_conditions(snapshot: dict[str, Any]) -> list[Adaptive]:
    """Every `mode: adaptive` condition of the snapshot's triggers (inside sustained too)."""
    found: list[Adaptive] = []

    def walk(trig: dict[str, Any], conds: list[dict[str, Any]]) -> None:
        for cond in conds:
            if "sustained" in cond:
                walk(trig, cond["sustained"].get("when", []))
            elif cond.get("mode") == "adaptive" and "model_key" in cond:
                found.append(Adaptive(trig["id"], cond["model_key"], cond["signal"],
                                      cond["op"], float(cond["value"]),
                                      dict(cond.get("by_segment") or {}),
                                      tuple(trig.get("pages") or ("*",))))

    for trig in snapshot.get("triggers", []):
        walk(trig, trig.get("when", []))
    return found


@dataclass
class SessionView:
    context: dict[str, Any]
    urls: set[str]
    scroll_depth: float | None = None
    page_view_ms: int | None = None
    last_ms: int = 0
    engaged: bool = False

    def signal(self, name: str) -> float | None:
        if name == "scroll_depth":
            return self.scroll_depth
        if name == "dwell" and self.page_view_ms is not None:
            return float(self.last_ms - self.page_view_ms)
        return None


def sessions(store: TelemetryStore, since_ms: int = 0) -> dict[str, SessionView]:
    """Per session: its context, pages, peak signals and whether it engaged."""
    views: dict[str, SessionView] = {}
    for session, ts, device, country, hour, url, features in store.query(
            "SELECT session, ts_ms, device, country, local_hour, url, features FROM decisions "
            "WHERE ts_ms >= ? ORDER BY ts_ms", (since_ms,)):
        view = views.get(session)
        if view is None:
            ctx = {k: v for k, v in (("device", device), ("country", country),
                                     ("local_hour", hour)) if v is not None}
            view = views[session] = SessionView(ctx, set())
        if url:
            view.urls.add(url)
        f = json.loads(features)
        depth = f.get("scroll_depth")
        if isinstance(depth, (int, float)) and (view.scroll_depth is None
                                                 or depth > view.scroll_depth):
            view.scroll_depth = float(depth)
        pv = f.get("page_view_ms")
        if isinstance(pv, int) and view.page_view_ms is None:
            view.page_view_ms = pv
        view.last_ms = max(view.last_ms, ts)
    for (session,) in store.query("SELECT DISTINCT session FROM outcomes WHERE ts_ms >= ? AND "
                                  "type IN ('click', 'conversion')", (since_ms,)):
        if session in views:
            views[session].engaged = True
    return views


def best_threshold(points: list[tuple[float, bool]], penalty: float) -> tuple[float, float]:
    """(threshold, objective) maximising engaged - penalty * not engaged among the points
    at or above it; the threshold sits halfway below the lowest peak it keeps."""
    points = sorted(points)
    engaged_above = sum(1 for _, e in points if e)
    false_above = len(points) - engaged_above
    best = (-float("inf"), points[0][0])
    i = 0
    while i < len(points):  # thresholds at each distinct peak, lowest first
        value = points[i][0]
        objective = engaged_above - penalty * false_above
        if objective > best[0]:
            below = points[i - 1][0] if i else value
            best = (objective, (value + below) / 2)
        while i < len(points) and points[i][0] == value:
            engaged_above -= points[i][1]
            false_above -= not points[i][1]
            i += 1
    return best[1], best[0]


def propose(snapshot: dict[str, Any], store: TelemetryStore,
            settings: Settings = Settings()) -> tuple[dict[str, dict[str, float]], list[Change]]:
    """New `models.thresholds` for the snapshot's adaptive conditions, and why."""
    snap = load_snapshot(json.dumps(snapshot))
    segment_order = list(snap.segments)
    current = {k: dict(v) for k, v in (snapshot.get("models", {}).get("thresholds") or {}).items()}
    views = sessions(store, settings.since_ms)
    changes: list[Change] = []
    for cond in adaptive_conditions(snapshot):
        old_map = current.get(cond.model_key, {})
        if cond.signal not in LEARNABLE or cond.op not in (">=", ">"):
            changes.append(Change(cond.trigger, cond.model_key, "*", old_map.get("*"), None, 0,
                                  None, f"{cond.signal} {cond.op}: not observable at the host, "
                                        "left as is"))
            continue
        by_segment: dict[str, list[tuple[float, bool]]] = defaultdict(list)
        for view in views.values():
            if not any(glob_match(p, u) for u in view.urls for p in cond.pages):
                continue
            value = view.signal(cond.signal)
            if value is None:
                continue
            seg = next((name for name in segment_order
                        if all(context_holds(c, view.context) for c in snap.segments[name])), "*")
            by_segment[seg].append((value, view.engaged))
        new_map = dict(old_map)
        for seg in [*segment_order, "*"]:
            points = by_segment.get(seg, [])
            old = old_map.get(seg, old_map.get("*", cond.by_segment.get(seg, cond.value)))
            engaged = sum(1 for _, e in points if e)
            if len(points) < settings.min_samples or engaged < settings.min_engaged:
                if points:
                    changes.append(Change(cond.trigger, cond.model_key, seg, old, None,
                                          len(points), None,
                                          f"too few samples ({len(points)} sessions, {engaged} "
                                          f"engaged; need {settings.min_samples} and "
                                          f"{settings.min_engaged})"))
                continue
            target, objective = best_threshold(points, settings.penalty)
            step = max(abs(old) * settings.max_step, STEP_FLOOR[cond.signal])
            new = min(max(target, old - step), old + step)
            lo, hi = BOUNDS[cond.signal]
            new = round(min(max(new, lo), hi), 4 if cond.signal == "scroll_depth" else 0)
            bounded = " (step bounded)" if new != round(target, 4) and abs(target - old) > step \
                else ""
            reason = (f"best objective {objective:.1f} (engaged - {settings.penalty} x false) "
                      f"at {target:.4g}{bounded}" if new != old else
                      f"already best (objective {objective:.1f})")
            changes.append(Change(cond.trigger, cond.model_key, seg, old, new, len(points),
                                  objective, reason))
            new_map[seg] = new
        if new_map:
            # the edge takes the first listed segment the session is in: keep the order
            current[cond.model_key] = {s: new_map[s] for s in [*segment_order, "*"]
                                       if s in new_map}
    return current, changes


def override_models(snapshot: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The publishing hook: the compiled snapshot with `override`'s sections (thresholds)
    replacing those of its `models`."""
    models = dict(snapshot.get("models") or {})
    models.update(override)
    return {**snapshot, "models": models}


def recalibrate(edge_store: EdgeStore, telemetry: TelemetryStore, signer: SigningKey | None,
                settings: Settings = Settings(), publish: bool = True,
                now_ms: int | None = None, over_rollback: bool = False) -> Result:
    """Propose thresholds for the snapshot being served from the telemetry; if any moved
    (and `publish`), publish that same snapshot (its packs, never the registry's) with
    them as the next revision, and record every decision and what it started from.

    While a rollback is current nothing runs (a re-tuned copy would undo it) unless
    `over_rollback`; nothing runs before anything is published."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    served = publishing.served(edge_store)
    if served is None:
        return Result([], {}, None, note="nothing is published yet: nothing to recalibrate")
    source, snapshot = served
    newest = publishing.newest_sequence(edge_store)
    if source.sequence is not None and newest is not None and source.sequence < newest:
        # An older entry made current again by hand, outside the control plane (edges
        # refuse it too): re-tuning it would publish old content under a new sequence.
        return Result([], {}, None, source, note=(
            f"the manifest's current entry (revision {source.revision}, sequence "
            f"{source.sequence}) is older than an entry in its history (sequence {newest}):"
            " not written by this control plane; not recalibrated, publish or roll back to "
            "repair it"))
    if source.rollback_from is not None and not over_rollback:
        return Result([], {}, None, source, note=(
            f"revision {source.revision} is a rollback (from revision {source.rollback_from}):"
            " not recalibrated, so the rollback stays; ask explicitly (--over-rollback) to "
            "re-tune the rolled-back snapshot"))
    thresholds, changes = propose(snapshot, telemetry, settings)
    result = Result(changes, thresholds, None, source)
    published = None
    if publish and result.moved and signer is not None:
        published = publishing.publish_snapshot(
            edge_store, override_models(snapshot, {"thresholds": thresholds}), source, signer,
            now_ms)
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
    return Result(changes, thresholds, published, source, note)


def _pack_hashes(snapshot: dict[str, Any]) -> dict[str, str]:
    """Pack name to source hash, as compiled into the snapshot (entries of older stores
    do not list them)."""
    return {str(p.get("pack")): str(p.get("sha256")) for p in snapshot.get("packs", [])
            if isinstance(p, dict)}
