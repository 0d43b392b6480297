"""Signal conditions: every signal's YAML and the exact JSON it compiles to, per-segment,
adaptive and hybrid thresholds, and the problems each can have."""

from __future__ import annotations

import pytest

from tests import language_factories as lf

BASELINE = "models:\n  baselines: {scroll_velocity: {mean: 400, std: 150}}\n"


@pytest.mark.parametrize("written, expected", [
    ('session_time: "<= 120s"', {"signal": "session_time", "op": "<=", "value": 120_000}),
    ('scroll_position: ">= 50%"', {"signal": "scroll_position", "op": ">=", "value": 0.5}),
    ('velocity_spike: ">= 2.5"', {"signal": "velocity_spike", "op": ">=", "value": 2.5,
                                  "window_ms": 1000, "baseline": "session"}),
    ("velocity_spike: {gte: 2.5, window: 3s, baseline: cohort}",
     {"signal": "velocity_spike", "op": ">=", "value": 2.5, "window_ms": 3000,
      "baseline": "cohort"}),
    ('mouse_entropy: ">= 2.2"', {"signal": "mouse_entropy", "op": ">=", "value": 2.2,
                                 "window_ms": 2000}),
    ("mouse_entropy: {lt: 1, window: 5s}", {"signal": "mouse_entropy", "op": "<", "value": 1,
                                            "window_ms": 5000}),
    ('pages: ">= 3"', {"signal": "pages", "op": ">=", "value": 3}),
    ('focus_to_input: ">= 4s"', {"signal": "focus_to_input", "op": ">=", "value": 4000}),
    ('focus_to_input: {gte: 4s, target: "#email"}',
     {"signal": "focus_to_input", "op": ">=", "value": 4000, "target": "#email"}),
    ('input_to_submit: "<= 1s"', {"signal": "input_to_submit", "op": "<=", "value": 1000}),
    ('intent: ">= 0.7"', {"signal": "intent", "op": ">=", "value": 0.7}),
    ('intent: ">= 70%"', {"signal": "intent", "op": ">=", "value": 0.7}),
])
def test_each_signal_compiles_to_its_documented_condition(written, expected):
    assert lf.conditions(written, top=BASELINE) == [expected]


# Values: units and ranges per signal


@pytest.mark.parametrize("written, message", [
    ('intent: ">= 1.5"', "outside 0 to 1"),
    ('mouse_entropy: ">= 4"', "outside 0 to 3"),
    ('pages: ">= 2.5"', "not a whole number"),
    ('pages: ">= -1"', "negative"),
    ('scroll_position: ">= 140%"', "outside 0% to 100%"),
    ('session_time: ">= 30"', "add a unit"),
    ('input_to_submit: {lte: 1}', "add a unit"),
    ("velocity_spike: {gte: -2}", "negative"),
])
def test_values_outside_what_a_signal_can_take_are_reported(written, message):
    problem = lf.only_problem(lf.when(written))
    assert message in problem.message
    assert (problem.line, problem.trigger) == (5, "t1")


def test_a_whole_percentage_as_a_ratio_number_suggests_a_percent():
    problem = lf.only_problem(lf.when("scroll_position: {gte: 50}"))
    assert problem.suggestion == "50%"


def test_an_unknown_signal_suggests_the_nearest_word_of_the_language():
    problem = lf.only_problem(lf.when('sesion_time: ">= 3s"'))
    assert (problem.message, problem.suggestion) == ("unknown signal 'sesion_time'",
                                                     "session_time")
    assert "device" in problem.expected and "sustained" in problem.expected


def test_a_parameter_a_signal_does_not_take_is_an_unknown_key():
    problem = lf.only_problem(lf.when("pages: {gte: 3, window: 2s}"))
    assert problem.message == "unknown key 'window' in the pages condition"


def test_an_unknown_baseline_suggests_one():
    problem = lf.only_problem(lf.when("velocity_spike: {gte: 2, baseline: cohrt}"))
    assert (problem.message, problem.suggestion) == ("unknown baseline 'cohrt'", "cohort")


def test_a_cohort_spike_needs_a_cohort_baseline_in_some_pack():
    problem = lf.only_compile_problem(lf.when("velocity_spike: {gte: 2, baseline: cohort}"))
    assert "baseline: cohort needs" in problem.message
    assert (problem.line, problem.column, problem.trigger) == (5, 9, "t1")


def test_a_cohort_baseline_in_another_pack_is_enough():
    models = lf.pack(top=BASELINE, name="models")
    snap = lf.compiled(lf.when("velocity_spike: {gte: 2, baseline: cohort}"), models)
    assert snap["models"]["baselines"]["scroll_velocity"]["mean"] == 400


# by_segment


def test_by_segment_compiles_per_segment_values_in_the_signals_unit():
    conds = lf.conditions('scroll_depth: {gte: 78%, by_segment: {mobile: 60%, gold: 0.5}}',
                       top=lf.SEGMENTS)
    assert conds == [{"signal": "scroll_depth", "op": ">=", "value": 0.78,
                      "by_segment": {"mobile": 0.6, "gold": 0.5}}]


