"""From validated packs to the snapshot the decision core loads (`edge_module.core.snapshot`).

The result is a plain, JSON-ready dict built in a fixed key order with sorted index lists,
so the same packs always give the same snapshot (and the same bytes once dumped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge_module.core.catalog import DEFAULT_MAX_ACTIONS, DEFAULT_MAX_EVENTS, SNAPSHOT_FORMAT
from edge_module.core.globs import normalize

from .content_catalog import ContentCatalog, compiled_content
from .cross_pack import cross_pack_problems, merged_thresholds
from .problems import RulePackError
from .validated import (
    ActionSpec,
    Condition,
    ConditionSpec,
    ContextSpec,
    EventFilter,
    IntentModel,
    LearnedModel,
    Pack,
    SegmentRef,
    SequenceSpec,
    TriggerSpec,
)

__all__ = ["compile_snapshot", "compiled_condition", "compiled_conditions",
           "cross_pack_problems", "page_bucket"]


def compile_snapshot(packs: Sequence[Pack], revision: str, created_ms: int,
                     catalog: ContentCatalog | None = None) -> dict[str, Any]:
    """The snapshot of `packs`, in order, with the content fields and variants of `catalog`;
    `RulePackError` for clashes between packs."""
    if not isinstance(revision, str) or not revision:
        raise ValueError("revision must be a non-empty string")
    if type(created_ms) is not int or created_ms < 0:
        raise ValueError("created_ms must be an integer >= 0 (ms since epoch)")
    problems = cross_pack_problems(packs)
    if problems:
        raise RulePackError(problems)
    triggers: list[dict[str, Any]] = []
    buckets: dict[str, dict[str, set[int]]] = {"exact": {}, "prefix": {}, "glob": {}}
    any_page: set[int] = set()
    for pack in packs:
        for spec in pack.triggers:
            position = len(triggers)
            triggers.append(_trigger(pack, spec))
            for glob in spec.pages:
                kind, key = page_bucket(glob)
                if kind == "any":
                    any_page.add(position)
                else:
                    buckets[kind].setdefault(key, set()).add(position)
    snapshot: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "revision": revision,
        "created_ms": created_ms,
        "packs": [
            {"pack": p.name, "file": p.file, "sha256": p.sha256, "triggers": len(p.triggers)}
            for p in packs
        ],
        "limits": {"max_events": DEFAULT_MAX_EVENTS, "max_actions": _max_actions(packs)},
        "fatigue": _fatigue(packs),
        **_experiment(packs),
        **_settings(packs),
        "segments": {seg.name: [_context(c) for c in seg.when]
                     for p in packs for seg in p.segments},
        "models": _models(packs),
        "triggers": triggers,
        "sequences": [_sequence(p, s) for p in packs for s in p.sequences],
        "index": {
            "exact": {k: sorted(v) for k, v in sorted(buckets["exact"].items())},
            "prefix": [[k, sorted(v)] for k, v in sorted(buckets["prefix"].items())],
            "glob": [[k, sorted(v)] for k, v in sorted(buckets["glob"].items())],
            "any": sorted(any_page),
        },
    }
    content = compiled_content(catalog) if catalog is not None else {}
    if content:  # a catalog without fields leaves the snapshot as it was
        snapshot["content"] = content
    return snapshot


def page_bucket(glob: str) -> tuple[str, str]:
    """Where a page glob goes in the index: ("any" | "exact" | "prefix" | "glob", key).

    A "glob" key is the glob itself (stars folded), matched by `edge_module.core.globs`
    in linear time: never a regex, which a URL of many slashes could make backtrack.
    """
    glob = normalize(glob)  # "**" means the same as "*"
    if glob == "*":
        return "any", "*"
    stars = glob.count("*")
    if stars == 0:
        return "exact", glob
    if stars == 1 and glob.endswith("*"):
        return "prefix", glob[:-1]
    return "glob", glob


def _max_actions(packs: Sequence[Pack]) -> int:
    """The smallest max_actions any pack sets: a pack's limit is never loosened by another."""
    limits = [p.settings.max_actions for p in packs
              if p.settings is not None and p.settings.max_actions is not None]
    return min(limits, default=DEFAULT_MAX_ACTIONS)


