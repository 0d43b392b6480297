"""The JSON Schema of rule packs, for editors (yaml-language-server): completion and squiggles.

It is generated from the validator's own tables (the keys it allows, the names it accepts)
and the decision core's vocabulary (signals, event types, operators, tiers, context fields),
plus the content catalog when there is one, so the schema cannot drift from what `validate`
accepts without `tests/control/test_schema.py` noticing. The validator stays the authority: the
schema cannot see everything (a duration that is not a whole number of milliseconds, ids
unique across packs, segments defined in another pack, a threshold's unit), and it accepts
only the usual spellings of numbers.

Draft-07, the draft editors support best.

Longer than most modules on purpose: it is one declarative document, a function per
definition, read best whole beside the validator tables it mirrors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_module.core.catalog import (
    AGGREGATE_FIELDS,
    CHANNELS,
    CONTEXT_FIELDS,
    EVENT_TYPES,
    FATIGUE_CHANNELS,
    INTENT_FEATURES,
    MAX_CONSECUTIVE,
    MAX_TEMPLATE,
    OPERATOR_WORDS,
    OPERATORS,
    SIGNALS,
    TIERS,
    WEEKDAYS,
)
from edge_module.core.features import SESSION_FEATURES

from .checker import NAME
from .content_catalog import ContentCatalog
from .validate import (
    CATALOG_FILES,
    CONTENT_KEYS,
    JOURNEY_KEYS,
    ON_KEYS,
    PACK_KEYS,
    PACK_NAME,
    SEQUENCE_KEYS,
    STEP_KEYS,
    TRIGGER_KEYS,
)
from .validate_actions import ACTION_KEYS, CAP_KEYS, MAX_PRIORITY, MIN_PRIORITY
from .validate_conditions import SUSTAINED_KEYS, TARGETED_EVENTS
from .validate_context import ATTRIBUTE_KEYS, CONTEXT_EXTRA_OPERATORS
from .validate_models import (
    BASELINE_KEYS,
    CALIBRATION_KEYS,
    INTENT_KEYS,
    LEARNED_KEYS,
    LEARNED_REQUIRED,
    MODEL_KEY,
    MODELS_KEYS,
    STATS_KEYS,
    TRANSFORMS,
)
from .validate_settings import EXPERIMENT_KEYS, FATIGUE_KEYS, SETTINGS_KEYS
from .values import DURATION_PATTERN
from .vocabulary import (
    ANY_SEGMENT,
    BASELINES,
    CONTEXT_OPERATOR_WORDS,
    DEFAULT_EXPLORE,
    DEFAULT_RECALL,
    DEVICES,
    ENTROPY_MAX_BITS,
    EXAMPLE_VALUE,
    KIND_MAX,
    MAX_ACTIONS_LIMIT,
    MAX_EXPLORE,
    MODES,
    RECALL_TARGET_KEYS,
    THRESHOLD_KEYS,
    value_kind,
)

DRAFT = "http://json-schema.org/draft-07/schema#"
_NUMBER = r"(\d+(\.\d+)?|\.\d+)"
_PERCENT = r"(100(\.0+)?|\d{1,2}(\.\d+)?|\.\d+)\s*%"
_EXPLORE_PERCENT = r"(50(\.0+)?|[1-4]?\d(\.\d+)?|\.\d+)\s*%"  # 0% .. MAX_EXPLORE
_FRACTION = r"(0(\.\d+)?|1(\.0+)?|\.\d+)"
_RATIO = rf"({_FRACTION}|{_PERCENT})"
_VALUE_PATTERN = {"duration": DURATION_PATTERN, "ratio": _RATIO, "number": _NUMBER,
                  "count": r"\d+", "score": _RATIO, "entropy": _NUMBER}
_VALUE_HINT = {"duration": "a duration such as 3s or 500ms",
               "ratio": "a fraction 0..1 such as 0.78, or a percentage such as 78%",
               "number": "a number >= 0",
               "count": "a whole number >= 0",
               "score": "a score 0..1 such as 0.7",
               "entropy": f"bits, 0..{ENTROPY_MAX_BITS:g}"}
_SYMBOLS = "|".join(sorted(OPERATORS, key=len, reverse=True))  # ">=" before ">"
_NAME_PATTERN = f"^{NAME.pattern}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _whole(pattern: str) -> str:
    return rf"^\s*{pattern}\s*$"


def _object(properties: dict[str, Any], keys: tuple[str, ...] | list[str],
            required: tuple[str, ...] | list[str] = (), **extra: Any) -> dict[str, Any]:
    """A mapping allowing exactly `keys` (in the validator's order)."""
    out: dict[str, Any] = {"type": "object", "properties": {k: properties[k] for k in keys},
                           "additionalProperties": False}
    if required:
        out["required"] = list(required)
    out.update(extra)
    return out


def _duration(description: str = _VALUE_HINT["duration"] + " (units: ms, s, m, h)") -> dict[str, Any]:
    return {"type": "string", "pattern": _whole(DURATION_PATTERN), "description": description,
            "examples": ["500ms", "3s", "2m"]}


def _percent(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": _whole(_PERCENT), "description": description,
            "examples": ["50%", "10%"]}


def _recall_target() -> dict[str, Any]:
    recall = {"description": "the share of converting sessions the adaptive threshold must "
                             "still catch: above 0%, at most 100%",
              "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        {"type": "string", "pattern": _whole(_PERCENT)}],
              "examples": ["95%", "90%"]}
    return _object({"recall": recall}, RECALL_TARGET_KEYS, RECALL_TARGET_KEYS,
                   description=f"mode: adaptive only: what the learning loop keeps while it "
                               f"tunes the threshold (default recall {DEFAULT_RECALL:.0%})")


def _page_glob() -> dict[str, Any]:
    return {"type": "string", "pattern": r"^(\*|/[^?#]*)$",
            "description": "a URL path glob: /pricing, /blog/*, or \"*\" for any page"}


def _segment_name() -> dict[str, Any]:
    return {"type": "string", "pattern": _NAME_PATTERN,
            "description": "a segment defined under segments: in some pack"}


def _value(kind: str | None) -> dict[str, Any]:
    """A threshold in the mapping form; None: an aggregate (its kind depends on the field)."""
    if kind is None:
        return {"description": "a value in the field's unit",
                "anyOf": [{"type": "number", "minimum": 0},
                          {"type": "string", "pattern": _whole(
                              "(" + "|".join(_VALUE_PATTERN[k] for k in
                                             ("duration", "ratio", "number")) + ")")}]}
    text = {"type": "string", "pattern": _whole(_VALUE_PATTERN[kind])}
    if kind == "duration":
        return {**text, "description": _VALUE_HINT[kind]}
    numeric: dict[str, Any] = {"type": "integer" if kind == "count" else "number", "minimum": 0}
    if kind in KIND_MAX:
        numeric["maximum"] = KIND_MAX[kind]
    return {"description": _VALUE_HINT[kind], "anyOf": [numeric, text]}


def _signal(name: str) -> dict[str, Any]:
    spec = SIGNALS[name]
    kind = value_kind(name) if spec.kind != "field" else None
    required = spec.required
    params: dict[str, Any] = {
        "window": _duration("the window the signal looks back over"),
        "target": {"type": "string", "minLength": 1, "description": 'a CSS selector such as "#cta"'},
        "baseline": {"enum": list(BASELINES), "description": "session: the session's own "
                     "average scroll speed; cohort: models.baselines.scroll_velocity"},
        "event": _ref("event_filter"),
        "after": _ref("event_filter"),
        "field": {"enum": list(AGGREGATE_FIELDS), "description": "the event field to aggregate"},
    }
    thresholds: dict[str, Any] = {
        "by_segment": {"type": "object", "propertyNames": {"pattern": _NAME_PATTERN},
                       "additionalProperties": _value(kind), "minProperties": 1,
                       "description": "the threshold for sessions in a segment (first match)"},
        "mode": {"enum": list(MODES), "description": "static; adaptive: models.thresholds; "
                 "hybrid: and an anomaly test against models.baselines"},
        "z": {"type": "number", "exclusiveMinimum": 0,
              "description": "hybrid: standard deviations from the baseline (default 2)"},
    }
    only_with = [("z", "hybrid")]
    if "target" in spec.params:  # its target is the element, never a recall target
        thresholds["target"] = params["target"]
    else:
        thresholds["target"] = _ref("recall_target")
        only_with.append(("target", "adaptive"))
    keys = tuple(dict.fromkeys((*OPERATOR_WORDS, *spec.params, *THRESHOLD_KEYS)))
    mapping = _object(
        {**{word: {**_value(kind), "description": f"{name} {op} value"}
            for word, op in OPERATOR_WORDS.items()}, **params, **thresholds},
        keys, required,
        oneOf=[{"required": [word]} for word in OPERATOR_WORDS],
        allOf=[{"if": {"required": [key]}, "then": {"properties": {"mode": {"const": mode}},
                                                  "required": ["mode"]}}
               for key, mode in only_with])
    description = f"{spec.description} ({spec.unit})"
    if required or kind is None:
        return {**mapping, "description": description}
    shorthand = {"type": "string",
                 "pattern": _whole(rf"({_SYMBOLS})\s*{_VALUE_PATTERN[kind]}"),
                 "description": f'"<operator> <value>" such as ">= {EXAMPLE_VALUE[kind]}"'}
    return {"description": description, "anyOf": [shorthand, mapping]}


def _context_value(field: str) -> dict[str, Any]:
    if field == "device":
        return {"enum": list(DEVICES)}
    if field == "country":
        return {"type": "string", "pattern": "^[A-Z]{2}$"}
    if field == "local_hour":
        return {"type": "integer", "minimum": 0, "maximum": 23}
    if field == "weekday":
        return {"enum": list(WEEKDAYS)}
    if field == "returning":
        return {"type": "boolean"}
    return {"type": "string", "minLength": 1}


def _context(field: str) -> dict[str, Any]:
    descriptions = {
        "device": "the visitor's device: " + ", ".join(DEVICES),
        "country": "the visitor's country, a two-letter code such as DE",
        "local_hour": "the visitor's local hour, 0..23",
        "weekday": "the visitor's local weekday: " + ", ".join(WEEKDAYS),
        "referrer": 'the referrer URL; with * a glob, such as "*google.*"',
        "returning": "whether the visitor has been here before",
    }
    one = _context_value(field)
    ops = ("in", "==", "!=", *CONTEXT_EXTRA_OPERATORS.get(field, ()))
    words = [w for w, op in CONTEXT_OPERATOR_WORDS.items() if op in ops]
    props = {w: ({"type": "array", "items": one, "minItems": 1} if w == "in"
                 else {"type": "string"} if w == "glob" else one) for w in words}
    mapping = _object(props, words, (), minProperties=1, maxProperties=1)
    forms: list[dict[str, Any]] = [one, mapping]
    if field != "returning":
        forms.insert(1, {"type": "array", "items": one, "minItems": 1})
        symbols = "|".join(sorted((o for o in ops if o in OPERATORS), key=len, reverse=True))
        value = r"([01]?\d|2[0-3])" if field == "local_hour" else r"\S.*"
        forms.append({"type": "string", "pattern": _whole(rf"({symbols})\s*{value}")})
    return {"description": descriptions[field], "anyOf": forms}


def _attribute() -> dict[str, Any]:
    scalar = {"type": ["string", "number", "boolean"]}
    props: dict[str, Any] = {"name": {"type": "string", "minLength": 1,
                                      "description": "the CRM attribute (context.attributes)"}}
    for word, op in CONTEXT_OPERATOR_WORDS.items():
        props[word] = ({"type": "array", "items": scalar, "minItems": 1} if op == "in"
                       else {"type": "string"} if op == "glob"
                       else {"type": "number"} if op in (">=", ">", "<=", "<") else scalar)
    return _object(props, ATTRIBUTE_KEYS, ("name",),
                   oneOf=[{"required": [w]} for w in CONTEXT_OPERATOR_WORDS],
                   description="a CRM attribute compared with a value, such as "
                               "{name: crm_tier, in: [gold, platinum]}")


def _condition(nested: bool) -> dict[str, Any]:
    props: dict[str, Any] = {name: _ref(f"signal_{name}") for name in SIGNALS}
    props.update({field: _ref(f"context_{field}") for field in CONTEXT_FIELDS})
    props["segment"] = _segment_name()
    if not nested:
        props["sustained"] = _ref("sustained")
    return {"type": "object",
            "description": "one test: a signal, a context field, a segment" +
                           ("" if nested else ", or sustained"),
            "properties": props, "additionalProperties": False,
            "minProperties": 1, "maxProperties": 1}


def _event_filter() -> dict[str, Any]:
    plain_types = [t for t in EVENT_TYPES if t != "custom"]  # a custom event needs a name
    keys = {"type": {"enum": list(EVENT_TYPES)},
            "name": {"type": "string", "minLength": 1,
                     "description": "the custom event's name (custom events only)"},
            "target": {"type": "string", "minLength": 1,
                       "description": f"a CSS selector ({', '.join(TARGETED_EVENTS)} only)"}}
    mapping = _object(keys, ON_KEYS, ("type",), allOf=[
        {"if": {"properties": {"type": {"const": "custom"}}},
         "then": {"required": ["name"]}, "else": {"not": {"required": ["name"]}}},
        {"if": {"properties": {"type": {"enum": list(TARGETED_EVENTS)}}},
         "then": {}, "else": {"not": {"required": ["target"]}}},
    ])
    return {"description": "an event: a type, or {type, name (custom), target (element)}",
            "anyOf": [{"enum": plain_types}, mapping]}


def _action(catalog: ContentCatalog | None) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "string", "minLength": 1,
                               "description": "the content id to show"}
    if catalog is not None:
        content["enum"] = list(catalog.content)
        content["enumDescriptions"] = list(catalog.content.values())  # shown by editors
        content["description"] = f"the content id to show (from {Path(catalog.file).name})"
    keys = {
        "content": content,
        "tier": {"enum": list(TIERS),
                 "description": "immediate: show now; queued: hold at the edge for delay; "
                                "predictive: a hint to prefetch (not counted by fatigue)"},
        "delay": _duration(),
        "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY,
                     "description": "higher first when more actions fire than are shown"},
        "channel": {"enum": list(CHANNELS),
                    "description": "page: the visitor's answer (default); push, email, "
                                   "webhook: sent by the edge to the channel sink when due"},
        "template": {"type": "string", "minLength": 1, "maxLength": MAX_TEMPLATE,
                     "description": "the channel's template id (push, email, webhook)"},
    }
    leaves = [c for c in CHANNELS if c != "page"]
    return _object(keys, ACTION_KEYS, ("content",), allOf=[
        {"if": {"properties": {"tier": {"const": "queued"}}, "required": ["tier"]},
         "then": {"required": ["delay"]}},
        {"if": {"properties": {"channel": {"enum": leaves}}, "required": ["channel"]},
         "then": {"required": ["template"]}, "else": {"not": {"required": ["template"]}}},
    ])


