"""The JSON Schema of rule packs, for editors (yaml-language-server): completion and squiggles.

It is generated from the validator's own tables (the keys it allows, the names it accepts)
and the decision core's vocabulary (signals, event types, operators, tiers), plus the
content catalog when there is one, so the schema cannot drift from what `validate`
accepts without `tests/test_schema.py` noticing. The validator stays the authority: the
schema cannot see everything (a duration that is not a whole number of milliseconds, trigger
ids unique across packs), and it accepts only the usual spellings of numbers.

Draft-07, the draft editors support best.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_module.core.catalog import EVENT_TYPES, OPERATOR_WORDS, OPERATORS, SIGNALS, TIERS

from .content_catalog import ContentCatalog
from .validate import (
    ACTION_KEYS,
    CAP_KEYS,
    CATALOG_FILES,
    MAX_PRIORITY,
    MIN_PRIORITY,
    ON_KEYS,
    PACK_KEYS,
    PACK_NAME,
    TARGETED_EVENTS,
    TRIGGER_ID,
    TRIGGER_KEYS,
)
from .values import DURATION_PATTERN

DRAFT = "http://json-schema.org/draft-07/schema#"
_NUMBER = r"(\d+(\.\d+)?|\.\d+)"
_RATIO = r"(0(\.\d+)?|1(\.0+)?|\.\d+|(100(\.0+)?|\d{1,2}(\.\d+)?|\.\d+)\s*%)"
_VALUE_PATTERN = {"duration": DURATION_PATTERN, "ratio": _RATIO, "number": _NUMBER}
_VALUE_HINT = {"duration": "a duration such as 3s or 500ms",
               "ratio": "a fraction 0..1 such as 0.78, or a percentage such as 78%",
               "number": "a number >= 0"}
_EXAMPLE = {"duration": "3s", "ratio": "78%", "number": "800"}
_SYMBOLS = "|".join(sorted(OPERATORS, key=len, reverse=True))  # ">=" before ">"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _whole(pattern: str) -> str:
    return rf"^\s*{pattern}\s*$"


def _duration() -> dict[str, Any]:
    return {"type": "string", "pattern": _whole(DURATION_PATTERN),
            "description": _VALUE_HINT["duration"] + " (units: ms, s, m, h)",
            "examples": ["500ms", "3s", "2m"]}


def _page_glob() -> dict[str, Any]:
    return {"type": "string", "pattern": r"^(\*|/[^?#]*)$",
            "description": "a URL path glob: /pricing, /blog/*, or \"*\" for any page"}


def _mapping_value(kind: str) -> dict[str, Any]:
    text = {"type": "string", "pattern": _whole(_VALUE_PATTERN[kind])}
    if kind == "duration":
        return {**text, "description": _VALUE_HINT[kind]}
    numeric: dict[str, Any] = {"type": "number", "minimum": 0}
    if kind == "ratio":
        numeric["maximum"] = 1
    return {"description": _VALUE_HINT[kind], "anyOf": [numeric, text]}


def _signal(name: str) -> dict[str, Any]:
    spec = SIGNALS[name]
    params: dict[str, Any] = {"window": _duration(),
                              "target": {"type": "string", "minLength": 1,
                                         "description": 'a CSS selector such as "#cta"'}}
    mapping: dict[str, Any] = {
        "type": "object",
        "properties": {
            **{word: {**_mapping_value(spec.kind), "description": f"{name} {op} value"}
               for word, op in OPERATOR_WORDS.items()},
            **{p: params[p] for p in spec.params},
        },
        "additionalProperties": False,
        "oneOf": [{"required": [word]} for word in OPERATOR_WORDS],
    }
    if spec.required:
        mapping["required"] = list(spec.required)
    description = f"{spec.description} ({spec.unit})"
    if spec.required:
        return {**mapping, "description": description}
    shorthand = {"type": "string",
                 "pattern": _whole(rf"({_SYMBOLS})\s*{_VALUE_PATTERN[spec.kind]}"),
                 "description": f'"<operator> <value>" such as ">= {_EXAMPLE[spec.kind]}"'}
    return {"description": description, "anyOf": [shorthand, mapping]}


def _on() -> dict[str, Any]:
    plain_types = [t for t in EVENT_TYPES if t != "custom"]  # a custom event needs a name
    keys = {"type": {"enum": list(EVENT_TYPES)},
            "name": {"type": "string", "minLength": 1,
                     "description": "the custom event's name (custom events only)"},
            "target": {"type": "string", "minLength": 1,
                       "description": f"a CSS selector ({', '.join(TARGETED_EVENTS)} only)"}}
    mapping = {
        "type": "object",
        "properties": {k: keys[k] for k in ON_KEYS},
        "required": ["type"],
        "additionalProperties": False,
        "allOf": [
            {"if": {"properties": {"type": {"const": "custom"}}},
             "then": {"required": ["name"]}, "else": {"not": {"required": ["name"]}}},
            {"if": {"properties": {"type": {"enum": list(TARGETED_EVENTS)}}},
             "then": {}, "else": {"not": {"required": ["target"]}}},
        ],
    }
    return {"description": "fire at a matching event instead of as soon as the conditions hold",
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
                 "description": "immediate: show now; queued: hold at the edge for delay"},
        "delay": _duration(),
        "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY,
                     "description": "higher first when more actions fire than are shown"},
    }
    return {
        "type": "object",
        "properties": {k: keys[k] for k in ACTION_KEYS},
        "required": ["content"],
        "additionalProperties": False,
        "if": {"properties": {"tier": {"const": "queued"}}, "required": ["tier"]},
        "then": {"required": ["delay"]},
    }


def _cap() -> dict[str, Any]:
    keys = {
        "per_session": {"type": "integer", "minimum": 1,
                        "description": "at most this many times per session (default: no limit)"},
        "per_page": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "unlimited"}],
                     "description": "at most this many times per page view (default 1)"},
        "cooldown": {**_duration(), "description": "at least this long between two firings"},
    }
    return {"type": "object", "properties": {k: keys[k] for k in CAP_KEYS},
            "additionalProperties": False}


def _trigger() -> dict[str, Any]:
    keys = {
        "id": {"type": "string", "pattern": f"^{TRIGGER_ID.pattern}$",
               "description": "unique across all packs: lowercase letters, digits, - and _"},
        "description": {"type": "string"},
        "page": {"description": "where the trigger applies (default: every page)",
                 "anyOf": [_ref("page_glob"),
                           {"type": "array", "items": _ref("page_glob"), "minItems": 1}]},
        "on": _ref("on"),
        "when": {"type": "array", "items": _ref("condition"),
                 "description": "conditions that must all hold"},
        "action": _ref("action"),
        "cap": _ref("cap"),
    }
    return {"type": "object", "properties": {k: keys[k] for k in TRIGGER_KEYS},
            "required": ["id", "action"], "additionalProperties": False}


def pack_schema(catalog: ContentCatalog | None = None) -> dict[str, Any]:
    """The JSON Schema (draft-07) of one rule pack file."""
    keys = {
        "pack": {"type": "string", "pattern": f"^{PACK_NAME.pattern}$",
                 "not": {"enum": sorted({Path(f).stem for f in CATALOG_FILES})},
                 "description": "the pack's name: lowercase letters, digits and -"},
        "description": {"type": "string"},
        "triggers": {"type": "array", "items": _ref("trigger"), "minItems": 1},
    }
    condition = {
        "type": "object",
        "description": "one signal and its test",
        "properties": {name: _ref(f"signal_{name}") for name in SIGNALS},
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
    }
    return {
        "$schema": DRAFT,
        "title": "Edge trigger engine rule pack",
        "description": "Generated by `trigger-engine schema`; do not edit by hand.",
        "type": "object",
        "properties": {k: keys[k] for k in PACK_KEYS},
        "required": ["pack", "triggers"],
        "additionalProperties": False,
        "definitions": {
            "trigger": _trigger(),
            "page_glob": _page_glob(),
            "on": _on(),
            "condition": condition,
            **{f"signal_{name}": _signal(name) for name in SIGNALS},
            "action": _action(catalog),
            "cap": _cap(),
        },
    }


def schema_text(catalog: ContentCatalog | None = None) -> str:
    """The schema as the text committed at rules/schema.json."""
    return json.dumps(pack_schema(catalog), indent=2, ensure_ascii=False) + "\n"
