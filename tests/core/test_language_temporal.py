"""Temporal conditions: sustained, since (A then B within D), absent (A and not B for D),
counts of events and aggregates of event fields within a window."""

from __future__ import annotations

import pytest

from tests.language_factories import (
    SEGMENTS,
    conditions,
    first_trigger,
    only_problem,
    pack,
    trigger,
    when,
)

CLICK = {"type": "click", "name": None, "target": None}


# sustained


def test_sustained_compiles_its_duration_and_inner_conditions():
    assert conditions('sustained: {for: 5s, when: [{scroll_depth: ">= 80%"}, '
                      "{device: mobile}, {segment: gold}]}", top=SEGMENTS) == [
        {"sustained": {"for_ms": 5000, "when": [
            {"signal": "scroll_depth", "op": ">=", "value": 0.8},
            {"context": "device", "op": "==", "value": "mobile"},
            {"segment": "gold"}]}}]


def test_sustained_cannot_be_nested():
    problem = only_problem(when("sustained: {for: 5s, when: [{sustained: {for: 1s, "
                                "when: [{dwell: '>= 1s'}]}}]}"))
    assert problem.message == "sustained cannot be nested inside sustained"
    assert (problem.line, problem.column) == (5, 38)


@pytest.mark.parametrize("written, message, suggestion", [
    ("sustained: {for: 0s, when: [{dwell: '>= 1s'}]}", "for is 0", None),
    ("sustained: {for: 5, when: [{dwell: '>= 1s'}]}", ("for: 5 has no unit: a bare number is "
                                                      "ambiguous, add a unit (ms, s, m or h)"),
     None),
    ("sustained: {for: 5s, when: []}", "sustained's when is empty", None),
    ("sustained: {for: 5s}", "sustained is missing the required key 'when'", None),
    ("sustained: {fr: 5s, when: [{dwell: '>= 1s'}]}", "unknown key 'fr' in sustained", "for"),
    ("sustained: [{dwell: '>= 1s'}]", "sustained is a list", None),
    ("sustained: {for: 5s, when: [{scrol_depth: '>= 1%'}]}", "unknown signal 'scrol_depth'",
     "scroll_depth"),
])
def test_malformed_sustained_is_reported(written, message, suggestion):
    problem = only_problem(when(written))
    assert (problem.message, problem.suggestion, problem.trigger) == (message, suggestion, "t1")


# since: A then B within D


def test_since_compiles_its_event_filter():
    trig = first_trigger(pack(trigger(
        "on: {type: custom, name: checkout}\n"
        "when: [{since: {event: {type: custom, name: add_to_cart}, lte: 60s}}]")))
    assert trig["when"] == [{"signal": "since", "op": "<=", "value": 60_000,
                             "event": {"type": "custom", "name": "add_to_cart",
                                       "target": None}}]


@pytest.mark.parametrize("written, message, suggestion", [
    ("since: {event: {type: custom}, lte: 60s}", ("event is missing the required key 'name' "
                                                 "(custom events are matched by name)"), None),
    ("since: {event: custom, lte: 60s}", "a custom event needs a name", None),
    ("since: {event: cart_abandon, lte: 60s}", "unknown event type 'cart_abandon'",
     "{type: custom, name: cart_abandon}"),
    ("since: {event: clik, lte: 60s}", "unknown event type 'clik'", "click"),
    ("since: {lte: 60s}", "the since condition is missing the required key 'event'", None),
    ("since: {event: click, lte: 60}", ("the since condition: 60 has no unit: a bare number is "
                                       "ambiguous, add a unit (ms, s, m or h)"), None),
    ("since: {event: {type: scroll, target: '#x'}, lte: 1s}", ("target is not allowed for "
                                                              "scroll events"), None),
    ('since: "<= 60s"', "since needs event: write the condition as a mapping", None),
])
def test_malformed_since_is_reported(written, message, suggestion):
    problem = only_problem(when(written))
    assert (problem.message, problem.suggestion) == (message, suggestion)