def _cap() -> dict[str, Any]:
    keys = {
        "per_session": {"type": "integer", "minimum": 1,
                        "description": "at most this many times per session (default: no limit)"},
        "per_page": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "unlimited"}],
                     "description": "at most this many times per page view (default 1)"},
        "cooldown": _duration("at least this long between two firings"),
    }
    return _object(keys, CAP_KEYS)


def _journey() -> dict[str, Any]:
    keys = {"within": _duration("fire only this long after the session started"),
            "by_segment": {"type": "object", "propertyNames": {"pattern": _NAME_PATTERN},
                           "additionalProperties": _duration(), "minProperties": 1}}
    return {"description": "fire only early in the session",
            "anyOf": [_duration(), _object(keys, JOURNEY_KEYS, ("within",))]}


def _when(item: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(item), "description": "conditions that must all hold"}


def _trigger() -> dict[str, Any]:
    keys = {
        "id": {"type": "string", "pattern": _NAME_PATTERN,
               "description": "unique across all packs: lowercase letters, digits, - and _"},
        "description": {"type": "string"},
        "page": {"description": "where the trigger applies (default: every page)",
                 "anyOf": [_ref("page_glob"),
                           {"type": "array", "items": _ref("page_glob"), "minItems": 1}]},
        "on": {**_ref("event_filter")},
        "segment": {**_segment_name(), "description": "fire only for sessions in this segment"},
        "when": _when("condition"),
        "consecutive": {"type": "integer", "minimum": 1, "maximum": MAX_CONSECUTIVE,
                        "description": "fire only once the conditions held at this many "
                                       "evaluations in a row"},
        "group": {"type": "string", "pattern": _NAME_PATTERN,
                  "description": "at most one action per group per decision"},
        "journey": _ref("journey"),
        "rollout": _percent("the share of sessions the trigger exists for (default 100%)"),
        "holdout": _percent("the share of sessions whose action is withheld (default 0%)"),
        "explore": {"type": "string", "pattern": _whole(_EXPLORE_PERCENT),
                    "description": "triggers with a mode: adaptive condition only: the share of "
                                   "sessions where those conditions keep their static value, "
                                   f"for unbiased labels (0% to {MAX_EXPLORE}%, default "
                                   f"{DEFAULT_EXPLORE}%)",
                    "examples": [f"{DEFAULT_EXPLORE}%", "10%"]},
        "salt": {"type": "string", "minLength": 1,
                 "description": "changes which sessions fall in the rollout and holdout"},
        "action": _ref("action"),
        "cap": _ref("cap"),
    }
    return _object(keys, TRIGGER_KEYS, ("id", "action"))


