"""Every duration in a pack is at most ten years and every number within +-(2^53 - 1): a
value past them is a located problem at validation (never an internal error, a 500 at
compile, or a snapshot the edge refuses), and numbers read the same wherever they go."""

from __future__ import annotations

import json
import textwrap

import pytest

from control_plane.rulepack import RulePackError, load_pack
from control_plane.rulepack.values import (
    MAX_DURATION_HOURS,
    ValueProblem,
    parse_duration,
    parse_number,
)
from edge_module.core import load_snapshot
from edge_module.core.snapshot_checks import MAX_DURATION_MS, MAX_NUMBER
from tests.language_factories import compiled, only_problem, problems_of

DIGITS = "9" * 4298


def trigger(when: str = "", action: str = "{content: c}", extra: str = "") -> str:
    """A pack with one trigger `t` (`when`: one condition's YAML, `extra`: trigger keys)."""
    text = "pack: p\ntriggers:\n  - id: t\n"
    if when:
        text += f"    when:\n      - {when}\n"
    text += extra + f"    action: {action}\n"
    return text


# -- durations ------------------------------------------------------------------------------

def test_ten_years_is_the_longest_duration():
    assert parse_duration(f"{MAX_DURATION_HOURS}h") == MAX_DURATION_MS
    with pytest.raises(ValueProblem) as caught:
        parse_duration(f"{MAX_DURATION_HOURS + 1}h")
    assert caught.value.expected == f"a duration of at most {MAX_DURATION_HOURS}h (ten years)"


def test_a_duration_of_thousands_of_digits_is_a_located_problem_not_a_compile_crash():
    problem = only_problem(trigger(when=f'dwell: ">= {DIGITS}h"'))
    assert (problem.line, problem.column) == (5, 16)
    assert "longer than ten years" in problem.message
    assert len(problem.message) < 200  # the value is shortened, not repeated whole
    assert problem.expected == f"a duration of at most {MAX_DURATION_HOURS}h (ten years)"


@pytest.mark.parametrize("where, text", [
    ("delay", trigger(action="{content: c, tier: queued, delay: 99999999999999h}")),
    ("cooldown", trigger(extra="    cap: {per_session: 2, cooldown: 99999999999999h}\n")),
    ("journey", trigger(extra="    journey: {within: 99999999999999h}\n")),
    ("quiet_after_dismiss", "pack: p\nsettings:\n  fatigue: {quiet_after_dismiss: "
                            "99999999999999h}\ntriggers:\n  - id: t\n    action: {content: c}\n"),
    ("since", trigger(when="since: {event: click, gte: 99999999999999h}")),
    ("sustained", trigger(when="sustained: {for: 99999999999999h, when: [{dwell: '>= 1s'}]}")),
    ("sequence after", "pack: p\nsequences:\n  - id: s\n    start: click\n    steps:\n"
                       "      - {id: a, after: 99999999999999h, action: {content: c}}\n"),
])
def test_every_duration_past_ten_years_is_a_problem(where, text):
    problem = only_problem(text)
    assert "longer than ten years" in problem.message, (where, str(problem))


def test_a_pack_at_every_bound_compiles_into_a_snapshot_the_edge_loads():
    top = f"{MAX_DURATION_HOURS}h"
    text = ("pack: p\nsettings:\n  fatigue: {quiet_after_dismiss: " + top + "}\n"
            "triggers:\n  - id: t\n    when:\n      - dwell: \">= " + top + "\"\n"
            f"      - pages: {{gte: {MAX_NUMBER}}}\n"
            f"    cap: {{per_session: {MAX_NUMBER}, cooldown: {top}}}\n"
            f"    journey: {{within: {top}}}\n"
            f"    action: {{content: c, tier: queued, delay: {top}}}\n")
    snapshot = compiled(text)
    json.dumps(snapshot)
    assert load_snapshot(json.dumps(snapshot)).triggers[0].delay_ms == MAX_DURATION_MS


def test_a_model_threshold_in_ms_past_ten_years_is_a_problem():
    text = textwrap.dedent(f"""\
        pack: p
        models:
          thresholds:
            't#0': {{'*': {MAX_DURATION_MS + 1}}}
        triggers:
          - id: t
            when:
              - dwell: {{gte: 3s, mode: adaptive}}
            action: {{content: c}}
        """)
    with pytest.raises(RulePackError) as caught:
        compiled(text)  # thresholds are read against the conditions of every pack
    assert any("longer than ten years" in p.message for p in caught.value.problems)


# -- numbers --------------------------------------------------------------------------------

def test_an_integer_of_thousands_of_digits_in_a_threshold_is_a_located_problem():
    problem = only_problem(trigger(when=f'scroll_velocity: ">= {"9" * 4400}"'))
    assert (problem.line, problem.column) == (5, 26)
    assert "too large" in problem.message and "internal error" not in problem.message


