"""The rule language of the learning loop (issue #12): an adaptive condition's recall target,
a trigger's exploration slice, settings.report_features and models.learned; validated with
their place, compiled as docs/snapshot-format.md says, and loaded by the core as compiled."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.authoring.pack_diff import diff_snapshots
from control_plane.rulepack import Problem
from control_plane.rulepack.schema import pack_schema
from control_plane.rulepack.source import parse_yaml, plain
from edge_module.core.snapshot_loader import load_snapshot
from tests import language_factories as lf

# rules/schema.json without the catalog's content ids (tests/control/test_schema.py keeps it fresh)
SCHEMA = pack_schema()
RECALL_EXPECTED = "a share above 0% and at most 100%, such as 95% (or a fraction such as 0.95)"
EXPLORE_EXPECTED = "a percentage from 0% to 50% such as 5%"


def at(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """(line, column), 1-based, of the `nth` occurrence of `needle` in `text`."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    return line, start - (text.rfind("\n", 0, start) + 1) + 1


def where(problem: Problem) -> tuple[int, int]:
    return problem.line, problem.column


def adaptive_trigger(body: str = "", cond: str = "scroll_depth: {gte: 78%, mode: adaptive}",
                     tid: str = "t1") -> str:
    return lf.trigger(body + f"when:\n  - {cond}\n", tid=tid)


# target: {recall: ...}

def test_an_adaptive_condition_has_the_default_recall_target_of_95_percent():
    conds = lf.conditions("scroll_depth: {gte: 78%, mode: adaptive}", 'dwell: ">= 3s"')
    assert conds[0]["target"] == {"recall": 0.95}
    assert "target" not in conds[1]


@pytest.mark.parametrize("written, recall", [("90%", 0.9), ("0.9", 0.9), ("100%", 1.0),
                                             ("1", 1.0), ("99.5%", 0.995), ("1%", 0.01)])
def test_a_recall_target_compiles_as_a_fraction(written, recall):
    conds = lf.conditions(f"intent: {{gte: 0.5, mode: adaptive, target: {{recall: {written}}}}}")
    assert conds[0] == {"signal": "intent", "op": ">=", "value": 0.5, "mode": "adaptive",
                        "model_key": "t1#0", "target": {"recall": recall}}
    assert type(conds[0]["target"]["recall"]) is float


def test_adaptive_conditions_in_sustained_and_in_sequence_steps_carry_a_recall_target():
    inner = lf.conditions("sustained: {for: 5s, when: [{dwell: {gte: 3s, mode: adaptive, "
                       "target: {recall: 80%}}}]}")
    assert inner[0]["sustained"]["when"][0]["target"] == {"recall": 0.8}
    text = lf.pack(top="""
        sequences:
          - id: s1
            start: page_view
            steps:
              - {id: a, when: [{scroll_depth: {gte: 50%, mode: adaptive}}], action: {content: c1}}
        """)
    step = lf.compiled(text)["sequences"][0]["steps"][0]
    assert step["when"][0]["target"] == {"recall": 0.95}


def test_a_recall_target_without_mode_adaptive_is_reported_at_target():
    text = lf.when("dwell: {gte: 3s, target: {recall: 90%}}")
    problem = lf.only_problem(text)
    assert problem.message == ("target is only used with mode: adaptive (the recall the "
                               "learning loop keeps while it tunes the threshold)")
    assert problem.expected == "mode: adaptive, or no target"
    assert where(problem) == at(text, "target")


def test_a_recall_target_on_a_hybrid_condition_is_reported():
    text = lf.when("dwell: {gte: 3s, mode: hybrid, target: {recall: 90%}}",
                top="models:\n  baselines:\n    dwell: {mean: 20s, std: 8s}\n")
    assert lf.only_problem(text).message.startswith("target is only used with mode: adaptive")


def test_an_unknown_key_in_a_recall_target_lists_the_known_ones():
    text = lf.when("dwell: {gte: 3s, mode: adaptive, target: {recal: 90%}}")
    problem = lf.only_problem(text)
    assert (problem.message, problem.expected, problem.suggestion) == (
        "unknown key 'recal' in target", "one of recall", "recall")
    assert where(problem) == at(text, "recal")


def test_a_recall_target_needs_recall():
    text = lf.when("dwell: {gte: 3s, mode: adaptive, target: {}}")
    problem = lf.only_problem(text)
    assert problem.message == "target is missing the required key 'recall'"
    assert where(problem) == at(text, "{}")


