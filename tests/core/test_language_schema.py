"""The editor schema (rules/schema.json) on the full language: a pack using every construct
satisfies it, and the usual mistakes in each new construct fail it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest

from control_plane.rulepack import load_pack
from tests.cases_language import CART_RECOVERY
from tests.language_factories import as_json, schema_validator

RULES = Path(__file__).resolve().parents[2] / "rules"

EVERYTHING = """
pack: everything
settings:
  max_actions: 3
  fatigue: {per_session: 5, per_minute: 2, quiet_after_dismiss: 60s}
segments:
  mobile: {device: mobile}
  dach_evening: {country: [DE, AT, CH], local_hour: ">= 18"}
  gold: {attribute: {name: crm_tier, in: [gold, platinum]}}
  vip: {attribute: [{name: tier, eq: gold}, {name: ltv, gte: 1000}]}
  search_returning: {returning: true, referrer: "*google.*"}
models:
  intent: {bias: -3.0, weights: {dwell: 1.2, scroll_depth: 2.0}, scale: {dwell: 10000}}
  intent_by_trigger: {x: {bias: 1, weights: {pages: 0.5}}}
  baselines: {scroll_velocity: {mean: 400, std: 150, by_segment: {mobile: {mean: 600, std: 200}}}}
  thresholds: {"x#4": {"*": 0.7, mobile: 55%}}
triggers:
  - id: x
    page: /pricing
    on: {type: click, target: "#buy"}
    segment: mobile
    when:
      - dwell: ">= 3s"
      - session_time: "<= 120s"
      - scroll_depth: {gte: 78%, by_segment: {mobile: 60%}}
      - scroll_position: ">= 50%"
      - scroll_depth: {gte: 0.78, mode: adaptive}
      - scroll_velocity: {gte: 800, window: 2s, mode: hybrid, z: 2}
      - velocity_spike: {gte: 2.5, window: 3s, baseline: cohort}
      - mouse_entropy: {gte: 2.2, window: 2s}
      - hover: {target: "#cta", gte: 900ms}
      - pages: ">= 3"
      - focus_to_input: {gte: 4s, target: "#email"}
      - input_to_submit: "<= 1s"
      - intent: ">= 0.7"
      - count: {event: click, window: 10s, gte: 3}
      - avg: {field: hover.duration_ms, window: 30s, gte: 500ms}
      - since: {event: {type: custom, name: add_to_cart}, lte: 60s}
      - absent: {event: input, after: focus, gte: 5s}
      - sustained: {for: 5s, when: [{scroll_depth: ">= 80%"}, {device: mobile}]}
      - device: [mobile, tablet]
      - local_hour: ">= 18"
      - weekday: [sat, sun]
      - referrer: "*google*"
      - returning: true
      - attribute: {name: ltv, gte: 100}
      - segment: gold
    consecutive: 2
    group: offers
    journey: {within: 120s, by_segment: {mobile: 60s}}
    rollout: 50%
    holdout: 10%
    salt: "q4"
    action: {content: discount-nudge-10, tier: predictive, delay: 3s, priority: 10}
    cap: {per_session: 1, per_page: 1, cooldown: 30s}
""" + CART_RECOVERY.lstrip("\n").replace(
    # the schema offers only the catalog's content ids
    "time-limited-offer", "free-shipping-banner")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return schema_validator()


def test_a_pack_using_every_construct_is_valid_and_satisfies_the_schema(validator):
    load_pack(textwrap.dedent(EVERYTHING), "everything.yaml")
    assert [e.message for e in validator.iter_errors(as_json(EVERYTHING))] == []


def test_a_pack_of_only_segments_satisfies_the_schema(validator):
    assert not list(validator.iter_errors(as_json("pack: s\nsegments: {m: {device: mobile}}\n")))


@pytest.mark.parametrize("old, new", [
    ("segment: mobile\n", "segment: Mobile Users\n"),
    ("consecutive: 2", "consecutive: 21"),
    ("group: offers", "group: Offers!"),
    ("rollout: 50%", "rollout: 50"),
    ("holdout: 10%", "holdout: 110%"),
    ("journey: {within: 120s", "journey: {withn: 120s"),
    ("tier: predictive", "tier: predictve"),
    ('pages: ">= 3"', 'pages: ">= lots"'),
    ('intent: ">= 0.7"', "intent: {gte: 1.5}"),
    ("mouse_entropy: {gte: 2.2", "mouse_entropy: {gte: 4"),
    ("count: {event: click, window: 10s, gte: 3}", "count: {window: 10s, gte: 3}"),
    ("avg: {field: hover.duration_ms", "avg: {field: hover.duration"),
    ("since: {event: {type: custom, name: add_to_cart}", "since: {event: {type: custom}"),
    ("absent: {event: input, after: focus, gte: 5s}", "absent: {event: input, gte: 5s}"),
    ("baseline: cohort", "baseline: cohrt"),
    ("mode: hybrid, z: 2", "mode: adaptive, z: 2"),
    ("mode: adaptive}", "mode: learned}"),
    ("sustained: {for: 5s, when: [{scroll_depth", ("sustained: {for: 5s, when: [{sustained: "
                                                  "{for: 1s, when: []}}, {scroll_depth")),
    ("device: [mobile, tablet]", "device: [mobile, phone]"),
    ('local_hour: ">= 18"\n      - weekday', 'local_hour: ">= 25"\n      - weekday'),
    ("weekday: [sat, sun]", "weekday: [saturday]"),
    ("returning: true\n      - attribute", "returning: maybe\n      - attribute"),
    ("attribute: {name: ltv, gte: 100}", "attribute: {name: ltv}"),
    ("country: [DE, AT, CH]", "country: [de]"),
    ("mobile: {device: mobile}", "mobile: {devce: mobile}"),
    ("max_actions: 3", "max_actions: 11"),
    ("per_minute: 2", "per_minute: 0"),
    ("weights: {dwell: 1.2", "weights: {dwel: 1.2"),
    ("std: 150", "sd: 150"),
    ("std: 150", "std: 0"),
    ('"x#4"', '"x"'),
    ("start: {type: custom, name: cart_abandon}", "start: {type: custom}"),
    ("- {id: reminder, after: 3s, action: {content: cart-reminder, priority: 5}}",
     "- {id: reminder, after: 3s}"),
    ("timeout: 60s", "timeout: 60"),
])
def test_mistakes_in_new_constructs_fail_the_schema(old, new, validator):
    assert old in EVERYTHING, old
    assert list(validator.iter_errors(as_json(EVERYTHING.replace(old, new, 1)))), new