def test_a_count_past_2_53_is_a_problem():
    assert "too large" in only_problem(trigger(when=f"pages: {{gte: {MAX_NUMBER + 1}}}")).message
    cap = only_problem(trigger(extra=f"    cap: {{per_session: {MAX_NUMBER + 1}}}\n"))
    assert "too large" in cap.message and cap.expected.endswith("(2^53 - 1)")


def test_a_plain_number_past_2_53_is_refused():
    with pytest.raises(ValueProblem):
        parse_number(str(MAX_NUMBER + 1))
    assert parse_number(str(MAX_NUMBER)) == MAX_NUMBER


def test_an_exponent_reads_as_a_number_wherever_a_number_goes():
    # YAML 1.1 reads 1e-9 as text; a threshold's 1e3 was a number, z's 1e-9 "a string"
    text = ("pack: p\nmodels:\n  baselines:\n    dwell: {mean: 1000, std: 1e2}\n"
            "triggers:\n  - id: t\n    when:\n      - dwell: {gte: 1s, mode: hybrid, z: 1e-9}\n"
            "      - scroll_velocity: {gte: 1e3}\n    action: {content: c}\n")
    when = compiled(text)["triggers"][0]["when"]
    assert when[0]["z"] == 1e-9 and when[1]["value"] == 1000


@pytest.mark.parametrize("condition", ["min: {field: mousemove.x, window: 1s, gte: -5}",
                                       "avg: {field: scroll.y, window: 1s, lt: -5}",
                                       "max: {field: mousemove.y, window: 1s, gt: -1e2}"])
def test_a_px_field_aggregate_takes_a_negative_threshold(condition):
    assert compiled(trigger(when=condition))["triggers"][0]["when"][0]["value"] < 0


@pytest.mark.parametrize("condition", ["scroll_velocity: {gte: -5}",
                                       "min: {field: hover.duration_ms, window: 1s, gte: -5ms}",
                                       "avg: {field: scroll.depth, window: 1s, gte: -0.5}"])
def test_other_thresholds_stay_non_negative(condition):
    assert problems_of(trigger(when=condition))


# -- the control plane: such a pack is never stored --------------------------------------------

def test_the_control_plane_refuses_the_pack_instead_of_storing_it(tmp_path):
    from tests.servers import control_client

    client = control_client(tmp_path)
    text = trigger(when=f'dwell: ">= {DIGITS}h"')
    for method, url in (("post", "/v1/packs/validate"), ("post", "/v1/compile"),
                        ("put", "/v1/packs/big")):
        answer = getattr(client, method)(url, data=text,
                                         headers={"Content-Type": "application/yaml"})
        assert answer.status_code in (200, 400, 422), (url, answer.status_code)
        body = answer.get_json()
        problems = body.get("problems") or body.get("error", {}).get("problems")
        assert problems and "ten years" in problems[0]["expected"], (url, body)
    assert client.get("/v1/packs/big").status_code == 404


def test_load_pack_never_reports_an_internal_error_for_long_numbers():
    for text in (trigger(when=f"pages: {{gte: \"{'9' * 4400}\"}}"),
                 trigger(when=f"scroll_velocity: {{gte: {'9' * 4400}}}"),
                 trigger(extra=f"    cap: {{per_session: {'9' * 4400}}}\n")):
        with pytest.raises(Exception) as caught:
            load_pack(text, "m.yaml")
        assert "internal error" not in str(caught.value)


def test_a_learned_models_provenance_number_past_2_53_is_a_problem():
    # the edge refuses a snapshot holding one: the pack must not validate
    text = textwrap.dedent(f"""\
        pack: p
        models:
          learned:
            t#0:
              '*': {{features: [pages], weights: {{pages: 0.4}},
                     trained: {{rows: {MAX_NUMBER + 1}}}}}
        triggers:
          - id: t
            action: {{content: c}}
        """)
    assert any("too large" in p.message for p in problems_of(text))


def test_an_attribute_value_past_two_to_the_53_is_a_problem_at_its_place():
    """It validated, and then the snapshot loader refused the compiled snapshot at publish."""
    import pytest as _pytest

    from control_plane.rulepack import load_pack
    from control_plane.rulepack.problems import RulePackError

    text = ("pack: big\ntriggers:\n  - id: t\n    when:\n"
            "      - attribute: {name: ltv, eq: 12345678901234567890}\n"
            "    action: {content: c}\n")
    with _pytest.raises(RulePackError) as caught:
        load_pack(text, "big.yaml")
    [problem] = caught.value.problems
    assert (problem.line, "too large" in problem.message) == (5, True)
