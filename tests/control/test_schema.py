"""The rule packs' JSON Schema (rules/schema.json): fresh, and in step with the validator."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from control_plane.rulepack import load_catalog
from control_plane.rulepack.schema import pack_schema, schema_text
from control_plane.rulepack.validate import ON_KEYS, PACK_KEYS, SEQUENCE_KEYS, TRIGGER_KEYS
from control_plane.rulepack.validate_actions import ACTION_KEYS, CAP_KEYS
from control_plane.rulepack.validate_conditions import CONDITION_WORDS
from control_plane.rulepack.validate_models import MODELS_KEYS
from tests.language_factories import as_json, schema_validator

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
SHIPPED = sorted(p for p in RULES.glob("*.yaml")
                 if not p.name.endswith(".test.yaml") and p.name != "catalog.yaml")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return schema_validator()


def test_committed_schema_is_what_the_generator_writes():
    committed = (RULES / "schema.json").read_text()
    fresh = schema_text(load_catalog(RULES / "catalog.yaml"))
    assert committed == fresh, "rules/schema.json is stale: run trigger-engine schema -o " \
                               "rules/schema.json"


def test_schema_is_a_valid_draft_7_schema():
    jsonschema.Draft7Validator.check_schema(pack_schema())


def test_shipped_packs_refer_to_the_schema():
    for path in SHIPPED:
        assert path.read_text().startswith("# yaml-language-server: $schema=./schema.json\n")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_packs_satisfy_the_schema(path, validator):
    errors = [e.message for e in validator.iter_errors(as_json(path.read_text()))]
    assert errors == []


def test_schema_allows_exactly_the_keys_the_validator_allows():
    schema = pack_schema()
    defs = schema["definitions"]
    assert list(schema["properties"]) == list(PACK_KEYS)
    assert list(defs["trigger"]["properties"]) == list(TRIGGER_KEYS)
    assert list(defs["event_filter"]["anyOf"][1]["properties"]) == list(ON_KEYS)
    assert list(defs["action"]["properties"]) == list(ACTION_KEYS)
    assert list(defs["cap"]["properties"]) == list(CAP_KEYS)
    assert list(defs["condition"]["properties"]) == list(CONDITION_WORDS)
    assert list(defs["inner_condition"]["properties"]) == list(CONDITION_WORDS[:-1])
    assert list(defs["sequence"]["properties"]) == list(SEQUENCE_KEYS)
    assert list(defs["models"]["properties"]) == list(MODELS_KEYS)


def test_schema_offers_the_catalog_content_ids():
    content = pack_schema(load_catalog(RULES / "catalog.yaml"))["definitions"]["action"][
        "properties"]["content"]
    assert {"discount-nudge-10", "cart-reminder"} <= set(content["enum"])


GOOD = """
    pack: good
    triggers:
      - id: t
        page: [/pricing, "/blog/*"]
        on: {type: click, target: "#buy"}
        when:
          - dwell: ">=3s"
          - scroll_depth: {gte: 0.5}
          - scroll_velocity: {lt: 800, window: 2s}
          - hover: {target: "#cta", gt: 900ms}
        action: {content: cart-reminder, tier: queued, delay: 1.5s, priority: -5}
        cap: {per_session: 2, per_page: unlimited, cooldown: 30s}
      - id: by-email
        action: {content: cart-reminder, channel: email, template: cart-email}
"""


def test_a_pack_using_every_construct_satisfies_the_schema(validator):
    assert [e.message for e in validator.iter_errors(as_json(GOOD))] == []


@pytest.mark.parametrize("body", [
    "when: [{scrol_depth: '>= 78%'}]\n    action: {content: cart-reminder}",
    "when: [{scroll_depth: '>= 1.4'}]\n    action: {content: cart-reminder}",
    "when: [{dwell: '>= 3 secs'}]\n    action: {content: cart-reminder}",
    "when: [{dwell: '=> 3s'}]\n    action: {content: cart-reminder}",
    "when: [{dwell: {gte: 1s, lt: 5s}}]\n    action: {content: cart-reminder}",
    "when: [{hover: '>= 900ms'}]\n    action: {content: cart-reminder}",
    "on: pageview\n    action: {content: cart-reminder}",
    "on: {type: custom}\n    action: {content: cart-reminder}",
    "on: {type: page_view, target: '#x'}\n    action: {content: cart-reminder}",
    "page: pricing\n    action: {content: cart-reminder}",
    "actoin: {content: cart-reminder}",
    "action: {content: cart-reminder, tier: queued}",
    "action: {content: cart-reminder, priority: 5000}",
    "action: {content: cart-remindr}",
    "action: {content: cart-reminder}\n    cap: {per_session: 0}",
    "action: {content: cart-reminder, channel: email}",
    "action: {content: cart-reminder, template: cart-email}",
])
def test_malformed_packs_fail_the_schema(body, validator):
    pack = as_json(f"pack: bad\ntriggers:\n  - id: t\n    {body}\n")
    assert list(validator.iter_errors(pack)), body


def test_the_catalogs_reserved_name_fails_the_schema(validator):
    pack = as_json("pack: catalog\ntriggers: [{id: t, action: {content: cart-reminder}}]\n")
    assert list(validator.iter_errors(pack))