@pytest.mark.parametrize("written, message, suggestion", [
    ("0", "recall: 0 is no recall target: it must be above 0%", None),
    ("0%", "recall: '0%' is no recall target: it must be above 0%", None),
    ("95", "recall: 95 is outside 0 to 1", "95%"),
    ("120%", "recall: '120%' is outside 0% to 100%", None),
    ("-5%", "recall: '-5%' is outside 0% to 100%", None),
    ("lots", "recall: 'lots' is not a number", None),
    ("[95%]", "recall is a list", None),
])
def test_a_recall_outside_0_to_100_percent_is_reported_at_its_value(written, message,
                                                                    suggestion):
    text = lf.when(f"intent: {{gte: 0.5, mode: adaptive, target: {{recall: {written}}}}}")
    problem = lf.only_problem(text)
    assert (problem.message, problem.expected, problem.suggestion) == (
        message, RECALL_EXPECTED, suggestion)
    line, column = at(text, f"recall: {written}")
    assert where(problem) == (line, column + len("recall: "))


def test_a_recall_target_written_as_a_bare_percentage_suggests_the_mapping():
    problem = lf.only_problem(lf.when("dwell: {gte: 3s, mode: adaptive, target: 90%}"))
    assert (problem.message, problem.expected, problem.suggestion) == (
        "the target of the dwell condition is a string", ("a recall target such as "
        "{recall: 95%}"), "{recall: 90%}")


def test_on_a_hover_target_stays_the_element_and_cannot_hold_a_recall_target():
    text = lf.when("hover: {target: {recall: 90%}, gte: 2s, mode: adaptive}")
    problem = lf.only_problem(text)
    assert problem.message == ("target is the element a hover condition watches, so it "
                               "cannot hold a recall target (the default 95% applies)")
    assert where(problem) == at(text, "{recall")
    cond = lf.conditions('hover: {target: "#cta", gte: 2s, mode: adaptive}')[0]
    assert cond["target"] == "#cta" and cond["mode"] == "adaptive"


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=100))
def test_every_whole_percentage_above_0_is_a_recall_target(percent):
    cond = lf.conditions(f"dwell: {{gte: 3s, mode: adaptive, target: {{recall: {percent}%}}}}")[0]
    assert cond["target"] == {"recall": percent / 100}


# explore

def test_a_trigger_with_an_adaptive_condition_explores_5_percent_by_default():
    second = lf.trigger('when:\n  - dwell: ">= 3s"\n', tid="t2")
    snap = lf.compiled(lf.pack(adaptive_trigger(), second))
    adaptive, static = snap["triggers"]
    assert adaptive["explore"] == 5.0 and type(adaptive["explore"]) is float
    assert "explore" not in static
    assert list(adaptive)[list(adaptive).index("holdout") + 1] == "explore"


@pytest.mark.parametrize("written, share", [("0%", 0.0), ("10%", 10.0), ("2.5%", 2.5),
                                            ("50%", 50.0)])
def test_explore_compiles_as_a_percentage(written, share):
    assert lf.first_trigger(lf.pack(adaptive_trigger(f"explore: {written}\n")))["explore"] == share


def test_an_adaptive_condition_inside_sustained_is_enough_for_explore():
    cond = "sustained: {for: 2s, when: [{dwell: {gte: 3s, mode: adaptive}}]}"
    assert lf.first_trigger(lf.pack(adaptive_trigger("explore: 8%\n", cond)))["explore"] == 8.0


def test_explore_on_a_trigger_without_an_adaptive_condition_says_why():
    text = lf.pack(adaptive_trigger("explore: 5%\n", "scroll_depth: {gte: 78%, mode: hybrid}"),
                top="models:\n  baselines:\n    scroll_depth: {mean: 0.5, std: 0.2}\n")
    problem = lf.only_problem(text)
    assert problem.message == ("explore is only used by a trigger with a mode: adaptive "
                               "condition (the share of sessions where those conditions keep "
                               "their static value), and no condition of this trigger has one")
    assert problem.expected == "mode: adaptive on a condition, or no explore"
    assert where(problem) == at(text, "explore")
    assert problem.trigger == "t1"


