"""The trigger-level keys of the language: segment, consecutive, group, journey, rollout,
holdout, salt, the predictive tier, and the snapshot keys every pack now gets."""

from __future__ import annotations

import pytest

from tests.language_factories import (
    SEGMENTS,
    compiled,
    first_trigger,
    only_compile_problem,
    only_problem,
    pack,
    trigger,
)

# Defaults: a v1 trigger gains the new keys, a v1 snapshot the new sections


def test_a_trigger_without_the_new_keys_compiles_with_their_defaults():
    trig = first_trigger(pack(trigger()))
    assert {k: trig[k] for k in ("segment", "consecutive", "group", "journey", "rollout",
                                 "holdout", "salt")} == {
        "segment": None, "consecutive": 1, "group": None, "journey": None, "rollout": 100,
        "holdout": 0, "salt": "t1"}


def test_the_new_trigger_keys_come_in_the_documented_order():
    assert list(first_trigger(pack(trigger()))) == [
        "id", "pack", "pages", "on", "segment", "when", "consecutive", "group", "journey",
        "rollout", "holdout", "salt", "action", "cap"]


def test_a_snapshot_without_settings_segments_models_or_sequences_has_their_empty_forms():
    snap = compiled(pack(trigger()))
    assert snap["limits"] == {"max_events": 500, "max_actions": 3}
    assert snap["fatigue"] == {"per_session": None, "per_minute": None,
                               "quiet_after_dismiss_ms": 0}
    assert (snap["segments"], snap["models"], snap["sequences"]) == ({}, {}, [])


def test_the_snapshot_sections_come_in_the_documented_order():
    assert list(compiled(pack(trigger()))) == [
        "format", "revision", "created_ms", "packs", "limits", "fatigue", "segments", "models",
        "triggers", "sequences", "index"]


# segment


def test_a_trigger_segment_compiles_to_its_name():
    assert first_trigger(pack(trigger("segment: mobile"), top=SEGMENTS))["segment"] == "mobile"


def test_a_trigger_segment_defined_in_another_pack_is_found():
    other = pack(top=SEGMENTS, name="segments")
    assert first_trigger(pack(trigger("segment: gold")), other)["segment"] == "gold"


def test_an_undefined_trigger_segment_is_reported_where_it_is_used_with_a_suggestion():
    problem = only_compile_problem(pack(trigger("segment: mobil"), top=SEGMENTS))
    assert problem.message == "unknown segment 'mobil'"
    assert (problem.file, problem.line, problem.column, problem.trigger) == ("pack0.yaml", 7,
                                                                             14, "t1")
    assert problem.suggestion == "mobile"
    assert "mobile, gold" in problem.expected


def test_a_segment_used_when_no_pack_defines_any_says_so():
    problem = only_compile_problem(pack(trigger("segment: mobile")))
    assert problem.expected.endswith("(no pack defines any)")


def test_a_trigger_segment_that_is_not_text_is_reported():
    problem = only_problem(pack(trigger("segment: [mobile]")))
    assert problem.message == "segment is a list"


# consecutive


def test_consecutive_compiles_as_written():
    assert first_trigger(pack(trigger("consecutive: 3")))["consecutive"] == 3


@pytest.mark.parametrize("value, message", [
    ("0", "consecutive 0 is out of range"), ("21", "consecutive 21 is out of range"),
    ("1.5", "consecutive is a decimal number (1.5)"), ('"2"', "consecutive is a string"),
])
def test_consecutive_outside_1_to_20_is_reported(value, message):
    problem = only_problem(pack(trigger(f"consecutive: {value}")))
    assert problem.message == message
    assert problem.expected == "an integer from 1 to 20"
    assert (problem.line, problem.column) == (4, 18)


# group


def test_group_compiles_to_its_name():
    assert first_trigger(pack(trigger("group: offers")))["group"] == "offers"


def test_a_group_name_outside_the_alphabet_suggests_one():
    problem = only_problem(pack(trigger('group: "Summer Offers"')))
    assert problem.message == "group 'Summer Offers' is not allowed"
    assert problem.suggestion == "summer-offers"