def test_by_segment_durations_need_units():
    problem = lf.only_problem(lf.when("dwell: {gte: 3s, by_segment: {mobile: 5}}"))
    assert problem.message.startswith("by_segment mobile:")
    assert "add a unit" in problem.message


def test_by_segment_names_must_be_defined_segments():
    problem = lf.only_compile_problem(lf.when("dwell: {gte: 3s, by_segment: {mobil: 5s}}",
                                        top=lf.SEGMENTS))
    assert (problem.message, problem.suggestion) == ("unknown segment 'mobil'", "mobile")
    assert (problem.line, problem.column) == (8, 39)


def test_an_empty_by_segment_is_reported():
    assert lf.only_problem(lf.when("dwell: {gte: 3s, by_segment: {}}")).message == \
        "by_segment is empty"


# mode: adaptive and hybrid


def test_an_adaptive_condition_carries_its_model_key():
    conds = lf.conditions('dwell: ">= 1s"', "scroll_depth: {gte: 0.78, mode: adaptive}")
    assert conds[1] == {"signal": "scroll_depth", "op": ">=", "value": 0.78,
                        "mode": "adaptive", "model_key": "t1#1",
                        "target": {"recall": 0.95}}  # the default recall target


def test_a_hybrid_condition_carries_z_with_a_default_of_2():
    conds = lf.conditions("scroll_velocity: {gte: 800, window: 2s, mode: hybrid}",
                       "scroll_velocity: {gte: 800, mode: hybrid, z: 3}", top=BASELINE)
    assert conds == [
        {"signal": "scroll_velocity", "op": ">=", "value": 800, "window_ms": 2000,
         "mode": "hybrid", "z": 2.0},
        {"signal": "scroll_velocity", "op": ">=", "value": 800, "window_ms": 1000,
         "mode": "hybrid", "z": 3.0},
    ]


def test_a_static_mode_written_out_compiles_like_no_mode():
    assert lf.conditions('dwell: {gte: 3s, mode: static}') == [
        {"signal": "dwell", "op": ">=", "value": 3000}]


def test_an_unknown_mode_suggests_one():
    problem = lf.only_problem(lf.when("dwell: {gte: 3s, mode: adaptve}"))
    assert (problem.message, problem.suggestion) == ("unknown mode 'adaptve'", "adaptive")


def test_z_without_hybrid_is_reported_at_z():
    problem = lf.only_problem(lf.when("dwell: {gte: 3s, mode: adaptive, z: 2}"))
    assert problem.message == "z is only used with mode: hybrid"
    assert (problem.line, problem.column) == (5, 42)


@pytest.mark.parametrize("z", ["0", "-1", "two"])
def test_z_must_be_a_positive_number(z):
    problem = lf.only_problem(lf.when(f"dwell: {{gte: 3s, mode: hybrid, z: {z}}}"))
    assert problem.message.startswith("z ")


def test_hybrid_needs_a_baseline_for_its_signal():
    problem = lf.only_compile_problem(lf.when("dwell: {gte: 3s, mode: hybrid}"))
    assert problem.message == ("mode: hybrid needs a baseline for dwell, and no pack defines "
                               "one")
    assert problem.expected.startswith("models.baselines.dwell")


# Shapes


def test_a_signal_needing_parameters_cannot_be_a_shorthand():
    problem = lf.only_problem(lf.when('count: ">= 3"'))
    assert problem.message == "count needs event and window: write the condition as a mapping"
    assert problem.expected == "{event: click, window: 2s, gte: 3}"


def test_a_missing_required_parameter_is_reported_once():
    problem = lf.only_problem(lf.when("count: {event: click, gte: 3}"))
    assert problem.message == "the count condition is missing the required key 'window'"


def test_two_operators_in_one_new_condition_are_reported():
    problem = lf.only_problem(lf.when("pages: {gte: 2, lt: 5}"))
    assert "more than one operator" in problem.message


def test_every_problem_in_one_condition_is_reported_at_once():
    problems = lf.problems_of(lf.when("velocity_spike: {gte: 9%, window: 0s, baseline: x}"))
    assert len(problems) == 3


def test_conditions_of_new_signals_in_several_triggers_get_their_own_model_keys():
    text = lf.pack(lf.trigger("when: [{intent: {gte: 0.5, mode: adaptive}}]", tid="a"),
                lf.trigger("when: [{dwell: '>= 1s'}, {intent: {gte: 0.5, mode: adaptive}}]",
                        tid="b"))
    keys = [c.get("model_key") for t in lf.compiled(text)["triggers"] for c in t["when"]]
    assert keys == ["a#0", None, "b#1"]


def test_a_pack_that_is_valid_alone_can_still_fail_together_with_the_others():
    assert lf.compile_problems(lf.when("dwell: {gte: 3s, mode: hybrid}"))