def test_a_mistake_in_a_condition_is_not_also_blamed_on_explore():
    text = lf.pack(adaptive_trigger("explore: 5%\n", "scroll_depth: {gte: 78%, mode: adaptve}"))
    assert lf.only_problem(text).message == "unknown mode 'adaptve'"


@pytest.mark.parametrize("written, message, suggestion", [
    ("60%", "explore: '60%' is above 50%", "50%"),
    ("100%", "explore: '100%' is above 50%", "50%"),
    ("5", "explore: 5 has no % sign: write the share of sessions as a percentage", "5%"),
    ("0.05", "explore: 0.05 has no % sign: write the share of sessions as a percentage", "5%"),
    ("-1%", "explore: '-1%' is outside 0% to 100%", None),
    ("some", "explore: 'some' is not a percentage", None),
])
def test_explore_outside_0_to_50_percent_is_reported_at_its_value(written, message,
                                                                  suggestion):
    text = lf.pack(adaptive_trigger(f"explore: {written}\n"))
    problem = lf.only_problem(text)
    assert (problem.message, problem.expected, problem.suggestion) == (
        message, EXPLORE_EXPECTED, suggestion)
    assert where(problem) == at(text, written)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=100))
def test_explore_is_accepted_exactly_from_0_to_50_percent(percent):
    text = lf.pack(adaptive_trigger(f"explore: {percent}%\n"))
    if percent <= 50:
        assert lf.first_trigger(text)["explore"] == float(percent)
    else:
        assert [p.message for p in lf.problems_of(text)] == [f"explore: '{percent}%' is above 50%"]


def test_the_core_puts_sessions_in_the_compiled_exploration_slice():
    snap = load_snapshot(json.dumps(lf.compiled(lf.pack(adaptive_trigger("explore: 12%\n")))))
    assert snap.triggers[0].explore == 12.0


# settings.report_features

def test_report_features_true_compiles_into_snapshot_settings():
    snap = lf.compiled(lf.pack(lf.trigger('when:\n  - dwell: ">= 3s"\n'),
                         top="settings:\n  report_features: true\n"))
    assert snap["settings"] == {"report_features": True}
    assert load_snapshot(json.dumps(snap)).report is True


@pytest.mark.parametrize("top", ["", "settings:\n  report_features: false\n",
                                 "settings:\n  max_actions: 2\n"])
def test_without_report_features_true_the_snapshot_has_no_settings(top):
    snap = lf.compiled(lf.pack(lf.trigger('when:\n  - dwell: ">= 3s"\n'), top=top))
    assert "settings" not in snap
    assert load_snapshot(json.dumps(snap)).report is False


def test_any_pack_saying_report_features_true_makes_it_true():
    quiet = lf.pack(lf.trigger('when:\n  - dwell: ">= 3s"\n'), name="quiet",
                 top="settings:\n  report_features: false\n")
    loud = lf.pack(top="settings:\n  report_features: true\n", name="loud")
    assert lf.compiled(quiet, loud)["settings"] == {"report_features": True}
    assert lf.compiled(loud, quiet)["settings"] == {"report_features": True}


@pytest.mark.parametrize("written, shown", [("yes please", "a string"), ("1", "a number (1)"),
                                            ("[true]", "a list")])
def test_report_features_must_be_true_or_false(written, shown):
    text = lf.pack(top=f"settings:\n  report_features: {written}\n")
    problem = lf.only_problem(text)
    assert (problem.message, problem.expected) == (f"report_features is {shown}",
                                                   "true or false")
    assert where(problem) == at(text, written)


def test_a_misspelt_report_features_is_suggested():
    problem = lf.only_problem(lf.pack(top="settings:\n  report_feature: true\n"))
    assert problem.suggestion == "report_features"
    assert "report_features" in problem.expected


# models.learned

LEARNED = """
models:
  learned:
    "t1#0":
      mobile:
        features: [dwell_ms, depth]
        transform: {dwell_ms: log1p}
        mean: {dwell_ms: 8.1}
        scale: {dwell_ms: 1.2}
        weights: {dwell_ms: 0.9, depth: 1.4}
        bias: -1.3
        calibration: {a: 1.1, b: -0.2}
        trained: {rows: 1200, at: "2026-12-01"}
      "*": {features: [pages], weights: {pages: 0.3}}
"""
INTENT = "intent: {gte: 0.5, mode: adaptive}"


