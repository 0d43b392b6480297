"""Loading a compiled snapshot into the structures the decision core evaluates.

The compiler (control plane) writes the snapshot as JSON (docs/snapshot-format.md); this
module trusts its shape only as far as it checks it, so a snapshot that is not what it
claims is refused with a `SnapshotError` instead of failing later in `decide`. Triggers and sequences are built by `trigger_loader`.
"""

from __future__ import annotations

import json
from typing import Any

from .catalog import (
    DEFAULT_MAX_ACTIONS,
    DEFAULT_MAX_EVENTS,
    DEFAULT_VELOCITY_WINDOW_MS,
    FATIGUE_CHANNELS,
    SNAPSHOT_FORMAT,
)
from .content import load_content
from .errors import SnapshotError
from .features import SESSION_FEATURES, LearnedModel
from .globs import Glob, from_legacy_regex
from .plan import compile_plan
from .snapshot import INTENT, Model, Snapshot
from .snapshot_checks import (
    MAX_JSON_DEPTH,
    bounded_float,
    bounded_int,
    check,
    check_duration,
    check_durations,
    check_finite,
    check_int,
    check_num,
    first_lone_surrogate,
    may_hold_lone_surrogate,
    no_constant,
    too_deep,
)
from .trigger_loader import TriggerLoader, context_condition, load_sequence, load_trigger


def _model(raw: Any, where: str) -> Model | None:
    if raw is None:
        return None
    check(isinstance(raw, dict), f"{where}: expected an object")
    weights = raw.get("weights") or {}
    scale = raw.get("scale") or {}
    check(isinstance(weights, dict) and isinstance(scale, dict),
          f"{where}: weights and scale are objects")
    return Model(check_num(raw.get("bias", 0.0), f"{where}.bias"),
                 tuple((str(f), check_num(w, f"{where}.weights.{f}"),
                        check_num(scale.get(f, 1), f"{where}.scale.{f}") or 1.0)
                       for f, w in weights.items()))


def _index_list(raw: Any, where: str, count: int) -> tuple[int, ...]:
    check(isinstance(raw, list) and all(isinstance(i, int) and 0 <= i < count for i in raw),
          f"{where}: expected a list of trigger indexes")
    return tuple(raw)


def _entries(raw: Any, where: str, shape: str) -> list[Any]:
    """An index's list of [key, trigger indexes] pairs (absent: none)."""
    if raw is None:
        return []
    check(isinstance(raw, list), f"{where}: expected a list of {shape}")
    for i, entry in enumerate(raw):
        check(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str),
              f"{where}[{i}]: expected {shape}")
    return raw


def _fatigue_channels(value: Any) -> str:
    check(value in FATIGUE_CHANNELS, f"fatigue.channels: expected one of {FATIGUE_CHANNELS}")
    return str(value)


