"""Context conditions and segments: device, country, local hour, weekday, referrer,
returning visitors and CRM attributes, in a trigger's `when` and as named segments."""

from __future__ import annotations

import pytest

from tests import language_factories as lf


@pytest.mark.parametrize("written, expected", [
    ("device: mobile", {"context": "device", "op": "==", "value": "mobile"}),
    ("device: [mobile, tablet]", {"context": "device", "op": "in",
                                  "value": ["mobile", "tablet"]}),
    ('device: "!= desktop"', {"context": "device", "op": "!=", "value": "desktop"}),
    ("device: {in: [mobile]}", {"context": "device", "op": "in", "value": ["mobile"]}),
    ("country: DE", {"context": "country", "op": "==", "value": "DE"}),
    ("country: NO", {"context": "country", "op": "==", "value": "NO"}),
    ("country: [DE, AT, CH, DE]", {"context": "country", "op": "in",
                                   "value": ["DE", "AT", "CH"]}),
    ('local_hour: ">= 18"', {"context": "local_hour", "op": ">=", "value": 18}),
    ("local_hour: {lt: 9}", {"context": "local_hour", "op": "<", "value": 9}),
    ("local_hour: [12, 13]", {"context": "local_hour", "op": "in", "value": [12, 13]}),
    ("weekday: [sat, sun]", {"context": "weekday", "op": "in", "value": ["sat", "sun"]}),
    ("weekday: mon", {"context": "weekday", "op": "==", "value": "mon"}),
    ('referrer: "*google*"', {"context": "referrer", "op": "glob", "value": "*google*"}),
    ("referrer: https://news.example/", {"context": "referrer", "op": "==",
                                         "value": "https://news.example/"}),
    ("returning: true", {"context": "returning", "op": "==", "value": True}),
    ("returning: false", {"context": "returning", "op": "==", "value": False}),
    ("attribute: {name: ltv, gte: 100}", {"context": "attribute", "name": "ltv", "op": ">=",
                                          "value": 100}),
    ("attribute: {name: crm_tier, in: [gold, platinum]}",
     {"context": "attribute", "name": "crm_tier", "op": "in", "value": ["gold", "platinum"]}),
    ("attribute: {name: crm_tier, eq: gold}", {"context": "attribute", "name": "crm_tier",
                                               "op": "==", "value": "gold"}),
    ("attribute: {name: email, glob: '*@acme.com'}",
     {"context": "attribute", "name": "email", "op": "glob", "value": "*@acme.com"}),
    ("attribute: {name: vip, ne: true}", {"context": "attribute", "name": "vip", "op": "!=",
                                          "value": True}),
])
def test_each_context_form_compiles_to_its_documented_condition(written, expected):
    assert lf.conditions(written) == [expected]


@pytest.mark.parametrize("written, message, suggestion", [
    ("device: mobil", "unknown device 'mobil'", "mobile"),
    ("device: [mobile, tabelt]", "unknown device 'tabelt'", "tablet"),
    ("country: de", "country 'de' is not a two-letter code in capitals", "DE"),
    ("weekday: saturday", "unknown weekday 'saturday'", "sat"),
    ("weekday: [sat, sunday]", "unknown weekday 'sunday'", "sun"),
    ("devce: mobile", "unknown signal 'devce'", "device"),
    ("attribute: {nme: ltv, eq: 1}", "unknown key 'nme' in attribute", "name"),
])
def test_unknown_context_values_suggest_the_one_meant(written, message, suggestion):
    problem = lf.only_problem(lf.when(written))
    assert (problem.message, problem.suggestion, problem.trigger) == (message, suggestion, "t1")
    assert problem.line == 5


@pytest.mark.parametrize("written, message", [
    ('local_hour: ">= 25"', "the local_hour condition: '25' is not an hour from 0 to 23"),
    ("local_hour: 7.5", "the local_hour condition: 7.5 is not an hour from 0 to 23"),
    ('device: ">= mobile"', "device cannot be compared with '>='"),
    ("device: {gte: mobile}", "device cannot be compared with '>='"),
    ("weekday: {glob: 'sa*'}", "weekday cannot be compared with 'glob'"),
    ("returning: maybe", "the returning condition: 'maybe' is not true or false"),
    ("attribute: {name: ltv, gte: high}", "the value of attribute ltv is a string"),
    ("attribute: {name: ltv}", "attribute has no operator"),
    ("attribute: {name: ltv, eq: 1, ne: 2}", "attribute has more than one operator (eq, ne)"),
    ("attribute: {name: tier, in: gold}", "in is a string"),
    ("attribute: {eq: 1}", "attribute is missing the required key 'name'"),
    ("attribute: gold", "attribute is a string"),
    ("device: []", "device is an empty list"),
    ("device:", "the device condition is empty"),
    ('referrer: ["*google*", "bing.com"]', ("a list of referrers is matched exactly: * is not "
                                           "a wildcard there")),
])
def test_malformed_context_tests_are_reported(written, message):
    problem = lf.only_problem(lf.when(written))
    assert problem.message == message