def learned_pack(model: str, cond: str = INTENT) -> str:
    """A pack whose models.learned."t1#0".mobile is `model` (a YAML flow mapping)."""
    learned = f'models:\n  learned:\n    "t1#0":\n      mobile: {model}\n'
    return lf.when(cond, top=lf.SEGMENTS + learned)


def test_a_learned_model_compiles_in_full_with_its_defaults():
    snap = lf.compiled(lf.when(INTENT, top=lf.SEGMENTS + LEARNED))
    assert snap["models"]["learned"] == {"t1#0": {
        "mobile": {"features": ["dwell_ms", "depth"], "transform": {"dwell_ms": "log1p"},
                   "mean": {"dwell_ms": 8.1, "depth": 0.0},
                   "scale": {"dwell_ms": 1.2, "depth": 1.0},
                   "weights": {"dwell_ms": 0.9, "depth": 1.4}, "bias": -1.3,
                   "calibration": {"a": 1.1, "b": -0.2},
                   "trained": {"rows": 1200, "at": "2026-12-01"}},
        "*": {"features": ["pages"], "transform": {}, "mean": {"pages": 0.0},
              "scale": {"pages": 1.0}, "weights": {"pages": 0.3}, "bias": 0.0,
              "calibration": {"a": 1.0, "b": 0.0}}}}
    learned = load_snapshot(json.dumps(snap)).learned["t1#0"]
    assert [seg for seg, _ in learned] == ["mobile", "*"]


def test_a_learned_model_may_sit_in_another_pack():
    models = lf.pack(top=lf.SEGMENTS + LEARNED, name="models")
    assert "t1#0" in lf.compiled(lf.when(INTENT), models)["models"]["learned"]


@pytest.mark.parametrize("model, message, needle", [
    ("{features: [dwell, depth], weights: {depth: 1}}",
     "unknown session feature 'dwell' in models.learned.t1#0.mobile.features", "dwell,"),
    ("{features: [depth, depth], weights: {depth: 1}}",
     "feature 'depth' is listed twice in models.learned.t1#0.mobile.features", "depth]"),
    ("{features: [], weights: {}}",
     "models.learned.t1#0.mobile.features is an empty list", "[]"),
    ("{features: [depth, pages], weights: {depth: 1}}",
     "models.learned.t1#0.mobile.weights: no weight for pages", "{depth: 1}"),
    ("{features: [depth], weights: {depth: 1, pages: 2}}",
     "models.learned.t1#0.mobile.weights: 'pages' is not in features", "pages: 2"),
    ("{features: [depth], weights: {depth: 1}, scale: {depth: 0}}",
     "models.learned.t1#0.mobile.scale.depth 0 is out of range", "0}"),
    ("{features: [depth], weights: {depth: high}}",
     "models.learned.t1#0.mobile.weights.depth is a string", "high"),
    ("{features: [depth], weights: {depth: 1}, transform: {depth: log}}",
     "models.learned.t1#0.mobile.transform.depth: unknown transform 'log'", "log}"),
    ("{features: [depth], weights: {depth: 1}, calibration: {a: 1, c: 2}}",
     "unknown key 'c' in models.learned.t1#0.mobile.calibration", "c: 2"),
    ("{features: [depth], weights: {depth: 1}, bias: [1]}",
     "models.learned.t1#0.mobile.bias is a list", "[1]"),
    ("{features: [depth], weights: {depth: 1}, trained: {at: 2026-12-01}}",
     ("models.learned.t1#0.mobile.trained: 2026-12-01 is a date (2026-12-01), which JSON "
     "cannot hold"), "2026-12-01"),
    ("{weights: {depth: 1}}", ("models.learned.t1#0.mobile is missing the required key "
                              "'features'"), "{weights"),
    ("{features: [depth], weight: {depth: 1}}",
     "unknown key 'weight' in models.learned.t1#0.mobile", "weight:"),
])
def test_a_malformed_learned_model_is_reported_with_its_path(model, message, needle):
    text = learned_pack(model)
    problems = lf.problems_of(text)
    assert message in [p.message for p in problems], "\n".join(map(str, problems))
    problem = next(p for p in problems if p.message == message)
    assert where(problem) == at(text, needle)


def test_an_unknown_feature_suggests_the_session_feature_meant():
    problem = lf.only_problem(learned_pack("{features: [dwell], weights: {dwell: 1}}"))
    assert problem.suggestion == "dwell_ms"
    assert "focus_to_input_ms" in problem.expected


