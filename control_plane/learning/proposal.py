"""What the learning proposes for a snapshot: per `mode: adaptive` trigger, an intent model
and the thresholds that reach the trigger's recall target with the fewest firings, per
segment, checked on held-out sessions against the rule in force.

One run, for each trigger with adaptive conditions:
1. Sessions of the learning window (`window_s`, not all history) that reached the trigger's
   pages, each with the vectors and condition values the core reported at every decision,
   whether it was shown the trigger, whether it converted, and its inverse-propensity
   weight (`learning.data`). A share of the most recent hour's sessions is held out.
2. For intent conditions: a logistic model of P(convert | vector), pooled and per segment
   when a segment has enough sessions (`learning.model`).
3. Per segment (and `*`, over all sessions): the least-firing thresholds whose estimated
   recall reaches the target at the bootstrap lower bound, jointly over the trigger's
   adaptive conditions; firing may fall by at most `max_step` (share of sessions) per run
   (`learning.choose`).
4. Guardrail: on the held-out sessions the candidate must not miss the target where the
   current rule reaches it, nor fire more for sessions that did not convert while the
   current rule reaches the target; otherwise nothing of that trigger is published.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from edge_module.core import load_snapshot
from edge_module.core.snapshot import Condition, Snapshot, signal_conditions

from ..telemetry.telemetry_store import TelemetryStore
from . import choose as pick
from . import model as learner
from .data import SessionRow, load_sessions

HOUR_MS = 3_600_000
DEFAULT_RECALL = 0.95


@dataclass(frozen=True)
class Settings:
    """The learning loop's settings; `from_config` reads them from the control plane's configuration
    (CONTROL_LEARN_*)."""

    window_s: int = 6 * 3600  # learn from this much recent history
    holdout_share: float = 0.3  # of the most recent hour's sessions, kept for the guardrail
    min_sessions: int = 200  # sessions a segment needs before its thresholds move
    min_conversions: int = 20  # and conversions among them
    segment_model_sessions: int = 600  # a segment gets its own model from this many
    max_step: float = 0.15  # firing may fall by at most this share of sessions per run
    # and rise by at most this much: outcomes that call for a jump in firing may be forged
    # with the edge token (a review's one batch sent a segment from 30 % to 81 %)
    max_rise: float = 0.3
    confidence: float = 0.9  # recall must reach the target at this lower bound
    # the background conversion rate is that of the least engaged this share of sessions
    # (it assumes they are low-intent visitors); 0: none, so recall is that of converters,
    # which always errs towards firing more (docs/telemetry.md, "Choosing thresholds")
    background_share: float = 0.1
    regularisation: float = 0.5  # C of the logistic regression (smaller: simpler models)
    seed: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        values = {}
        for f in fields(cls):
            key = "LEARN_" + f.name.upper()
            if key in config:
                values[f.name] = type(f.default)(config[key])
        return cls(**values)


@dataclass(frozen=True)
class Change:
    trigger: str
    model_key: str
    segment: str
    old: float | None
    new: float | None
    samples: int
    objective: float | None  # the estimated recall at `new` (training sessions)
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)



@dataclass
class Adaptive:
    """A trigger's signal conditions, those in `mode: adaptive` first-class."""

    trigger: str
    pages: tuple[str, ...]
    conditions: list[Condition]
    target: float
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def tuned(self) -> list[Condition]:
        return [c for c in self.conditions if c.mode == "adaptive"]


def _targets(trig: dict[str, Any]) -> list[float]:
    found: list[float] = []

    def walk(conds: Any) -> None:
        for cond in conds or ():
            if isinstance(cond, dict) and "sustained" in cond:
                walk(cond["sustained"].get("when"))
            elif isinstance(cond, dict) and cond.get("mode") == "adaptive":
                target = cond.get("target")  # on hover/form signals: the element instead
                found.append(float(target.get("recall", DEFAULT_RECALL))
                             if isinstance(target, dict) else DEFAULT_RECALL)
    walk(trig.get("when"))
    return found


