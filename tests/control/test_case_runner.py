"""Rule-pack tests (*.test.yaml): how cases are read, replayed and judged."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from control_plane.authoring.case_runner import CaseResult, load_suites, run_case
from control_plane.rulepack import Problem, RulePackError
from control_plane.rulepack.cases import parse_cases
from tests.cases_decisions import SHOP


def run(tmp_path: Path, cases_yaml: str) -> CaseResult:
    """The first case of `cases_yaml`, run against SHOP in the same folder."""
    (tmp_path / "shop.yaml").write_text(SHOP)
    (tmp_path / "shop.test.yaml").write_text(textwrap.dedent(cases_yaml))
    [suite] = load_suites([tmp_path])
    return run_case(suite.snapshot, suite.cases[0])


def case(events: str, expect: str, extra: str = "") -> str:
    return (f"cases:\n  - name: c\n    events: {events}\n    expect: {expect}\n"
            + (f"    {extra}\n" if extra else ""))


PRICING_READ = "[{at: 0s, type: page_view, url: /pricing}, {at: 1s, type: scroll, depth: 0.6}]"


def test_a_timed_trigger_is_seen_when_next_check_comes_due(tmp_path):
    result = run(tmp_path, case(PRICING_READ, "[{at: 3s, trigger: engaged, content: nudge}]"))
    assert result.passed
    assert [(s.at_ms, s.trigger) for s in result.seen] == [(3000, "engaged")]


def test_a_queued_action_is_seen_at_its_due_time(tmp_path):
    events = "[{at: 0s, type: page_view, url: /cart}, {at: 4s, type: custom, name: cart_abandon}]"
    result = run(tmp_path, case(events, "[{at: 6s, trigger: abandon}]"))
    assert result.passed


def test_an_action_at_another_time_fails_and_shows_both_times(tmp_path):
    result = run(tmp_path, case(PRICING_READ, "[{at: 4s, trigger: engaged}]"))
    assert not result.passed
    assert result.comparison() == [("+", "     3s  engaged -> nudge"),
                                   ("-", "     4s  engaged -> (any content)")]


def test_an_unexpected_action_fails_as_seen_but_not_expected(tmp_path):
    result = run(tmp_path, case(PRICING_READ, "[]"))
    assert not result.passed
    assert [mark for mark, _ in result.comparison()] == ["+"]


def test_an_expected_action_without_a_time_matches_any_time(tmp_path):
    assert run(tmp_path, case(PRICING_READ, "[{trigger: engaged}]")).passed


def test_an_expected_content_must_match(tmp_path):
    assert not run(tmp_path, case(PRICING_READ, "[{trigger: engaged, content: other}]")).passed


def test_the_session_ends_at_until(tmp_path):
    assert run(tmp_path, case(PRICING_READ, "none", "until: 2s")).passed


def test_state_is_carried_so_caps_hold_across_requests(tmp_path):
    events = ("[{at: 0s, type: page_view, url: /pricing}, {at: 1s, type: scroll, depth: 0.6},"
              " {at: 10s, type: page_view, url: /pricing}, {at: 11s, type: scroll, depth: 0.6}]")
    assert run(tmp_path, case(events, "[{at: 3s, trigger: engaged}]")).passed


def test_a_refused_event_is_reported_at_its_line_in_the_test_file(tmp_path):
    cases = "cases:\n  - name: c\n    events:\n      - {at: 0s, type: scroll, depth: 1.5}\n" \
            "    expect: []\n"
    result = run(tmp_path, cases)
    assert not result.passed
    assert result.error is not None
    assert result.error.startswith(f"{tmp_path / 'shop.test.yaml'}:4:9: the edge refuses")
    assert "depth" in result.error


def problems(text: str) -> list[Problem]:
    with pytest.raises(RulePackError) as info:
        parse_cases(textwrap.dedent(text), "t.test.yaml")
    return info.value.problems


def test_an_unknown_key_in_a_case_is_a_problem_with_a_suggestion():
    [problem] = problems("cases:\n  - name: c\n    events: []\n    expcet: []\n")
    assert (problem.line, problem.column, problem.suggestion) == (4, 5, "expect")
    assert problem.trigger == "c"


def test_an_unknown_event_type_is_a_problem_with_a_suggestion():
    [problem] = problems("cases:\n  - name: c\n    events: [{at: 0s, type: pageview}]\n"
                         "    expect: []\n")
    assert (problem.line, problem.suggestion) == (3, "page_view")


def test_an_event_time_without_unit_is_a_problem():
    [problem] = problems("cases:\n  - name: c\n    events: [{at: 3, type: click}]\n"
                         "    expect: []\n")
    assert "add a unit" in problem.message


def test_events_out_of_time_order_are_a_problem():
    [problem] = problems("cases:\n  - name: c\n    events: [{at: 2s, type: click}, "
                         "{at: 1s, type: click}]\n    expect: []\n")
    assert problem.message == "events are not in time order"


def test_a_case_must_say_what_it_expects():
    [problem] = problems("cases:\n  - name: c\n    events: []\n")
    assert problem.message == "the case is missing the required key 'expect'"


def test_problems_in_packs_and_test_files_are_reported_together(tmp_path):
    (tmp_path / "shop.yaml").write_text(SHOP.replace("dwell", "dwel"))
    (tmp_path / "shop.test.yaml").write_text("cases: []\n")
    with pytest.raises(RulePackError) as info:
        load_suites([tmp_path])
    assert sorted(Path(p.file).name for p in info.value.problems) == ["shop.test.yaml",
                                                                       "shop.yaml"]


def test_a_rule_pack_given_as_a_test_file_is_told_so_once(tmp_path):
    """`trigger-engine test mypacks/blog.yaml` answered five "unknown key 'pack' in the test
    file" problems, one per key of the pack."""
    from control_plane.rulepack.cases import load_cases_file
    from control_plane.rulepack.problems import RulePackError

    pack = tmp_path / "blog.yaml"
    pack.write_text("pack: blog\ntriggers:\n  - id: t\n    when: [{dwell: \">= 1s\"}]\n"
                    "    action: {content: c}\n")
    with pytest.raises(RulePackError) as caught:
        load_cases_file(pack)
    [problem] = caught.value.problems
    assert problem.message == "this is a rule pack, not a test file"
    assert (problem.line, problem.column) == (1, 1)