def test_a_learned_model_key_must_be_a_model_key():
    text = lf.when(INTENT, top='models:\n  learned:\n    "t1": {"*": {features: [depth], '
                            'weights: {depth: 1}}}\n')
    assert lf.only_problem(text).message == "learned model key 't1' is not a model key"


@pytest.mark.parametrize("cond, why", [
    ("intent: {gte: 0.5}", "is not mode: adaptive"),
    ("scroll_depth: {gte: 50%, mode: adaptive}",
     "is a scroll_depth condition: a learned model scores the intent signal"),
])
def test_a_learned_model_belongs_to_an_adaptive_intent_condition(cond, why):
    text = learned_pack("{features: [depth], weights: {depth: 1}}", cond)
    problem = lf.only_compile_problem(text)
    assert problem.message == f"learned model key 't1#0' {why}"
    assert where(problem) == at(text, '"t1#0"')


def test_a_learned_model_naming_no_condition_suggests_one():
    text = lf.when(INTENT, top='models:\n  learned:\n    "t1#1": {"*": {features: [depth], '
                            'weights: {depth: 1}}}\n')
    problem = lf.only_compile_problem(text)
    assert problem.message == "learned model key 't1#1' names no condition"
    assert problem.suggestion == "t1#0"
    assert problem.expected == ("the model key of an intent condition with mode: adaptive, "
                                "one of t1#0")


def test_a_learned_model_in_two_packs_is_reported():
    first = lf.when(INTENT, top=lf.SEGMENTS + LEARNED)
    second = lf.pack(top=LEARNED, name="again")
    problems = lf.compile_problems(first, second)
    assert [p.message.split(" is also")[0] for p in problems] == ["models.learned 't1#0'"]


def test_a_learned_model_for_an_undefined_segment_is_reported():
    text = lf.when(INTENT, top='models:\n  learned:\n    "t1#0": {tablet: {features: [depth], '
                            'weights: {depth: 1}}}\n')
    assert lf.only_compile_problem(text).message == "unknown segment 'tablet'"


# The editor schema agrees

def schema_errors(text: str) -> list[str]:
    root, problems = parse_yaml(text, "x.yaml")
    assert root is not None and not problems
    return [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(plain(root))]


def test_the_schema_accepts_what_the_validator_accepts():
    text = lf.pack(adaptive_trigger("explore: 10%\n", "intent: {gte: 0.5, mode: adaptive, "
                                                   "target: {recall: 90%}}"),
                top=lf.SEGMENTS + LEARNED + "settings:\n  report_features: true\n")
    lf.compiled(text)
    assert schema_errors(text) == []


@pytest.mark.parametrize("text", [
    lf.when("dwell: {gte: 3s, target: {recall: 90%}}"),
    lf.when("dwell: {gte: 3s, mode: adaptive, target: {recal: 90%}}"),
    lf.when("dwell: {gte: 3s, mode: adaptive, target: {recall: 120%}}"),
    lf.pack(adaptive_trigger("explore: 60%\n")),
    lf.pack(top="settings:\n  report_features: 1\n"),
    learned_pack("{features: [dwell], weights: {dwell: 1}}"),
    learned_pack("{features: [depth], weights: {depth: 1}, scale: {depth: 0}}"),
])
def test_the_schema_refuses_what_the_validator_refuses(text):
    assert lf.problems_of(text)
    assert schema_errors(text)


# Saying what changed

def test_a_changed_recall_target_is_said_as_written():
    before = lf.compiled(lf.when("scroll_depth: {gte: 78%, mode: adaptive}"))
    after = lf.compiled(lf.when("scroll_depth: {gte: 78%, mode: adaptive, target: {recall: 90%}}"))
    assert [c.text for c in diff_snapshots(before, after)] == [
        ("t1: condition scroll_depth >= 78% (adaptive) -> scroll_depth >= 78% "
        "(adaptive, recall 90%)")]


def test_a_changed_exploration_slice_and_report_features_are_said():
    before = lf.compiled(lf.pack(adaptive_trigger()))
    after = lf.compiled(lf.pack(adaptive_trigger("explore: 10%\n"),
                          top="settings:\n  report_features: true\n"))
    assert sorted(c.text for c in diff_snapshots(before, after)) == [
        "settings: report_features False -> True", "t1: explore 5% -> 10%"]
