"""Pack settings (max_actions, fatigue) and models (intent, baselines, adaptive thresholds):
how they compile, merge across packs, and what is wrong with them."""

from __future__ import annotations

import pytest

from control_plane.rulepack import Problem
from tests import language_factories as lf

# Settings


def test_max_actions_is_the_smallest_any_pack_sets():
    a = lf.pack(lf.trigger(tid="a"), top="settings: {max_actions: 5}\n", name="a")
    b = lf.pack(lf.trigger(tid="b"), top="settings: {max_actions: 2}\n", name="b")
    c = lf.pack(lf.trigger(tid="c"), name="c")
    assert lf.compiled(a, b, c)["limits"] == {"max_events": 500, "max_actions": 2}


def test_fatigue_is_the_strictest_of_the_packs():
    a = lf.pack(lf.trigger(tid="a"), name="a", top="""
        settings:
          fatigue: {per_session: 5, per_minute: 2, quiet_after_dismiss: 60s}
    """)
    b = lf.pack(lf.trigger(tid="b"), name="b", top="""
        settings:
          fatigue: {per_session: 3, quiet_after_dismiss: 30s}
    """)
    assert lf.compiled(a, b)["fatigue"] == {"per_session": 3, "per_minute": 2,
                                         "quiet_after_dismiss_ms": 60_000}


def test_fatigue_left_out_means_no_limit():
    text = lf.pack(lf.trigger(), top="settings: {fatigue: {per_minute: 1}}\n")
    assert lf.compiled(text)["fatigue"] == {"per_session": None, "per_minute": 1,
                                         "quiet_after_dismiss_ms": 0}


@pytest.mark.parametrize("top, message, suggestion", [
    ("settings: {max_actions: 11}", "max_actions 11 is out of range", None),
    ("settings: {max_actions: 0}", "max_actions 0 is out of range", None),
    ("settings: {max_action: 2}", "unknown key 'max_action' in settings", "max_actions"),
    ("settings: {fatigue: {per_sesion: 1}}", "unknown key 'per_sesion' in fatigue",
     "per_session"),
    ("settings: {fatigue: {per_minute: 0}}", "per_minute 0 is out of range", None),
    ("settings: {fatigue: {quiet_after_dismiss: 60}}", ("quiet_after_dismiss: 60 has no unit: "
                                                       "a bare number is ambiguous, add a unit "
                                                       "(ms, s, m or h)"), None),
    ("settings: 3", "settings is a number (3)", None),
])
def test_malformed_settings_are_reported(top, message, suggestion):
    problem = lf.only_problem(lf.pack(lf.trigger(), top=top + "\n"))
    assert (problem.message, problem.suggestion) == (message, suggestion)
    assert problem.line == 2


# Models: compiling and merging


MODELS = """
models:
  intent: {bias: -3.0, weights: {dwell: 1.2, scroll_depth: 2.0}, scale: {dwell: 10000}}
  intent_by_trigger: {t1: {bias: 1, weights: {pages: 0.5}}}
  baselines: {scroll_velocity: {mean: 400, std: 150, by_segment: {mobile: {mean: 600, std: 200}}}}
  thresholds: {"t1#1": {"*": 0.7, mobile: 55%}}
"""


def adaptive_pack(top: str = lf.SEGMENTS + MODELS) -> str:
    return lf.when('dwell: ">= 1s"', "scroll_depth: {gte: 0.78, mode: adaptive}", top=top)


def test_models_compile_to_the_documented_shape():
    assert lf.compiled(adaptive_pack())["models"] == {
        "intent": {"bias": -3.0, "weights": {"dwell": 1.2, "scroll_depth": 2.0},
                   "scale": {"dwell": 10000}},
        "intent_by_trigger": {"t1": {"bias": 1, "weights": {"pages": 0.5}, "scale": {}}},
        "baselines": {"scroll_velocity": {"mean": 400, "std": 150, "by_segment": {
            "mobile": {"mean": 600, "std": 200}}}},
        "thresholds": {"t1#1": {"*": 0.7, "mobile": 0.55}},
    }


def test_models_in_another_pack_tune_this_packs_conditions():
    models = lf.pack(top=lf.SEGMENTS + MODELS.replace("t1: {bias", "t1: {bias"), name="models")
    snap = lf.compiled(
        lf.when('dwell: ">= 1s"', "scroll_depth: {gte: 0.78, mode: adaptive}"), models)
    assert snap["models"]["thresholds"] == {"t1#1": {"*": 0.7, "mobile": 0.55}}


def test_thresholds_take_the_unit_of_the_condition_they_tune():
    top = 'models:\n  thresholds: {"t1#0": {"*": 5s}, "t1#1": {"*": 4000}}\n'
    text = lf.when("dwell: {gte: 3s, mode: adaptive}", "dwell: {gte: 3s, mode: adaptive}", top=top)
    assert lf.compiled(text)["models"]["thresholds"] == {"t1#0": {"*": 5000}, "t1#1": {"*": 4000}}


def test_a_threshold_inside_sustained_is_keyed_by_both_positions():
    top = 'models:\n  thresholds: {"t1#0#1": {"*": 0.6}}\n'
    text = lf.when('sustained: {for: 5s, when: [{dwell: ">= 1s"}, '
                "{scroll_depth: {gte: 0.8, mode: adaptive}}]}", top=top)
    snap = lf.compiled(text)
    assert snap["triggers"][0]["when"][0]["sustained"]["when"][1]["model_key"] == "t1#0#1"
    assert snap["models"]["thresholds"] == {"t1#0#1": {"*": 0.6}}