def _fatigue(packs: Sequence[Pack]) -> dict[str, Any]:
    """The strictest of the packs' fatigue settings: smallest limits, longest quiet period."""
    fatigues = [p.settings.fatigue for p in packs
                if p.settings is not None and p.settings.fatigue is not None]
    per_session = [f.per_session for f in fatigues if f.per_session is not None]
    per_minute = [f.per_minute for f in fatigues if f.per_minute is not None]
    out = {"per_session": min(per_session, default=None),
           "per_minute": min(per_minute, default=None),
           "quiet_after_dismiss_ms": max((f.quiet_after_dismiss_ms for f in fatigues),
                                         default=0)}
    # one budget for every channel unless a pack asks for one per channel and none objects
    said = {f.channels for f in fatigues if f.channels is not None}
    if said == {"separate"}:
        out["channels"] = "separate"
    return out


def _experiment(packs: Sequence[Pack]) -> dict[str, Any]:
    """{"experiment": ...} from the one pack that defines it; {} (no key at all) if none, so
    snapshots without an experiment stay byte for byte the same."""
    for pack in packs:
        spec = pack.settings.experiment if pack.settings is not None else None
        if spec is not None:
            return {"experiment": {"salt": spec.salt,
                                   "arms": {"adaptive": float(spec.adaptive),
                                            "static": float(spec.static),
                                            "holdout": float(spec.holdout)}}}
    return {}


def _settings(packs: Sequence[Pack]) -> dict[str, Any]:
    """{"settings": {"report_features": true}} when any pack asks decisions to report their
    features; {} otherwise, so other snapshots stay byte for byte the same."""
    if any(p.settings is not None and p.settings.report_features for p in packs):
        return {"settings": {"report_features": True}}
    return {}


def _intent(model: IntentModel) -> dict[str, Any]:
    return {"bias": model.bias, "weights": dict(model.weights), "scale": dict(model.scale)}


def _models(packs: Sequence[Pack]) -> dict[str, Any]:
    """All packs' models in one; only the sections some pack writes."""
    out: dict[str, Any] = {}
    by_trigger: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    learned: dict[str, Any] = {}
    for pack in packs:
        models = pack.models
        if models is None:
            continue
        if models.intent is not None:
            out["intent"] = _intent(models.intent)
        for at, model in models.intent_by_trigger:
            by_trigger[at.name] = _intent(model)
        for at, base in models.baselines:
            baselines[at.name] = {
                "mean": base.mean, "std": base.std,
                "by_segment": {seg: {"mean": mean, "std": std}
                               for seg, mean, std in base.by_segment}}
        for at, by_segment in models.learned:
            learned[at.name] = {seg: _learned(model) for seg, model in by_segment}
    thresholds = merged_thresholds(packs)
    for key, section in (("intent_by_trigger", by_trigger), ("baselines", baselines),
                         ("thresholds", thresholds), ("learned", learned)):
        if section:
            out[key] = section
    return out


def _learned(model: LearnedModel) -> dict[str, Any]:
    """A learned intent model in full: every listed feature has its mean, scale and weight."""
    mean, scale = dict(model.mean), dict(model.scale)
    out: dict[str, Any] = {
        "features": list(model.features),
        "transform": dict(model.transform),
        "mean": {f: mean.get(f, 0.0) for f in model.features},
        "scale": {f: scale.get(f, 1.0) for f in model.features},
        "weights": dict(model.weights),
        "bias": model.bias,
        "calibration": {"a": model.calibration[0], "b": model.calibration[1]},
    }
    if model.trained is not None:
        out["trained"] = model.trained
    return out


def _filter(flt: EventFilter) -> dict[str, Any]:
    return {"type": flt.type, "name": flt.name, "target": flt.target}


