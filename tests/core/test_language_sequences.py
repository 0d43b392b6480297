"""Sequences: a start event, exit events and timed steps, each step with its conditions and
action; ids shared with triggers, content checked against the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.rulepack import load_catalog, load_pack, unknown_content
from tests.cases_language import CART_RECOVERY
from tests.language_factories import (
    compiled,
    dedent,
    only_compile_problem,
    only_problem,
    pack,
    trigger,
)

RULES = Path(__file__).resolve().parents[2] / "rules"
# The offer step with an adaptive condition in place of the sustained one.
ADAPTIVE_OFFER = CART_RECOVERY.replace(
    'when: [{sustained: {for: 5s, when: [{scroll_depth: "> 80%"}]}}]',
    "when: [{scroll_depth: {gt: 0.8, mode: adaptive}}]")


def with_sequence(sequence: str = CART_RECOVERY, *triggers: str) -> str:
    return pack(*triggers, top=sequence)


def test_a_sequence_compiles_to_the_documented_shape():
    assert compiled(with_sequence())["sequences"] == [{
        "id": "cart-recovery", "pack": "test-pack",
        "start": {"type": "custom", "name": "cart_abandon", "target": None},
        "exit": [{"type": "custom", "name": "purchase", "target": None}],
        "steps": [
            {"id": "reminder", "after_ms": 3000, "when": [], "timeout_ms": None,
             "action": {"content": "cart-reminder", "tier": "immediate", "delay_ms": 0,
                        "priority": 5}},
            {"id": "offer", "after_ms": 5000,
             "when": [{"sustained": {"for_ms": 5000, "when": [
                 {"signal": "scroll_depth", "op": ">", "value": 0.8}]}}],
             "timeout_ms": 60_000,
             "action": {"content": "time-limited-offer", "tier": "immediate", "delay_ms": 0,
                        "priority": 6}},
        ],
    }]


def test_a_pack_of_only_sequences_has_no_triggers():
    snap = compiled(with_sequence())
    assert snap["triggers"] == [] and snap["packs"][0]["triggers"] == 0


def test_a_single_exit_event_compiles_to_a_list_and_none_to_an_empty_one():
    one = CART_RECOVERY.replace("exit: [{type: custom, name: purchase}]", "exit: submit")
    none = CART_RECOVERY.replace("    exit: [{type: custom, name: purchase}]\n", "")
    assert compiled(with_sequence(one))["sequences"][0]["exit"] == [
        {"type": "submit", "name": None, "target": None}]
    assert compiled(with_sequence(none))["sequences"][0]["exit"] == []


def test_an_adaptive_condition_in_a_step_is_keyed_by_sequence_and_step():
    step = compiled(with_sequence(ADAPTIVE_OFFER))["sequences"][0]["steps"][1]
    assert step["when"][0]["model_key"] == "cart-recovery/offer#0"


def test_a_step_threshold_in_models_is_checked_against_the_step():
    top = ADAPTIVE_OFFER + 'models:\n  thresholds: {"cart-recovery/offer#0": {"*": 0.6}}\n'
    assert compiled(with_sequence(top))["models"]["thresholds"] == {
        "cart-recovery/offer#0": {"*": 0.6}}


@pytest.mark.parametrize("old, new, message, suggestion, line", [
    ("id: offer", "id: reminder", "duplicate step id 'reminder' (first defined at line 7)", None,
     8),
    ("start: {type: custom, name: cart_abandon}", "start: cart_abandon",
     "unknown event type 'cart_abandon'", "{type: custom, name: cart_abandon}", 4),
    ("    start: {type: custom, name: cart_abandon}\n", "",
     "the sequence is missing the required key 'start'", None, 3),
    ("exit: [{type: custom, name: purchase}]", "exit: []", "exit is an empty list", None, 5),
    ("timeout: 60s", "timeout: 0s", "timeout is 0", None, 10),
    ("after: 3s", "aftr: 3s", "unknown key 'aftr' in the step", "after", 7),
    (", action: {content: cart-reminder, priority: 5}}", "}",
     "the step is missing the required key 'action'", None, 7),
    ("id: offer", "id: Offer 2", "step id 'Offer 2' is not allowed", "offer-2", 8),
    ('"> 80%"', '"> 180%"', "the scroll_depth condition: '180%' is outside 0% to 100%", None,
     11),
    ("    start:", "    strat:", "unknown key 'strat' in the sequence", "start", 4),
])
def test_malformed_sequences_are_reported(old, new, message, suggestion, line):
    assert old in CART_RECOVERY
    problem = only_problem(with_sequence(CART_RECOVERY.replace(old, new)))
    assert (problem.message, problem.suggestion, problem.line) == (message, suggestion, line)


def test_problems_in_a_step_name_the_step_as_it_fires():
    problem = only_problem(with_sequence(CART_RECOVERY.replace("timeout: 60s", "timeout: 0s")))
    assert problem.trigger == "cart-recovery/offer"


def test_problems_in_a_sequence_name_the_sequence():
    problem = only_problem(with_sequence(
        CART_RECOVERY.replace("exit: [{type: custom, name: purchase}]", "exit: []")))
    assert problem.trigger == "cart-recovery"


def test_empty_steps_are_reported():
    text = with_sequence(dedent("""
        sequences:
          - id: s
            start: click
            steps: []
    """))
    problem = only_problem(text)
    assert (problem.message, problem.expected) == ("steps is empty", "at least one step")


def test_a_sequence_id_may_not_be_a_trigger_id_of_the_same_pack():
    text = with_sequence(CART_RECOVERY.replace("id: cart-recovery", "id: t1"), trigger())
    problem = only_problem(text)
    assert problem.message == "sequence id 't1' is also the id of the trigger at line 14"
    assert (problem.line, problem.column, problem.trigger) == (3, 9, "t1")


def test_a_sequence_id_may_not_be_a_trigger_id_of_another_pack():
    other = pack(trigger(tid="cart-recovery"), name="other")
    problem = only_compile_problem(other, with_sequence())
    assert problem.message == ("sequence id 'cart-recovery' is also defined in pack0.yaml:3:9 "
                               "(as a trigger id) (pack 'other')")
    assert (problem.file, problem.line) == ("pack1.yaml", 3)


def test_the_catalog_checks_the_content_of_every_step():
    pack_ = load_pack(with_sequence(), "p.yaml")
    [problem] = unknown_content([pack_], load_catalog(RULES / "catalog.yaml"))
    assert problem.message.startswith("content 'time-limited-offer' is not in the content "
                                      "catalog")
    assert (problem.line, problem.column, problem.trigger) == (12, 27, "cart-recovery/offer")