def _sequence() -> dict[str, Any]:
    step_keys = {
        "id": {"type": "string", "pattern": _NAME_PATTERN,
               "description": "unique within the sequence; fires as <sequence>/<step>"},
        "description": {"type": "string"},
        "after": _duration("due this long after the sequence entered the step"),
        "timeout": _duration("end the sequence when the step waited this long past due"),
        "when": _when("condition"),
        "action": _ref("action"),
    }
    keys = {
        "id": {"type": "string", "pattern": _NAME_PATTERN,
               "description": "unique across all packs, with the trigger ids"},
        "description": {"type": "string"},
        "start": _ref("event_filter"),
        "exit": {"anyOf": [_ref("event_filter"),
                           {"type": "array", "items": _ref("event_filter"), "minItems": 1}]},
        "steps": {"type": "array", "minItems": 1,
                  "items": _object(step_keys, STEP_KEYS, ("id", "action"))},
    }
    return _object(keys, SEQUENCE_KEYS, ("id", "start", "steps"))


def _settings() -> dict[str, Any]:
    limit = {"type": "integer", "minimum": 1}
    fatigue = _object({"per_session": {**limit, "description": "actions per session"},
                       "per_minute": {**limit, "description": "actions per minute"},
                       "quiet_after_dismiss": _duration("no action this long after a dismiss"),
                       "channels": {"enum": list(FATIGUE_CHANNELS),
                                    "description": "shared (default): one budget for page, "
                                                   "push, email and webhook; separate: one "
                                                   "per channel"}},
                      FATIGUE_KEYS)
    keys = {"max_actions": {"type": "integer", "minimum": 1, "maximum": MAX_ACTIONS_LIMIT,
                            "description": "at most this many actions per decision (default 3)"},
            "fatigue": fatigue,
            "experiment": _object(
                {"salt": {"type": "string", "minLength": 1,
                          "description": "change it to draw new arms (default experiment)"},
                 "adaptive": _percent("sessions whose mode: adaptive conditions use learned "
                                      "thresholds"),
                 "static": _percent("sessions whose mode: adaptive conditions use their "
                                    "static value"),
                 "holdout": _percent("sessions shown no action at all")},
                EXPERIMENT_KEYS,
                description="the adaptive-threshold experiment; the arms add up to 100% "
                            "(a missing arm is 0%); one pack at most"),
            "report_features": {"type": "boolean",
                                "description": "decisions report the features they saw to the "
                                               "decision log even without adaptive or intent "
                                               "conditions (any pack saying true)"}}
    return _object(keys, SETTINGS_KEYS)