def _action(action: ActionSpec) -> dict[str, Any]:
    out = {"content": action.content, "tier": action.tier, "delay_ms": action.delay_ms,
           "priority": action.priority}
    if action.channel != "page":  # page actions compile as they always did
        out["channel"] = action.channel
        if action.template is not None:
            out["template"] = action.template
    return out


def _trigger(pack: Pack, spec: TriggerSpec) -> dict[str, Any]:
    journey = None
    if spec.journey is not None:
        journey = {"within_ms": spec.journey.within_ms,
                   "by_segment": dict(spec.journey.by_segment)}
    return {
        "id": spec.id,
        "pack": pack.name,
        "pages": list(spec.pages),
        "on": None if spec.on is None else _filter(spec.on),
        "segment": spec.segment,
        "when": compiled_conditions(spec.id, spec.when),
        "consecutive": spec.consecutive,
        "group": spec.group,
        "journey": journey,
        "rollout": spec.rollout,
        "holdout": spec.holdout,
        # only on triggers with an adaptive condition: other snapshots stay byte for byte
        **({} if spec.explore is None else {"explore": float(spec.explore)}),
        "salt": spec.id if spec.salt is None else spec.salt,
        "action": _action(spec.action),
        "cap": {
            "per_session": spec.cap.per_session,
            "per_page": spec.cap.per_page,
            "cooldown_ms": spec.cap.cooldown_ms,
        },
    }


def _sequence(pack: Pack, spec: SequenceSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "pack": pack.name,
        "start": _filter(spec.start),
        "exit": [_filter(f) for f in spec.exit],
        "steps": [{"id": step.id, "after_ms": step.after_ms,
                   "when": compiled_conditions(f"{spec.id}/{step.id}", step.when),
                   "timeout_ms": step.timeout_ms, "action": _action(step.action)}
                  for step in spec.steps],
    }


def compiled_conditions(prefix: str, when: Sequence[Condition]) -> list[dict[str, Any]]:
    """`when` as the snapshot holds it; `prefix` and a condition's position make its model
    key (see `cross_pack.keyed_conditions`)."""
    return [compiled_condition(f"{prefix}#{i}", c) for i, c in enumerate(when)]


def compiled_condition(key: str, cond: Condition) -> dict[str, Any]:
    """One condition as the snapshot holds it; `key` is its model key."""
    if isinstance(cond, ContextSpec):
        return _context(cond)
    if isinstance(cond, SegmentRef):
        return {"segment": cond.segment}
    if not isinstance(cond, ConditionSpec):  # sustained
        return {"sustained": {"for_ms": cond.for_ms, "when": compiled_conditions(key, cond.when)}}
    out: dict[str, Any] = {"signal": cond.signal, "op": cond.op, "value": cond.value}
    if cond.window_ms is not None:
        out["window_ms"] = cond.window_ms
    if cond.target is not None:
        out["target"] = cond.target
    if cond.baseline is not None:
        out["baseline"] = cond.baseline
    if cond.event is not None:
        out["event"] = _filter(cond.event)
    if cond.after is not None:
        out["after"] = _filter(cond.after)
    if cond.field is not None:
        out["field"] = cond.field
    if cond.by_segment:
        out["by_segment"] = dict(cond.by_segment)
    # A static condition compiles as it always has: v1 snapshots stay byte for byte the same.
    if cond.mode != "static":
        out["mode"] = cond.mode
    if cond.z is not None:
        out["z"] = cond.z
    if cond.mode == "adaptive":
        out["model_key"] = key
    if cond.recall is not None:  # adaptive only; signals whose target is an element have none
        out["target"] = {"recall": cond.recall}
    return out


def _context(cond: ContextSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"context": cond.context}
    if cond.name is not None:
        out["name"] = cond.name
    value = list(cond.value) if isinstance(cond.value, tuple) else cond.value
    out.update({"op": cond.op, "value": value})
    return out