# journey


def test_journey_compiles_to_milliseconds_with_per_segment_overrides():
    trig = first_trigger(pack(trigger("journey: {within: 2m, by_segment: {mobile: 60s}}"),
                              top=SEGMENTS))
    assert trig["journey"] == {"within_ms": 120_000, "by_segment": {"mobile": 60_000}}


def test_journey_written_as_a_duration_means_within():
    assert first_trigger(pack(trigger("journey: 90s")))["journey"] == {"within_ms": 90_000,
                                                                      "by_segment": {}}


def test_journey_needs_within():
    problem = only_problem(pack(trigger("journey: {by_segment: {mobile: 60s}}")))
    assert problem.message == "journey is missing the required key 'within'"


def test_a_journey_of_zero_is_reported():
    problem = only_problem(pack(trigger("journey: {within: 0s}")))
    assert problem.message == "within is 0"


def test_a_misspelt_journey_key_suggests_the_right_one():
    problem = only_problem(pack(trigger("journey: {withn: 2m}")))
    assert problem.suggestion == "within"


def test_a_journey_by_segment_names_a_defined_segment():
    problem = only_compile_problem(pack(trigger("journey: {within: 2m, by_segment: {gld: 1m}}"),
                                        top=SEGMENTS))
    assert (problem.message, problem.suggestion) == ("unknown segment 'gld'", "gold")


def test_a_journey_by_segment_without_unit_is_reported():
    problem = only_problem(pack(trigger("journey: {within: 2m, by_segment: {mobile: 60}}")))
    assert "add a unit" in problem.message


# rollout, holdout, salt


def test_rollout_holdout_and_salt_compile_as_percentages_and_text():
    trig = first_trigger(pack(trigger('rollout: 50%\nholdout: "12.5%"\nsalt: q4')))
    assert (trig["rollout"], trig["holdout"], trig["salt"]) == (50, 12.5, "q4")


@pytest.mark.parametrize("value, suggestion", [("50", "50%"), ("0.5", "50%"), ("200", None)])
def test_a_rollout_without_percent_sign_is_ambiguous(value, suggestion):
    problem = only_problem(pack(trigger(f"rollout: {value}")))
    assert "no % sign" in problem.message
    assert problem.suggestion == suggestion
    assert (problem.line, problem.column) == (4, 14)


@pytest.mark.parametrize("value", ['"120%"', '"-5%"', '"abc%"', "[50%]"])
def test_a_holdout_outside_0_to_100_percent_is_reported(value):
    problem = only_problem(pack(trigger(f"holdout: {value}")))
    assert problem.message.startswith("holdout")
    assert problem.expected == "a percentage from 0% to 100% such as 50%"


def test_an_empty_salt_is_reported():
    assert only_problem(pack(trigger('salt: ""'))).message == "salt is empty"


# action tier


def test_the_predictive_tier_compiles():
    trig = first_trigger(pack(trigger(action="content: c1, tier: predictive")))
    assert trig["action"]["tier"] == "predictive"


def test_a_misspelt_tier_suggests_predictive():
    problem = only_problem(pack(trigger(action="content: c1, tier: predictve")))
    assert problem.suggestion == "predictive"


# Trigger keys and ids


def test_a_misspelt_new_trigger_key_suggests_the_right_one():
    problem = only_problem(pack(trigger("consecutiv: 2")))
    assert (problem.message, problem.suggestion) == ("unknown key 'consecutiv' in the trigger",
                                                     "consecutive")


def test_every_new_key_compiles_together():
    trig = first_trigger(pack(trigger(
        "segment: gold\nconsecutive: 2\ngroup: offers\njourney: 2m\nrollout: 50%\n"
        "holdout: 10%\nsalt: q4"), top=SEGMENTS))
    assert (trig["segment"], trig["consecutive"], trig["group"], trig["journey"]["within_ms"],
            trig["rollout"], trig["holdout"], trig["salt"]) == ("gold", 2, "offers", 120_000,
                                                                50, 10, "q4")