def _segments() -> dict[str, Any]:
    props: dict[str, Any] = {f: _ref(f"context_{f}") for f in CONTEXT_FIELDS}
    props["attribute"] = {"anyOf": [_ref("context_attribute"),
                                    {"type": "array", "items": _ref("context_attribute"),
                                     "minItems": 1}]}
    return {"type": "object", "description": "named context tests, usable across packs",
            "propertyNames": {"pattern": _NAME_PATTERN, "not": {"const": ANY_SEGMENT}},
            "additionalProperties": _object(props, CONTEXT_FIELDS, (), minProperties=1)}


def _models() -> dict[str, Any]:
    features = {"type": "object", "propertyNames": {"enum": list(INTENT_FEATURES)},
                "minProperties": 1}
    intent = _object({"bias": {"type": "number"},
                      "weights": {**features, "additionalProperties": {"type": "number"}},
                      "scale": {**features, "additionalProperties": {"type": "number",
                                                                     "exclusiveMinimum": 0}}},
                     INTENT_KEYS, ("weights",))
    number_or_unit = {"type": ["number", "string"]}
    spread = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}]}
    stats = _object({"mean": number_or_unit, "std": spread}, STATS_KEYS, STATS_KEYS)
    baseline = _object({"mean": number_or_unit, "std": spread,
                        "by_segment": {"type": "object",
                                       "propertyNames": {"pattern": _NAME_PATTERN},
                                       "additionalProperties": stats}},
                       BASELINE_KEYS, STATS_KEYS)
    session_features = {"enum": list(SESSION_FEATURES)}
    per_feature = {"type": "object", "propertyNames": session_features}
    learned = _object(
        {"features": {"type": "array", "items": session_features, "minItems": 1,
                      "uniqueItems": True, "description": "the session features it reads"},
         "transform": {**per_feature, "additionalProperties": {"enum": list(TRANSFORMS)}},
         "mean": {**per_feature, "additionalProperties": {"type": "number"}},
         "scale": {**per_feature, "additionalProperties": {"type": "number",
                                                           "exclusiveMinimum": 0}},
         "weights": {**per_feature, "additionalProperties": {"type": "number"}},
         "bias": {"type": "number"},
         "calibration": _object({"a": {"type": "number"}, "b": {"type": "number"}},
                                CALIBRATION_KEYS),
         "trained": {"description": "free-form provenance, ignored by the edge"}},
        LEARNED_KEYS, LEARNED_REQUIRED,
        description="p = 1 / (1 + exp(-(a * z + b))), z = bias + sum(weight * "
                    "(transform(x) - mean) / scale)")
    keys = {
        "intent": {**intent, "description": "the intent model every trigger uses"},
        "intent_by_trigger": {"type": "object", "additionalProperties": intent,
                              "description": "intent models for single triggers, by id"},
        "baselines": {"type": "object", "propertyNames": {"enum": list(SIGNALS)},
                      "additionalProperties": baseline,
                      "description": "cohort mean and std per signal (hybrid, cohort spikes)"},
        "thresholds": {"type": "object",
                       "propertyNames": {"pattern": f"^{MODEL_KEY.pattern}$"},
                       "additionalProperties": {
                           "type": "object", "minProperties": 1,
                           "additionalProperties": number_or_unit},
                       "description": 'adaptive thresholds: {"<trigger>#<n>": {"*": 0.7, '
                                      'mobile: 0.55}}'},
        "learned": {"type": "object",
                    "propertyNames": {"pattern": f"^{MODEL_KEY.pattern}$"},
                    "additionalProperties": {"type": "object", "minProperties": 1,
                                             "propertyNames": {"anyOf": [
                                                 {"pattern": _NAME_PATTERN},
                                                 {"const": ANY_SEGMENT}]},
                                             "additionalProperties": learned},
                    "description": "learned intent models of adaptive intent conditions: "
                                   '{"<trigger>#<n>": {"*": MODEL, mobile: MODEL}}'},
    }
    return _object(keys, MODELS_KEYS)