def test_a_context_problem_points_at_the_value():
    problem = lf.only_problem(lf.when("device: [mobile, tabelt]"))
    assert (problem.line, problem.column) == (5, 26)


# Segments


def test_segments_compile_to_lists_of_context_conditions():
    text = lf.pack(lf.trigger(), top="""
        segments:
          mobile: {device: mobile}
          dach_evening: {country: [DE, AT, CH], local_hour: ">= 18"}
          gold: {attribute: {name: crm_tier, in: [gold, platinum]}}
          search_returning: {returning: true, referrer: "*google.*"}
    """)
    assert lf.compiled(text)["segments"] == {
        "mobile": [{"context": "device", "op": "==", "value": "mobile"}],
        "dach_evening": [{"context": "country", "op": "in", "value": ["DE", "AT", "CH"]},
                         {"context": "local_hour", "op": ">=", "value": 18}],
        "gold": [{"context": "attribute", "name": "crm_tier", "op": "in",
                  "value": ["gold", "platinum"]}],
        "search_returning": [{"context": "returning", "op": "==", "value": True},
                             {"context": "referrer", "op": "glob", "value": "*google.*"}],
    }


def test_a_segment_may_test_several_attributes():
    text = lf.pack(lf.trigger(), top="segments:\n  vip: {attribute: [{name: tier, eq: gold}, "
                               "{name: ltv, gte: 1000}]}\n")
    assert lf.compiled(text)["segments"]["vip"] == [
        {"context": "attribute", "name": "tier", "op": "==", "value": "gold"},
        {"context": "attribute", "name": "ltv", "op": ">=", "value": 1000}]


def test_a_pack_of_only_segments_is_a_pack():
    snap = lf.compiled(lf.pack(top=lf.SEGMENTS, name="segments"))
    assert list(snap["segments"]) == ["mobile", "gold"]
    assert snap["triggers"] == []


def test_a_segment_condition_compiles_to_its_name():
    assert lf.conditions("segment: gold", top=lf.SEGMENTS) == [{"segment": "gold"}]


def test_an_undefined_segment_condition_is_reported_with_a_suggestion():
    problem = lf.only_compile_problem(lf.when("segment: gld", top=lf.SEGMENTS))
    assert (problem.message, problem.suggestion) == ("unknown segment 'gld'", "gold")
    assert (problem.line, problem.column, problem.trigger) == (8, 18, "t1")


def test_a_segment_defined_in_two_packs_is_reported_at_the_second():
    first = lf.pack(top=lf.SEGMENTS, name="a")
    second = lf.pack(top="segments:\n  mobile: {device: tablet}\n", name="b")
    problem = lf.only_compile_problem(first, second)
    assert problem.file == "pack1.yaml"
    assert (problem.line, problem.column) == (3, 3)
    assert problem.message == "segment 'mobile' is also defined in pack0.yaml:3:3 (pack 'a')"


@pytest.mark.parametrize("top, message, suggestion", [
    ("segments: {mobile: {devce: mobile}}", "unknown context field 'devce' in segment mobile",
     "device"),
    ("segments: {mobile: {}}", "segment mobile is empty", None),
    ("segments: {'*': {device: mobile}}", ('segment name "*" is reserved: it stands for every '
                                          "session in models.thresholds"), None),
    ("segments: {Mobile Users: {device: mobile}}", "segment name 'Mobile Users' is not allowed",
     "mobile-users"),
    ("segments: []", "segments is a list", None),
    ("segments: {m: {device: mobile, segment: x}}", ("unknown context field 'segment' in "
                                                    "segment m"), None),
    ("segments: {m: {device: phone}}", "unknown device 'phone'", None),
])
def test_malformed_segments_are_reported(top, message, suggestion):
    problem = lf.only_problem(lf.pack(lf.trigger(), top=top + "\n"))
    assert (problem.message, problem.suggestion, problem.trigger) == (message, suggestion, None)
    assert problem.line == 2


def test_every_segment_problem_is_reported_at_once():
    top = "segments:\n  a: {devce: mobile}\n  b: {country: de}\n  c: {weekday: funday}\n"
    assert [p.line for p in lf.problems_of(lf.pack(lf.trigger(), top=top))] == [3, 4, 5]