# absent: A and not B for D


def test_absent_compiles_both_filters():
    assert conditions("absent: {event: input, after: {type: focus, target: '#email'}, "
                      "gte: 5s}") == [
        {"signal": "absent", "op": ">=", "value": 5000,
         "event": {"type": "input", "name": None, "target": None},
         "after": {"type": "focus", "name": None, "target": "#email"}}]


def test_absent_needs_after():
    problem = only_problem(when("absent: {event: input, gte: 5s}"))
    assert problem.message == "the absent condition is missing the required key 'after'"


def test_absent_with_a_misspelt_after_is_one_problem():
    problem = only_problem(when("absent: {event: input, aftr: focus, gte: 5s}"))
    assert (problem.message, problem.suggestion) == (("unknown key 'aftr' in the absent "
                                                     "condition"), "after")


# count


def test_count_compiles_its_event_and_window():
    assert conditions("count: {event: click, window: 10s, gte: 3}") == [
        {"signal": "count", "op": ">=", "value": 3, "window_ms": 10_000, "event": CLICK}]


def test_count_matches_an_element_event_by_target():
    [cond] = conditions("count: {event: {type: click, target: '#buy'}, window: 10s, gte: 2}")
    assert cond["event"] == {"type": "click", "name": None, "target": "#buy"}


@pytest.mark.parametrize("written, message", [
    ("count: {event: click, window: 10s, gte: 2.5}", ("the count condition: 2.5 is not a "
                                                     "whole number")),
    ("count: {event: click, gte: 2}", ("the count condition is missing the required key "
                                      "'window'")),
    ("count: {event: click, window: 11m, gte: 2}", "window 660000ms is out of range"),
    ("count: {event: click, window: 0s, gte: 2}", "window 0ms is out of range"),
    ('count: ">= 3"', "count needs event and window: write the condition as a mapping"),
])
def test_malformed_count_is_reported(written, message):
    assert only_problem(when(written)).message == message


# min, max, avg


@pytest.mark.parametrize("written, value", [
    ("avg: {field: hover.duration_ms, window: 30s, gte: 500ms}", 500),
    ("avg: {field: scroll.depth, window: 30s, gte: 50%}", 0.5),
    ("max: {field: scroll.y, window: 30s, gte: 1200}", 1200),
    ("min: {field: mousemove.x, window: 1m, lt: 20}", 20),
    ("max: {field: mousemove.y, window: 1m, gt: 0}", 0),
])
def test_aggregates_take_the_unit_of_their_field(written, value):
    [cond] = conditions(written)
    assert cond["value"] == value
    assert set(cond) == {"signal", "op", "value", "window_ms", "field"}


def test_an_aggregate_compiles_its_field_and_window():
    assert conditions("avg: {field: hover.duration_ms, window: 30s, gte: 500ms}") == [
        {"signal": "avg", "op": ">=", "value": 500, "window_ms": 30_000,
         "field": "hover.duration_ms"}]


@pytest.mark.parametrize("written, message, suggestion", [
    ("avg: {field: hover.duration, window: 30s, gte: 500ms}", "unknown field 'hover.duration'",
     "hover.duration_ms"),
    ("avg: {field: hover.duration_ms, window: 30s, gte: 500}", ("the avg condition: 500 has no "
                                                               "unit: a bare number is "
                                                               "ambiguous, add a unit (ms, s, "
                                                               "m or h)"), None),
    ("avg: {field: scroll.depth, window: 30s, gte: 80}", ("the avg condition: 80 is outside 0 "
                                                         "to 1"), "80%"),
    ("avg: {window: 30s, gte: 500}", "the avg condition is missing the required key 'field'",
     None),
])
def test_malformed_aggregates_are_reported(written, message, suggestion):
    problem = only_problem(when(written))
    assert (problem.message, problem.suggestion) == (message, suggestion)