def pack_schema(catalog: ContentCatalog | None = None) -> dict[str, Any]:
    """The JSON Schema (draft-07) of one rule pack file."""
    keys = {
        "pack": {"type": "string", "pattern": f"^{PACK_NAME.pattern}$",
                 "not": {"enum": sorted({Path(f).stem for f in CATALOG_FILES})},
                 "description": "the pack's name: lowercase letters, digits and -"},
        "description": {"type": "string"},
        "settings": _ref("settings"),
        "segments": _ref("segments"),
        "models": _ref("models"),
        "triggers": {"type": "array", "items": _ref("trigger"), "minItems": 1},
        "sequences": {"type": "array", "items": _ref("sequence"), "minItems": 1},
    }
    return {
        "$schema": DRAFT,
        "title": "Edge trigger engine rule pack",
        "description": "Generated by `trigger-engine schema`; do not edit by hand.",
        **_object(keys, PACK_KEYS, ("pack",),
                  anyOf=[{"required": [k]} for k in CONTENT_KEYS]),
        "definitions": {
            "trigger": _trigger(),
            "sequence": _sequence(),
            "page_glob": _page_glob(),
            "event_filter": _event_filter(),
            "condition": _condition(nested=False),
            "inner_condition": _condition(nested=True),
            "recall_target": _recall_target(),
            "sustained": _object({"for": _duration("how long the inner conditions must hold"),
                                  "when": {**_when("inner_condition"), "minItems": 1}},
                                 SUSTAINED_KEYS, SUSTAINED_KEYS),
            **{f"signal_{name}": _signal(name) for name in SIGNALS},
            **{f"context_{field}": _context(field) for field in CONTEXT_FIELDS
               if field != "attribute"},
            "context_attribute": _attribute(),
            "journey": _journey(),
            "action": _action(catalog),
            "cap": _cap(),
            "settings": _settings(),
            "segments": _segments(),
            "models": _models(),
        },
    }


def schema_text(catalog: ContentCatalog | None = None) -> str:
    """The schema as the text committed at rules/schema.json."""
    return json.dumps(pack_schema(catalog), indent=2, ensure_ascii=False) + "\n"