def adaptive_triggers(snapshot: dict[str, Any], snap: Snapshot) -> list[Adaptive]:
    """Every trigger with a `mode: adaptive` condition; its target is the strictest its
    conditions ask for (they are tuned together)."""
    out = []
    for raw in snapshot.get("triggers", []):
        trig = snap.by_id.get(raw.get("id"))
        if trig is None:
            continue
        conds = signal_conditions(trig.conditions)
        if any(c.mode == "adaptive" for c in conds):
            out.append(Adaptive(trig.id, tuple(raw.get("pages") or ("*",)), conds,
                                max(_targets(raw) or [DEFAULT_RECALL]), raw))
    return out


def _stable(session: str, salt: str) -> float:
    return zlib.crc32(f"{salt}\x1f{session}".encode()) / 2**32


def _cond_for(c: Condition, segment: str, thresholds: dict[str, dict[str, float]]) -> pick.Cond:
    """The condition as the edge applies it to a session of `segment` today."""
    value = c.value
    for seg, v in c.by_segment:
        if seg == segment:
            value = v
            break
    if c.mode == "adaptive":
        learned = thresholds.get(c.model_key or c.key, {})
        value = learned.get(segment, learned.get("*", value))
    return pick.Cond(c.key, c.model_key or c.key, c.name, c.op, float(value),
                     c.mode == "adaptive")


