"""docs/rules-reference.md: every YAML example in it is a whole pack that compiles without
problems, satisfies the editor schema and shows only content from the catalog; together
the examples use every part of the language."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from control_plane.rulepack import compile_snapshot, load_catalog, load_pack, unknown_content
from control_plane.rulepack.source import parse_yaml, plain
from control_plane.rulepack.validate import PACK_KEYS, TRIGGER_KEYS
from control_plane.rulepack.validate_conditions import CONDITION_WORDS
from edge_module.core.catalog import CHANNELS, TIERS
from tests.reference_examples import EXAMPLES, IDS, REFERENCE

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "rules" / "catalog.yaml")


@pytest.mark.parametrize("heading, text", EXAMPLES, ids=IDS)
def test_each_example_compiles_without_problems(heading, text):
    pack = load_pack(text, f"{heading}.yaml")
    snapshot = compile_snapshot([pack], "doc", 0)
    assert snapshot["triggers"] or snapshot["sequences"]


@pytest.mark.parametrize("heading, text", EXAMPLES, ids=IDS)
def test_each_example_shows_only_content_from_the_catalog(heading, text):
    assert unknown_content([load_pack(text, f"{heading}.yaml")], CATALOG) == []


@pytest.mark.parametrize("heading, text", EXAMPLES, ids=IDS)
def test_each_example_satisfies_the_editor_schema(heading, text):
    schema = json.loads((ROOT / "rules" / "schema.json").read_text())
    root, problems = parse_yaml(text, "x.yaml")
    assert root is not None and not problems
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(plain(root))]
    assert errors == []


def test_every_section_has_its_own_example():
    sections = re.findall(r"^## (.+)$", REFERENCE.read_text(), re.MULTILINE)
    with_example = {heading for heading, _ in EXAMPLES}
    assert [s for s in sections if s not in with_example] == ["Contents", "Values", "Problems"]


def test_the_examples_use_every_word_of_the_language():
    used: set[str] = set()
    for _, text in EXAMPLES:
        root, _ = parse_yaml(text, "x.yaml")
        stack = [plain(root)]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                used.update(value)
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str):
                used.add(value)
    words = {*PACK_KEYS, *TRIGGER_KEYS, *CONDITION_WORDS, *TIERS, *CHANNELS, "template",
             "separate", "by_segment", "mode",
             "adaptive", "hybrid", "z", "baseline", "cohort", "exit", "timeout", "fatigue",
             "max_actions", "intent_by_trigger", "baselines", "thresholds", "experiment",
             "static"}
    assert sorted(words - used) == []