def test_a_pack_of_only_models_is_a_pack():
    assert lf.compiled(lf.pack(top="models:\n  intent: {weights: {pages: 1}}\n"))["models"] == {
        "intent": {"bias": 0.0, "weights": {"pages": 1}, "scale": {}}}


# Models: problems within a pack


@pytest.mark.parametrize("top, message, suggestion", [
    ("models: {intnt: {}}", "unknown key 'intnt' in models", "intent"),
    ("models: {intent: {bias: -3, weights: {dwel: 1}}}", "unknown intent feature 'dwel'",
     "dwell"),
    ("models: {intent: {bias: x, weights: {dwell: 1}}}", "bias is a string", None),
    ("models: {intent: {weights: {dwell: 1}, scale: {dwell: 0}}}",
     "scale of dwell 0 is out of range", None),
    ("models: {intent: {bias: 1}}", "intent is missing the required key 'weights'", None),
    ("models: {baselines: {scroll_velocity: {mean: 400}}}",
     "the scroll_velocity baseline is missing the required key 'std'", None),
    ("models: {baselines: {scroll_velocty: {mean: 400, std: 1}}}",
     "unknown signal 'scroll_velocty'", "scroll_velocity"),
    ("models: {baselines: {scroll_velocity: {mean: 400, std: 0}}}", "std must be above 0",
     None),
    ("models: {baselines: {dwell: {mean: 3 secs, std: 1s}}}", ("mean: '3 secs' is not a "
                                                               "duration"), "3s"),
    ("models: {thresholds: {t1: {'*': 1}}}", "threshold key 't1' is not a model key", None),
    ("models: {thresholds: {'t1#0': {}}}", "the thresholds of t1#0 is empty", None),
    ("models: {thresholds: {'t1#0': {'*': [1]}}}", "the threshold for * is a list", None),
])
def test_malformed_models_are_reported(top, message, suggestion):
    problem = lf.only_problem(lf.pack(lf.trigger(), top=top + "\n"))
    assert (problem.message, problem.suggestion) == (message, suggestion)


def test_a_baseline_duration_in_milliseconds_is_a_whole_number():
    text = lf.pack(lf.trigger(), top="models: {baselines: {dwell: {mean: 3000, std: 500}}}\n")
    assert lf.compiled(text)["models"]["baselines"]["dwell"] == {"mean": 3000, "std": 500,
                                                              "by_segment": {}}


# Models: problems across packs


def threshold_problem(thresholds: str, condition: str) -> Problem:
    """The one problem of `models: {thresholds: <thresholds>}` with trigger t1 on `condition`."""
    top = f"models:\n  thresholds: {thresholds}\n"
    return lf.only_compile_problem(lf.when(condition, top=top))


def test_a_threshold_for_a_condition_that_is_not_adaptive_is_reported():
    problem = threshold_problem('{"t1#0": {"*": 5s}}', 'dwell: ">= 3s"')
    assert problem.message == "threshold key 't1#0' is not mode: adaptive"
    assert (problem.line, problem.column) == (3, 16)


def test_a_threshold_for_no_condition_suggests_an_adaptive_one():
    problem = threshold_problem('{"t1#2": {"*": 5s}}', "dwell: {gte: 3s, mode: adaptive}")
    assert problem.message == "threshold key 't1#2' names no condition"
    assert problem.suggestion == "t1#0"
    assert problem.expected.endswith("one of t1#0")


def test_a_threshold_in_the_wrong_unit_is_reported_at_the_value():
    problem = threshold_problem('{"t1#0": {"*": 140%}}',
                                "scroll_depth: {gte: 0.5, mode: adaptive}")
    assert problem.message == "the threshold of t1#0 for *: '140%' is outside 0% to 100%"
    assert (problem.line, problem.column) == (3, 30)


def test_a_threshold_segment_must_be_defined():
    problem = threshold_problem('{"t1#0": {"*": 1s, mobil: 2s}}',
                                "dwell: {gte: 3s, mode: adaptive}")
    assert (problem.message, problem.suggestion) == ("unknown segment 'mobil'", None)


def test_intent_by_trigger_must_name_a_trigger():
    top = "models:\n  intent_by_trigger: {ofer: {weights: {pages: 1}}}\n"
    problem = lf.only_compile_problem(lf.pack(lf.trigger(tid="offer"), top=top))
    assert (problem.message, problem.suggestion) == (("intent_by_trigger names no trigger: "
                                                     "'ofer'"), "offer")


def test_two_intent_models_are_one_too_many():
    a = lf.pack(lf.trigger(tid="a"), top="models:\n  intent: {weights: {pages: 1}}\n", name="a")
    b = lf.pack(lf.trigger(tid="b"), top="models:\n  intent: {weights: {pages: 2}}\n", name="b")
    problem = lf.only_compile_problem(a, b)
    assert problem.file == "pack1.yaml"
    assert problem.message == "models.intent is also defined in pack0.yaml:3:3"


def test_a_baseline_defined_in_two_packs_is_reported():
    base = "models:\n  baselines: {dwell: {mean: 1s, std: 1s}}\n"
    problems = lf.compile_problems(lf.pack(lf.trigger(tid="a"), top=base, name="a"),
                                lf.pack(lf.trigger(tid="b"), top=base, name="b"))
    assert [p.message for p in problems] == [
        "models.baselines 'dwell' is also defined in pack0.yaml:3:15"]


def test_every_model_problem_is_reported_at_once():
    top = ("models:\n  intent: {weights: {dwel: 1}}\n"
           "  baselines: {dwell: {mean: 1s, std: 0s}}\n"
           "  thresholds: {x: {}}\n")
    assert [p.line for p in lf.problems_of(lf.pack(lf.trigger(), top=top))] == [3, 4, 5]