def load_snapshot(text: str) -> Snapshot:
    """Parse, check and index a snapshot's JSON text."""
    check(not too_deep(text), f"snapshot: arrays and objects nest deeper than "
                              f"{MAX_JSON_DEPTH} levels")
    try:
        # numbers past +-(2^53 - 1), NaN and Infinity are refused as they are read
        doc = json.loads(text, parse_int=bounded_int, parse_float=bounded_float,
                         parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise SnapshotError("invalid_snapshot", f"snapshot is not JSON: {exc}") from None
    check(isinstance(doc, dict), "snapshot: expected a JSON object")
    if may_hold_lone_surrogate(text):
        # revision and content are answered as UTF-8 (a WIT string): a lone half cannot be
        lone = first_lone_surrogate(doc)
        check(lone is None, f"{lone}: a string holds a lone UTF-16 surrogate (not UTF-8)")
    check(doc.get("format") == SNAPSHOT_FORMAT,
          f"format: expected {SNAPSHOT_FORMAT!r}, got {doc.get('format')!r}")
    revision = doc.get("revision")
    check(isinstance(revision, str) and revision != "", "revision: expected a non-empty string")
    raw_triggers = doc.get("triggers")
    check(isinstance(raw_triggers, list), "triggers: expected a list")
    check_durations(raw_triggers, "triggers")
    loader = TriggerLoader()
    triggers = tuple(load_trigger(loader, i, t) for i, t in enumerate(raw_triggers))
    by_id = {t.id: t for t in triggers}
    check(len(by_id) == len(triggers), "triggers: ids must be unique")
    n = len(triggers)

    index = doc.get("index")
    check(isinstance(index, dict), "index: expected an object")
    exact_raw = index.get("exact", {})
    check(isinstance(exact_raw, dict), "index.exact: expected an object")
    exact = {k: _index_list(v, f"index.exact[{k!r}]", n) for k, v in exact_raw.items()}
    prefixes = [(entry[0], _index_list(entry[1], f"index.prefix[{i}]", n)) for i, entry in
                enumerate(_entries(index.get("prefix"), "index.prefix", "[prefix, ids]"))]
    patterns = [(Glob(entry[0]), _index_list(entry[1], f"index.glob[{i}]", n)) for i, entry in
                enumerate(_entries(index.get("glob"), "index.glob", "[glob, ids]"))]
    # Snapshots compiled before page globs had their own bucket spelt them as regexes:
    # those of that shape still load (as globs); no other regex is ever run.
    for i, entry in enumerate(_entries(index.get("pattern"), "index.pattern", "[regex, ids]")):
        glob = from_legacy_regex(entry[0])
        check(glob is not None, f"index.pattern[{i}]: {entry[0][:80]!r} is not a page glob "
              "(`^` + literal parts joined by `.*` + `\\Z`); recompile the packs")
        patterns.append((Glob(glob or ""), _index_list(entry[1], f"index.pattern[{i}]", n)))
    any_page = _index_list(index.get("any", []), "index.any", n)

    limits = doc.get("limits") or {}
    check(isinstance(limits, dict), "limits: expected an object")
    segments_raw = doc.get("segments") or {}
    check(isinstance(segments_raw, dict), "segments: expected an object")
    segments = {}
    for name, preds in segments_raw.items():
        check(isinstance(preds, list) and all(isinstance(p, dict) for p in preds),
              f"segments.{name}: expected a list of context conditions (objects)")
        segments[name] = tuple(context_condition(p, f"segments.{name}[{i}]", f"@{name}#{i}")
                               for i, p in enumerate(preds))
    raw_sequences = doc.get("sequences") or []
    check(isinstance(raw_sequences, list), "sequences: expected a list")
    check_durations(raw_sequences, "sequences")
    loader.next_index = n  # steps rank after every trigger
    sequences = tuple(load_sequence(loader, i, s) for i, s in enumerate(raw_sequences))
    missing = loader.segments_used - set(segments)
    check(not missing, f"segments: {sorted(missing)} used but not defined")
    models = doc.get("models") or {}
    check(isinstance(models, dict), "models: expected an object")
    fatigue = doc.get("fatigue") or {}
    check(isinstance(fatigue, dict), "fatigue: expected an object")
    per_session, per_minute = fatigue.get("per_session"), fatigue.get("per_minute")
    settings = doc.get("settings") or {}
    check(isinstance(settings, dict), "settings: expected an object")
    report_features = settings.get("report_features", False)
    check(isinstance(report_features, bool), "settings.report_features: expected true or false")
    report = report_features or any(
        c.mode == "adaptive" or c.signal == INTENT
        for t in (*triggers, *(step.trigger for seq in sequences for step in seq.steps))
        for c in t.signals)
    snap = Snapshot(
        revision=revision,
        triggers=triggers,
        by_id=by_id,
        exact=exact,
        prefixes=tuple(prefixes),
        patterns=tuple(patterns),
        any_page=any_page,
        max_events=check_int(limits.get("max_events", DEFAULT_MAX_EVENTS), "limits.max_events", 1),
        max_actions=check_int(limits.get("max_actions", DEFAULT_MAX_ACTIONS), "limits.max_actions", 1),
        # a report reads the 1 s scroll velocity: its samples are kept
        keep_ms=max(loader.scroll_keep, DEFAULT_VELOCITY_WINDOW_MS) if report else
        loader.scroll_keep,
        segments=segments,
        sequences=sequences,
        intent=_model(models.get("intent"), "models.intent"),
        intent_by_trigger={str(k): m for k, v in (models.get("intent_by_trigger") or {}).items()
                           if (m := _model(v, f"models.intent_by_trigger.{k}")) is not None},
        baselines=_baselines(models.get("baselines") or {}),
        thresholds={str(k): tuple((str(s), check_num(v, f"models.thresholds.{k}.{s}"))
                                  for s, v in seg.items())
                    for k, seg in (models.get("thresholds") or {}).items()
                    if isinstance(seg, dict)},
        fatigue_per_session=None if per_session is None else check_int(per_session,
                                                                   "fatigue.per_session", 1),
        fatigue_per_minute=None if per_minute is None else check_int(per_minute,
                                                                "fatigue.per_minute", 1),
        quiet_after_dismiss_ms=check_duration(fatigue.get("quiet_after_dismiss_ms", 0),
                                              "fatigue.quiet_after_dismiss_ms"),
        fatigue_separate=_fatigue_channels(fatigue.get("channels", "shared")) == "separate",
        channels=any(t.channel != "page" for t in
                     (*triggers, *(step.trigger for seq in sequences for step in seq.steps))),
        tracked=loader.tracked,
        tracked_types=frozenset(key.split("|", 1)[0] for key in loader.tracked),
        agg_fields=loader.agg_fields,
        experiment=_experiment(doc.get("experiment")),
        mouse_keep_ms=loader.mouse_keep,
        forms=loader.forms,
        learned=_learned(models.get("learned")),
        report=report,
        content=load_content(doc.get("content")),
    )
    snap.plan = compile_plan(snap)
    return snap


_TRANSFORMS = ("identity", "log1p")


def _learned(raw: Any) -> dict[str, tuple[tuple[str, LearnedModel], ...]]:
    """`models.learned`: model key -> segment (or "*") -> calibrated logistic model."""
    if raw is None:
        return {}
    check(isinstance(raw, dict), "models.learned: expected an object (model key -> segments)")
    out: dict[str, tuple[tuple[str, LearnedModel], ...]] = {}
    for key, by_segment in raw.items():
        where = f"models.learned.{key}"
        check(isinstance(by_segment, dict),
              f"{where}: expected an object (segment name or \"*\" -> model)")
        out[str(key)] = tuple((str(seg), _learned_model(body, f"{where}.{seg}"))
                              for seg, body in by_segment.items())
    return out


def _learned_model(raw: Any, where: str) -> LearnedModel:
    check(isinstance(raw, dict), f"{where}: expected an object")
    names = raw.get("features")
    check(isinstance(names, list) and all(isinstance(n, str) for n in names),
          f"{where}.features: expected a list of feature names")
    check(len(set(names)) == len(names), f"{where}.features: each feature at most once")
    unknown = [n for n in names if n not in SESSION_FEATURES]
    check(not unknown, f"{where}.features: unknown {unknown[:3]}; expected names from "
                       f"{', '.join(SESSION_FEATURES)}")
    parts = {}
    for part in ("transform", "mean", "scale", "weights"):
        value = raw.get(part) or {}
        check(isinstance(value, dict), f"{where}.{part}: expected an object (feature -> value)")
        extra = [n for n in value if n not in names]
        check(not extra, f"{where}.{part}: {extra[:3]} not in features")
        parts[part] = value
    terms = []
    for name in names:
        transform = parts["transform"].get(name, "identity")
        check(transform in _TRANSFORMS,
              f"{where}.transform.{name}: expected one of {', '.join(_TRANSFORMS)}")
        check(name in parts["weights"], f"{where}.weights.{name}: missing")
        scale = check_finite(parts["scale"].get(name, 1.0), f"{where}.scale.{name}")
        check(scale > 0, f"{where}.scale.{name}: expected a number > 0")
        terms.append((name, transform == "log1p",
                      check_finite(parts["mean"].get(name, 0.0), f"{where}.mean.{name}"), scale,
                      check_finite(parts["weights"][name], f"{where}.weights.{name}")))
    calibration = raw.get("calibration") or {}
    check(isinstance(calibration, dict), f"{where}.calibration: expected an object {{a, b}}")
    return LearnedModel(tuple(terms), check_finite(raw.get("bias", 0.0), f"{where}.bias"),
                        check_finite(calibration.get("a", 1.0), f"{where}.calibration.a"),
                        check_finite(calibration.get("b", 0.0), f"{where}.calibration.b"))


def _experiment(raw: Any) -> tuple[str, float, float, float] | None:
    if raw is None:
        return None
    check(isinstance(raw, dict), "experiment: expected an object")
    arms = raw.get("arms")
    check(isinstance(arms, dict), "experiment.arms: expected an object")
    shares = [check_num(arms.get(arm, 0), f"experiment.arms.{arm}")
              for arm in ("adaptive", "static", "holdout")]
    check(all(0 <= p <= 100 for p in shares) and abs(sum(shares) - 100) < 1e-6,
          "experiment.arms: shares from 0 to 100 that add up to 100")
    return (str(raw.get("salt") or "experiment"), shares[0], shares[1], shares[2])


def _baselines(raw: Any) -> dict[str, dict[str, tuple[float, float]]]:
    check(isinstance(raw, dict), "models.baselines: expected an object")
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for signal, body in raw.items():
        check(isinstance(body, dict), f"models.baselines.{signal}: expected an object")
        entry = {"*": (check_num(body.get("mean", 0), f"models.baselines.{signal}.mean"),
                       check_num(body.get("std", 0), f"models.baselines.{signal}.std"))}
        for seg, stats in (body.get("by_segment") or {}).items():
            check(isinstance(stats, dict), f"models.baselines.{signal}.by_segment.{seg}")
            entry[str(seg)] = (check_num(stats.get("mean", 0), "mean"), check_num(stats.get("std", 0), "std"))
        out[str(signal)] = entry
    return out