def propose(snapshot: dict[str, Any], store: TelemetryStore, settings: Settings = Settings(),
            now_ms: int | None = None) -> tuple[dict[str, Any], list[Change]]:
    """New `models.thresholds` and `models.learned` for the snapshot's adaptive triggers,
    and why (every segment considered, moved or not)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    snap = load_snapshot(json.dumps(snapshot))
    models = snapshot.get("models") or {}
    thresholds = {k: dict(v) for k, v in (models.get("thresholds") or {}).items()}
    learned = {k: dict(v) for k, v in (models.get("learned") or {}).items()}
    changes: list[Change] = []
    for adaptive in adaptive_triggers(snapshot, snap):
        t_changes, t_thresholds, t_learned = _learn_trigger(
            adaptive, snap, store, settings, now_ms, thresholds, learned)
        changes.extend(t_changes)
        thresholds.update(t_thresholds)
        learned.update(t_learned)
    return {"thresholds": thresholds, "learned": learned}, changes


def _learn_trigger(a: Adaptive, snap: Snapshot, store: TelemetryStore, settings: Settings,
                   now_ms: int, thresholds: dict[str, dict[str, float]],
                   learned: dict[str, dict[str, Any]]
                   ) -> tuple[list[Change], dict[str, dict[str, float]], dict[str, Any]]:
    since = now_ms - settings.window_s * 1000
    rows = load_sessions(store, snap, a.trigger, a.pages, since, now_ms)
    recent = now_ms - HOUR_MS
    held = [r for r in rows if r.last_ms >= recent
            and _stable(r.session, "guardrail") < settings.holdout_share]
    held_ids = {r.session for r in held}
    train = [r for r in rows if r.session not in held_ids]
    tuned = a.tuned
    keys = [c.model_key or c.key for c in tuned]
    segments = [*snap.segments, "*"]

    def change(c: Condition, seg: str, old: Any, new: Any, n: int, recall: Any, reason: str,
               details: dict[str, Any] | None = None) -> Change:
        return Change(a.trigger, c.model_key or c.key, seg, old, new, n, recall, reason,
                      details or {})

    conversions = sum(r.converted for r in train)
    if len(train) < settings.min_sessions or conversions < settings.min_conversions:
        return [change(c, "*", thresholds.get(c.model_key or c.key, {}).get("*"), None,
                       len(train), None,
                       f"too few samples ({len(train)} sessions, {conversions} converted in "
                       f"the window; need {settings.min_sessions} and "
                       f"{settings.min_conversions})") for c in tuned], {}, {}

    # 1. the intent models: pooled, and per segment where a segment has enough sessions
    new_learned: dict[str, dict[str, Any]] = {}
    intent_keys = [c.model_key or c.key for c in tuned if c.name == "intent"]
    pooled = learner.fit(train, settings.regularisation, settings.seed) if intent_keys else None
    if pooled is not None:
        per = {"*": pooled}
        for seg in snap.segments:
            seg_rows = [r for r in train if r.segment == seg]
            if len(seg_rows) >= settings.segment_model_sessions and \
                    sum(r.converted for r in seg_rows) >= settings.min_conversions * 2:
                own = learner.fit(seg_rows, settings.regularisation, settings.seed)
                if own is not None:
                    per[seg] = own
        for key in intent_keys:  # the conditions' models learn from the same sessions
            new_learned[key] = {s: per[s] for s in segments if s in per}

    def fit_like(seg: str) -> Any:
        """How the segment's intent model was fitted, to refit it on part of its sessions:
        None when none was fitted this run."""
        if not intent_keys or pooled is None:
            return None
        own = seg != "*" and seg in new_learned[intent_keys[0]]

        def refit(excluded: set[str]) -> dict[str, Any] | None:
            pool = [r for r in train if r.session not in excluded
                    and (not own or r.segment == seg)]
            return learner.fit(pool, settings.regularisation, settings.seed)
        return refit

    def model_for(seg: str) -> dict[str, dict[str, Any]]:
        out = {}
        for key in keys:
            per = new_learned.get(key) or learned.get(key) or {}
            m = per.get(seg) or per.get("*")
            if m is not None:
                out[key] = m
        return out

    # 2. thresholds per segment, jointly over the trigger's adaptive conditions
    new_thresholds = {k: {} for k in keys}
    changes: list[Change] = []
    chosen: dict[str, tuple[float, ...]] = {}
    kept: list[str] = []  # segments left as they are: no evidence to choose on
    backgrounds: dict[str, float] = {}
    for seg in segments:
        seg_rows = train if seg == "*" else [r for r in train if r.segment == seg]
        conv = sum(r.converted for r in seg_rows)
        conds = [_cond_for(c, seg, thresholds) for c in a.conditions]
        if len(seg_rows) < settings.min_sessions or conv < settings.min_conversions:
            for c in tuned:
                if seg_rows:
                    changes.append(change(c, seg, None, None, len(seg_rows), None,
                                          f"too few samples ({len(seg_rows)} sessions, {conv} "
                                          f"converted; need {settings.min_sessions} and "
                                          f"{settings.min_conversions}): the segment uses "
                                          "the thresholds for *"))
            continue
        problem = _cross_fitted(seg_rows, conds, model_for(seg), fit_like(seg))
        boot = pick.boot_weights(problem.n, settings.seed + zlib.crc32(seg.encode()))
        current = [r for r in seg_rows if r.policy in (None, "learned")]
        cw = np.array([r.weight for r in current])
        held_now = np.array([r.ever_held for r in current])
        cur_share = float((cw * held_now).sum() / cw.sum()) if len(current) else 0.0
        result = pick.choose(problem, a.target, settings.confidence,
                             cur_share - settings.max_step, boot, conds,
                             settings.background_share, cur_share + settings.max_rise)
        backgrounds[seg] = result.background
        details = {"target": a.target, "recall_low": round(result.recall_low, 4) + 0.0,
                   "fire_share": round(result.fire_share, 4),
                   "current_fire_share": round(cur_share, 4),
                   "background": round(result.background, 5),
                   "conversions": result.conversions, "step_bounded": result.bounded,
                   "reached": result.reached}
        if result.thresholds is None:
            why = (f"no intent signal in these sessions' conversions (the least engaged "
                   f"convert as often: background {result.background:.1%}): left as is"
                   if result.no_signal else
                   "no session ever reaches the trigger's other conditions: left as is")
            details["no_signal"] = result.no_signal
            kept.append(seg)
            for c in tuned:
                key = c.model_key or c.key
                if key in new_learned and not _old_model(learned, key, seg):
                    reason = why.replace("left as is", "it follows * (its first learned "
                                         "model: the pack's cannot be kept beside it)")
                else:
                    reason = why
                changes.append(change(c, seg, thresholds.get(key, {}).get(seg), None,
                                      problem.n, None, reason, details))
            continue
        chosen[seg] = result.thresholds
        for c, t in zip(tuned, result.thresholds):
            key = c.model_key or c.key
            old = thresholds.get(key, {}).get(seg)
            new = round(t, 6)
            new_thresholds[key][seg] = new
            if result.reached:
                why = (f"least firing at recall {_recall(result.recall)} (>= {a.target:.0%} "
                       f"at the {settings.confidence:.0%} bound: "
                       f"{_recall(result.recall_low)}), fires for {result.fire_share:.1%} of "
                       "sessions" + (" (step bounded)" if result.bounded else ""))
            elif result.bounded:
                why = (f"reaching recall {a.target:.0%} needs more firing than one run may add "
                       f"({settings.max_rise:.0%} of sessions over the {cur_share:.1%} in "
                       f"force): the most within it, {result.fire_share:.1%} (recall "
                       f"{_recall(result.recall)}, bound {_recall(result.recall_low)})")
            else:
                why = (f"no thresholds reach recall {a.target:.0%} at the "
                       f"{settings.confidence:.0%} bound with these sessions: the lowest, "
                       f"firing for every session it can ({result.fire_share:.1%}; recall "
                       f"{_recall(result.recall)}, bound {_recall(result.recall_low)})")
            changes.append(change(c, seg, old, new, problem.n, round(result.recall, 4), why,
                                  details))

    # segments that can stay as they are (a first learned model leaves none of the pack's
    # behind: those follow *)
    kept = [s for s in kept if all(k not in new_learned or _old_model(learned, k, s)
                                   for k in keys)]
    # 3. the guardrail, on the held-out sessions of the most recent hour
    verdict = _guardrail(a, held, chosen, model_for, thresholds, backgrounds.get("*", 0.0),
                         settings, kept)
    changes = [Change(**{**c.to_dict(), "details": {**c.details, "guardrail": verdict}})
               for c in changes]
    if verdict.get("refused"):
        return [Change(**{**c.to_dict(), "new": None,
                          "reason": f"refused by the guardrail: {verdict['refused']}"})
                for c in changes], {}, {}
    out_thresholds = _published(keys, segments, thresholds, learned, new_thresholds,
                                new_learned, {s: model_for(s) for s in chosen}, kept)
    return changes, out_thresholds, new_learned


def _old_model(learned: dict[str, dict[str, Any]], key: str, seg: str) -> Any:
    """The learned model segment `seg` scored with so far (its own, else *'s), or None."""
    per = learned.get(key) or {}
    return per.get(seg) or per.get("*")


def _published(keys: list[str], segments: list[str], thresholds: dict[str, dict[str, float]],
               learned: dict[str, dict[str, Any]], new_thresholds: dict[str, dict[str, float]],
               new_learned: dict[str, dict[str, Any]],
               chosen_with: dict[str, dict[str, Any]], kept: list[str]
               ) -> dict[str, dict[str, float]]:
    """The thresholds to publish (and `new_learned` completed in place), so that each
    segment scores with the model its threshold belongs to: a chosen segment the model it
    was chosen with (`chosen_with`), a kept one its old model and threshold. A segment
    left as is fell to *'s new threshold and model before, firing for nearly every
    session where * did (an independent re-measure found it)."""
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        old = thresholds.get(key, {})
        models = new_learned.get(key)
        # a new model: the old thresholds were for the old one
        merged = {} if models is not None else dict(old)
        merged.update(new_thresholds[key])
        if models is not None:
            for seg, used in chosen_with.items():
                if key in used:
                    models[seg] = used[key]
        for seg in kept:
            then = old.get(seg, old.get("*"))
            if models is not None:
                model = _old_model(learned, key, seg)
                if model is None:  # its first model: the pack's cannot be kept beside it
                    continue
                models[seg] = model
            if then is not None:
                merged[seg] = then
        if merged:
            out[key] = {s: merged[s] for s in segments if s in merged}
    return out


def _recall(estimate: float) -> str:
    """A recall estimate as a share: estimated from conversions less a background rate, it
    can pass 100 % (sessions that did not convert count against it), which says only
    "all of them"."""
    # + 0.0: max(-0.0, 0.0) is -0.0, shown as "-0.0%"
    return f"{min(max(estimate, 0.0), 1.0) + 0.0:.1%}" + ("+" if estimate > 1.0 else "")


def _guardrail(a: Adaptive, held: list[SessionRow], chosen: dict[str, tuple[float, ...]],
               model_for: Any, thresholds: dict[str, dict[str, float]], background: float,
               settings: Settings, kept: Sequence[str] = ()) -> dict[str, Any]:
    """Candidate vs the rule in force, on held-out sessions the candidate never saw."""
    rows = [r for r in held if r.policy in (None, "learned")]
    if not chosen or len(rows) < 30 or sum(r.converted for r in rows) < 5:
        return {"held_out": len(rows), "checked": False,
                "why": "too few held-out sessions to compare"}
    fired = np.zeros(len(rows), dtype=bool)
    for seg in {r.segment for r in rows}:
        idx = [i for i, r in enumerate(rows) if r.segment == seg]
        if seg in kept or (seg not in chosen and "*" in kept):
            fired[idx] = [rows[i].ever_held for i in idx]  # the rule in force, unchanged
            continue
        ts = chosen.get(seg) or chosen.get("*")
        if ts is None:
            continue
        seg_rows = [rows[i] for i in idx]
        conds = [_cond_for(c, seg, thresholds) for c in a.conditions]
        problem = pick.build(seg_rows, conds, model_for(seg))
        fired[idx] = pick.fires(problem, ts, conds)
    y = np.array([r.converted for r in rows], dtype=float)
    w = np.array([r.weight for r in rows])
    boot = pick.boot_weights(len(rows), settings.seed + 1)
    cmp = pick.compare(y, w, fired, np.array([r.ever_held for r in rows]), background, boot,
                       settings.confidence)
    cand, cur = cmp["candidate"], cmp["current"]
    verdict: dict[str, Any] = {"held_out": len(rows), "checked": cand["recall"] is not None,
                               "candidate": _round(cand), "current": _round(cur),
                               "more_intent": [round(v, 4) for v in cmp["more_intent"]]}
    if cand["recall"] is None:
        verdict["why"] = "the held-out sessions' conversions show no intent to compare on"
        return verdict
    if cand["recall"] < a.target and cmp["more_intent"][2] < 0:
        verdict["refused"] = (f"recall {_recall(cand['recall'])} on the held-out sessions, below "
                              f"the target, and it catches less than the current rule "
                              f"({_recall(cur['recall'])}) at the {settings.confidence:.0%} bound")
    elif cur["recall"] >= a.target and cand["false"] > cur["false"] * 1.05 + 1:
        verdict["refused"] = (f"more false triggers than the current rule on the held-out "
                              f"sessions ({cand['false']:.0f} vs {cur['false']:.0f}) while "
                              f"that rule reaches the target ({_recall(cur['recall'])})")
    return verdict


FOLDS = 5


def _cross_fitted(rows: list[SessionRow], conds: list[pick.Cond],
                  models: dict[str, dict[str, Any]], refit: Any) -> pick.Problem:
    """The threshold search's sessions, each scored by an intent model fitted without it
    (K-fold cross-fitting). Scored by the model that learned from their own outcomes, the
    converters sit higher than they would on new traffic, and recall estimated from those
    same outcomes overstates what a threshold catches."""
    keys = {c.model_key for c in conds if c.adaptive and c.signal == "intent"}
    if refit is None or not keys:
        return pick.build(rows, conds, models)
    folds: list[list[SessionRow]] = [[] for _ in range(FOLDS)]
    for r in rows:
        folds[min(FOLDS - 1, int(_stable(r.session, "fold") * FOLDS))].append(r)
    parts = []
    for fold in folds:
        if not fold:
            continue
        model = refit({r.session for r in fold})
        fold_models = {**models, **{k: model for k in keys}} if model is not None else models
        parts.append(pick.build(fold, conds, fold_models))
    return pick.concat(parts)


def _round(m: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}

