"""Rule packs: YAML -> validated model (with every problem located) -> snapshot."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from control_plane.rulepack import (
    Pack,
    Problem,
    RulePackError,
    compile_snapshot,
    load_pack,
    load_pack_dir,
    load_pack_file,
)
from control_plane.rulepack.compiler import page_bucket
from control_plane.rulepack.values import ValueProblem, parse_duration, parse_number, parse_ratio
from edge_module.core import decide, load_snapshot
from edge_module.core.globs import glob_match
from tests.factories import T0
from tests.language_factories import compiled, only_problem, problems_of

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"


# Factories


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def one_trigger(body: str = "", pack: str = "test-pack", tid: str = "t1") -> str:
    """A pack with one trigger: `body` (dedented) is added under `- id: <tid>`."""
    lines = "".join(f"    {line}\n" for line in textwrap.dedent(body).strip("\n").splitlines())
    return f"pack: {pack}\ntriggers:\n  - id: {tid}\n{lines}"


def with_action(body: str = "", action: str = "content: c1") -> str:
    return one_trigger(body + "\naction: {" + action + "}")




def first_trigger(text: str) -> dict:
    return compiled(text)["triggers"][0]


# The shipped packs


def test_shipped_packs_load_from_the_rules_folder():
    packs = load_pack_dir(RULES)
    assert [p.name for p in packs] == ["checkout-reminder", "pricing-discount"]


def test_shipped_packs_compile_into_a_snapshot_the_core_loads():
    snap = compile_snapshot(load_pack_dir(RULES), "rev-1", 1_700_000_000_000)
    loaded = load_snapshot(json.dumps(snap))
    assert sorted(loaded.by_id) == ["checkout-reminder", "pricing-discount"]


def test_pricing_discount_pack_compiles_to_its_documented_trigger():
    pack = load_pack_file(RULES / "pricing-discount.yaml")
    trig = compile_snapshot([pack], "r", 0)["triggers"][0]
    assert trig == {
        "id": "pricing-discount", "pack": "pricing-discount", "pages": ["/pricing"], "on": None,
        "segment": None,
        "when": [{"signal": "dwell", "op": ">=", "value": 3000},
                 {"signal": "scroll_depth", "op": ">=", "value": 0.78}],
        "consecutive": 1, "group": None, "journey": None,
        "rollout": 100, "holdout": 0, "salt": "pricing-discount",
        "action": {"content": "discount-nudge-10", "tier": "immediate", "delay_ms": 0,
                   "priority": 10},
        "cap": {"per_session": 1, "per_page": 1, "cooldown_ms": 0},
    }


def test_checkout_reminder_pack_compiles_to_a_queued_custom_event_trigger():
    pack = load_pack_file(RULES / "checkout-reminder.yaml")
    trig = compile_snapshot([pack], "r", 0)["triggers"][0]
    assert trig["on"] == {"type": "custom", "name": "cart_abandon", "target": None}
    assert trig["action"] == {"content": "cart-reminder", "tier": "queued", "delay_ms": 3000,
                              "priority": 5}
    assert trig["cap"]["per_session"] == 1


def test_pricing_discount_fires_for_an_engaged_reader_of_the_pricing_page():
    snap = load_snapshot(json.dumps(compile_snapshot(load_pack_dir(RULES), "r", 0)))
    request = {
        "session_id": "s-1", "now_ms": T0 + 3000, "context": {"url": "/pricing"},
        "events": [{"type": "page_view", "ts_ms": T0, "url": "/pricing"},
                   {"type": "scroll", "ts_ms": T0 + 1000, "depth": 0.8}],
    }
    response = decide(snap, request, None)
    assert [a["content"] for a in response["actions"]] == ["discount-nudge-10"]


def test_pack_records_the_sha256_of_its_source_text():
    path = RULES / "pricing-discount.yaml"
    assert load_pack_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# Loading files and folders


def test_load_pack_file_names_problems_by_the_path_as_given(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("pack: x\n")
    with pytest.raises(RulePackError) as info:
        load_pack_file(str(path))
    assert info.value.problems[0].file == str(path)


def test_a_missing_file_is_a_problem_not_a_traceback(tmp_path):
    with pytest.raises(RulePackError) as info:
        load_pack_file(tmp_path / "nope.yaml")
    assert info.value.problems[0].line == 1
    assert "cannot read" in info.value.problems[0].message


def test_a_file_that_is_not_utf8_is_a_problem(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"pack: x\ndescription: caf\xe9\n")
    problem = load_problems_of_file(path)[0]
    assert (problem.line, problem.column) == (2, 17)


def load_problems_of_file(path: Path) -> list[Problem]:
    with pytest.raises(RulePackError) as info:
        load_pack_file(path)
    return info.value.problems


def test_load_pack_dir_reads_yaml_files_by_name_and_skips_test_fixtures(tmp_path):
    (tmp_path / "b.yml").write_text(with_action().replace("test-pack", "bbb").replace("t1", "tb"))
    (tmp_path / "a.yaml").write_text(with_action().replace("test-pack", "aaa"))
    (tmp_path / "a.test.yaml").write_text("not: a pack")
    (tmp_path / "schema.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("not: a pack")
    assert [p.name for p in load_pack_dir(tmp_path)] == ["aaa", "bbb"]


def test_load_pack_dir_reports_the_problems_of_every_file_at_once(tmp_path):
    (tmp_path / "a.yaml").write_text("pack: a\n")
    (tmp_path / "b.yaml").write_text("")
    with pytest.raises(RulePackError) as info:
        load_pack_dir(tmp_path)
    assert {Path(p.file).name for p in info.value.problems} == {"a.yaml", "b.yaml"}


def test_an_unexpected_failure_becomes_a_problem(monkeypatch):
    from control_plane.rulepack import validate

    def explode(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(validate._Checker, "pack", explode)
    problem = only_problem(with_action())
    assert (problem.line, problem.column) == (1, 1)
    assert "boom" in problem.message


# Problems: what and where


def test_unknown_trigger_key_points_at_the_key_and_suggests_the_right_one():
    text = yaml_text("""
        pack: p
        triggers:
          - id: t1
            actoin:
              content: c1
    """)
    problem = only_problem(text)  # and no second "missing 'action'" for the same mistake
    assert (problem.file, problem.line, problem.column) == ("p.yaml", 4, 5)
    assert problem.trigger == "t1"
    assert "unknown key 'actoin'" in problem.message
    assert problem.suggestion == "action"


def test_unknown_top_level_key_is_reported_without_a_trigger():
    text = "pack: p\ndescriptoin: x\ntriggers:\n  - {id: t, action: {content: c}}\n"
    problem = only_problem(text)
    assert (problem.line, problem.column, problem.trigger) == (2, 1, None)
    assert problem.suggestion == "description"


@pytest.mark.parametrize("body, key, suggestion", [
    ("action: {content: c1, priorty: 1}", "priorty", "priority"),
    ("action: {content: c1}\ncap: {per_sesion: 1}", "per_sesion", "per_session"),
    ("on: {type: click, traget: '#b'}\naction: {content: c1}", "traget", "target"),
    ("when: [{scroll_velocity: {gte: 1, windw: 2s}}]\naction: {content: c1}", "windw", "window"),
])
def test_unknown_keys_in_nested_mappings_suggest_the_right_one(body, key, suggestion):
    problem = only_problem(one_trigger(body))
    assert problem.message.startswith(f"unknown key {key!r}")
    assert problem.suggestion == suggestion
    assert problem.trigger == "t1"


def test_unknown_signal_points_at_the_signal_and_suggests_the_right_one():
    text = with_action('when:\n  - scrol_depth: ">= 78%"')
    problem = only_problem(text)
    assert (problem.line, problem.column) == (5, 9)
    assert problem.message == "unknown signal 'scrol_depth'"
    assert problem.suggestion == "scroll_depth"


def test_unknown_event_type_suggests_the_right_one():
    problem = only_problem(with_action("on: pageview"))
    assert problem.message == "unknown event type 'pageview'"
    assert problem.suggestion == "page_view"
    assert (problem.line, problem.column) == (4, 9)


def test_unknown_tier_suggests_the_right_one():
    problem = only_problem(with_action(action="content: c1, tier: queud, delay: 2s"))
    assert problem.message == "unknown tier 'queud'"
    assert problem.suggestion == "queued"


@pytest.mark.parametrize("op, suggestion", [("=>", ">="), ("=<", "<="), ("=", "=="),
                                            ("<>", "!="), ("gte", ">=")])
def test_unknown_operator_suggests_the_operator_meant(op, suggestion):
    problem = only_problem(with_action(f'when: [{{dwell: "{op} 3s"}}]'))
    assert problem.message == f"unknown operator {op!r}"
    assert problem.suggestion == suggestion


def test_operator_symbol_as_mapping_key_suggests_the_keyword():
    problem = only_problem(with_action('when: [{dwell: {">=": 3s}}]'))
    assert problem.suggestion == "gte"


def test_missing_required_key_points_at_the_mapping_that_lacks_it():
    text = yaml_text("""
        pack: p
        triggers:
          - id: t1
            action:
              tier: immediate
    """)
    problem = only_problem(text)
    assert (problem.line, problem.column) == (5, 7)
    assert problem.message == "action is missing the required key 'content'"


def test_missing_triggers_points_at_the_document():
    problem = only_problem("pack: p\n")
    assert (problem.line, problem.column) == (1, 1)
    assert "'triggers'" in problem.message


def test_a_list_where_a_mapping_is_expected_is_a_type_problem():
    problem = only_problem(one_trigger("action:\n  - content: c1"))
    assert problem.message == "action is a list"
    assert problem.expected.startswith("a mapping")
    assert (problem.line, problem.column) == (5, 7)


def test_a_number_where_a_string_is_expected_asks_for_quotes():
    problem = only_problem(with_action(action="content: 404"))
    assert problem.message == "content is a number (404)"
    assert 'put it in quotes: "404"' in problem.expected


def test_duplicate_trigger_id_points_at_the_second_and_names_the_first_line():
    text = yaml_text("""
        pack: p
        triggers:
          - id: same
            action: {content: a}
          - id: same
            action: {content: b}
    """)
    problem = only_problem(text)
    assert (problem.line, problem.column, problem.trigger) == (5, 9, "same")
    assert "duplicate trigger id 'same'" in problem.message
    assert "line 3" in problem.message


def test_duplicate_yaml_key_is_reported_at_the_second_key():
    text = with_action(action="content: a, content: b")
    problem = only_problem(text)
    assert "duplicate key 'content'" in problem.message
    assert (problem.line, problem.column) == (4, 26)


@pytest.mark.parametrize("value", ["1.4", '"140%"', '"-5%"', "-0.1"])
def test_scroll_depth_outside_the_page_is_reported(value):
    problem = only_problem(with_action(f"when: [{{scroll_depth: {{gte: {value}}}}}]"))
    assert "outside" in problem.message or "negative" in problem.message
    assert problem.trigger == "t1"


def test_scroll_depth_given_as_a_whole_percentage_number_suggests_a_percent():
    problem = only_problem(with_action("when: [{scroll_depth: {gte: 78}}]"))
    assert problem.suggestion == "78%"


@pytest.mark.parametrize("text, suggestion", [
    ("3 secs", "3s"), ("3 seconds", "3s"), ("3S", "3s"), ("-1s", None), ("abc", None),
    ("1.5ms", None), ("", None),
])
def test_bad_durations_are_reported_with_the_expected_form(text, suggestion):
    problem = only_problem(with_action(action=f'content: c1, delay: "{text}"'))
    assert problem.expected == "a duration such as 3s or 500ms"
    assert problem.suggestion == suggestion
    assert (problem.line, problem.column) == (4, 34)


@pytest.mark.parametrize("body", ['delay: 3', 'delay: "3"'])
def test_a_duration_without_unit_asks_to_add_a_unit(body):
    problem = only_problem(with_action(action=f"content: c1, {body}"))
    assert "add a unit" in problem.message


def test_a_shorthand_duration_without_unit_asks_to_add_a_unit():
    problem = only_problem(with_action('when: [{dwell: ">= 3"}]'))
    assert "add a unit" in problem.message


def test_malformed_yaml_is_reported_at_its_line_and_column():
    problem = only_problem("pack: p\ntriggers: [a, b\n")
    assert problem.message.startswith("invalid YAML")
    assert (problem.line, problem.column) == (3, 1)


def test_an_unquoted_comparison_is_a_yaml_error_that_says_to_quote_it():
    problem = only_problem("pack: p\ntriggers:\n  - id: t\n    when:\n      - dwell: >= 3s\n")
    assert (problem.line, problem.column) == (5, 17)
    assert "quotes" in problem.expected


def test_an_unquoted_not_equal_comparison_is_one_problem_saying_to_quote_it():
    problem = only_problem(with_action("when: [{dwell: != 3s}]"))
    assert "unsupported YAML tag" in problem.message
    assert '"!= 3s"' in problem.expected


def test_an_empty_file_is_a_problem():
    for text in ("", "# only a comment\n", "---\n"):
        problem = only_problem(text)
        assert problem.message == "the file is empty"
        assert (problem.line, problem.column) == (1, 1)


def test_a_document_that_is_not_a_mapping_is_a_problem():
    problem = only_problem("- pack: p\n")
    assert problem.message == "the rule pack is a list"


def test_several_documents_in_one_file_are_a_problem():
    problem = only_problem(with_action() + "---\npack: q\n")
    assert problem.message.startswith("invalid YAML")


@pytest.mark.parametrize("body", [
    "action: {content: c1, priority: true}",
    "action: {content: c1}\ncap: {per_session: yes}",
    "when: [{scroll_velocity: {gte: false}}]\naction: {content: c1}",
])
def test_booleans_are_not_numbers(body):
    problem = only_problem(one_trigger(body))
    assert "a boolean" in problem.message


def test_all_problems_are_reported_at_once():
    text = yaml_text("""
        pack: p
        triggers:
          - id: t1
            on: pageview
            when:
              - dwel: ">= 3s"
            action:
              content: c1
              priority: 5000
    """)
    problems = problems_of(text)
    assert [(p.line, p.trigger) for p in problems] == [(4, "t1"), (6, "t1"), (9, "t1")]


def test_a_queued_action_needs_a_delay():
    problem = only_problem(with_action(action="content: c1, tier: queued"))
    assert "needs a delay" in problem.message
    assert (problem.line, problem.column) == (4, 33)


def test_a_custom_event_needs_a_name():
    problem = only_problem(with_action("on: {type: custom}"))
    assert "'name'" in problem.message


def test_a_name_is_only_allowed_for_custom_events():
    problem = only_problem(with_action("on: {type: click, name: x}"))
    assert problem.message == "name is only allowed for custom events, not click"
    assert (problem.line, problem.column) == (4, 23)


def test_a_target_is_only_allowed_for_element_events():
    problem = only_problem(with_action("on: {type: page_view, target: '#x'}"))
    assert "target is not allowed" in problem.message


def test_hover_needs_a_target():
    problem = only_problem(with_action('when: [{hover: ">= 900ms"}]'))
    assert "hover needs target" in problem.message


def test_a_condition_with_two_operators_is_a_problem():
    problem = only_problem(with_action("when: [{dwell: {gte: 1s, lt: 5s}}]"))
    assert "more than one operator" in problem.message


def test_a_condition_naming_two_signals_is_a_problem():
    text = with_action('when:\n  - dwell: ">= 1s"\n    scroll_depth: ">= 50%"')
    problem = only_problem(text)
    assert "exactly one signal" in problem.message


@pytest.mark.parametrize("page, suggestion", [
    ("pricing", "/pricing"), ("https://shop.example/pricing", "/pricing"), ("/p?x=1", "/p"),
    ("/p#top", "/p"),
])
def test_a_bad_page_glob_is_reported_with_a_fix(page, suggestion):
    problem = only_problem(with_action(f'page: "{page}"'))
    assert problem.suggestion == suggestion


@pytest.mark.parametrize("name, suggestion", [("Pricing Discount", "pricing-discount"),
                                              ("pricing_discount", "pricing-discount")])
def test_a_pack_name_outside_the_alphabet_suggests_a_valid_one(name, suggestion):
    problem = only_problem(with_action().replace("test-pack", f'"{name}"'))
    assert problem.suggestion == suggestion


def test_a_window_beyond_the_maximum_is_reported():
    problem = only_problem(with_action("when: [{scroll_velocity: {gte: 1, window: 11m}}]"))
    assert "window" in problem.message


def test_problem_reads_as_file_line_column_trigger_message_and_hints():
    problem = Problem("r.yaml", 4, 5, "unknown key 'actoin' in the trigger", trigger="t1",
                      expected="one of id, action", suggestion="action")
    assert str(problem) == ("r.yaml:4:5: [t1] unknown key 'actoin' in the trigger "
                            "(expected one of id, action; did you mean 'action'?)")
    assert str(Problem("r.yaml", 1, 1, "the file is empty")) == "r.yaml:1:1: the file is empty"
    assert problem.to_dict() == {"file": "r.yaml", "line": 4, "column": 5,
                                 "message": "unknown key 'actoin' in the trigger",
                                 "trigger": "t1", "expected": "one of id, action",
                                 "suggestion": "action"}


def test_rule_pack_error_lists_one_problem_per_line():
    error = RulePackError([Problem("a", 1, 1, "x"), Problem("b", 2, 3, "y")])
    assert str(error) == "a:1:1: x\nb:2:3: y"


# Values


@pytest.mark.parametrize("text, ms", [
    ("3s", 3000), ("500ms", 500), ("1.5s", 1500), ("2m", 120_000), ("1h", 3_600_000),
    ("0s", 0), (".5s", 500), ("1.1s", 1100), ("0.001s", 1),
])
def test_durations_parse_to_whole_milliseconds(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("raw", [3, "3", "3 secs", "3 seconds", "-1s", "abc", "1.5ms", "3S",
                                 "", True])
def test_malformed_durations_are_refused(raw):
    with pytest.raises(ValueProblem):
        parse_duration(raw)


@pytest.mark.parametrize("raw, value", [
    (0.78, 0.78), ("78%", 0.78), ("0.5", 0.5), (0, 0), (1, 1), ("100%", 1.0), ("0%", 0.0),
    ("12.5%", 0.125),
])
def test_ratios_parse_to_a_fraction(raw, value):
    assert parse_ratio(raw) == value


@pytest.mark.parametrize("raw", [1.4, "140%", -0.1, "-1%", "abc", "78 %%", True, float("nan")])
def test_ratios_outside_zero_to_one_are_refused(raw):
    with pytest.raises(ValueProblem):
        parse_ratio(raw)


@pytest.mark.parametrize("raw, value", [(800, 800), ("800", 800), ("2.5", 2.5), (0, 0)])
def test_numbers_parse(raw, value):
    assert parse_number(raw) == value


@pytest.mark.parametrize("raw", [-1, "-1", "1e999", "800px", False, float("inf")])
def test_negative_or_non_numbers_are_refused(raw):
    with pytest.raises(ValueProblem):
        parse_number(raw)


# Compilation


def test_conditions_compile_with_their_signal_parameters():
    text = with_action(yaml_text("""
        when:
          - dwell: ">=3s"
          - scroll_depth: {gte: 0.5}
          - scroll_velocity: {gte: 800, window: 2s}
          - scroll_velocity: "< 10"
          - hover: {target: "#cta", gt: 900ms}
    """))
    assert first_trigger(text)["when"] == [
        {"signal": "dwell", "op": ">=", "value": 3000},
        {"signal": "scroll_depth", "op": ">=", "value": 0.5},
        {"signal": "scroll_velocity", "op": ">=", "value": 800, "window_ms": 2000},
        {"signal": "scroll_velocity", "op": "<", "value": 10, "window_ms": 1000},
        {"signal": "hover", "op": ">", "value": 900, "target": "#cta"},
    ]


def test_defaults_fill_in_what_a_trigger_leaves_out():
    trig = first_trigger(with_action())
    assert trig["pages"] == ["*"]
    assert trig["on"] is None
    assert trig["action"] == {"content": "c1", "tier": "immediate", "delay_ms": 0, "priority": 0}
    assert trig["cap"] == {"per_session": None, "per_page": 1, "cooldown_ms": 0}


def test_per_page_unlimited_compiles_to_no_limit():
    trig = first_trigger(with_action("cap: {per_page: unlimited, cooldown: 30s}"))
    assert trig["cap"] == {"per_session": None, "per_page": None, "cooldown_ms": 30_000}


def test_the_on_key_is_an_event_not_a_yaml_boolean():
    trig = first_trigger(with_action("on: {type: click, target: '#buy'}"))
    assert trig["on"] == {"type": "click", "name": None, "target": "#buy"}


@pytest.mark.parametrize("glob, bucket", [
    ("*", ("any", "*")),
    ("/pricing", ("exact", "/pricing")),
    ("/products/*", ("prefix", "/products/")),
    ("/products/**", ("prefix", "/products/")),
    ("/blog/*/pricing", ("glob", "/blog/*/pricing")),
    ("*/pricing", ("glob", "*/pricing")),
    ("/a.b/**/c*", ("glob", "/a.b/*/c*")),
])
def test_page_globs_go_to_the_right_index_bucket(glob, bucket):
    assert page_bucket(glob) == bucket


@pytest.mark.parametrize("glob, path, matches", [
    ("/blog/*/pricing", "/blog/2024/pricing", True),
    ("/blog/*/pricing", "/blog/a/b/pricing", True),
    ("/blog/*/pricing", "/blog/2024/pricing/x", False),
    ("/blog/*/pricing", "/blog/pricing", False),
    ("/a.b/*x", "/a.b/yx", True),
    ("/a.b/*x", "/aXb/yx", False),
    ("/a.b/*x", "/a.b/yx\n", False),
])
def test_pattern_globs_match_whole_paths_only(glob, path, matches):
    kind, key = page_bucket(glob)
    assert kind == "glob"
    assert glob_match(key, path) is matches


def test_index_lists_each_trigger_under_every_page_it_covers():
    text = yaml_text("""
        pack: p
        triggers:
          - id: a
            page: /pricing
            action: {content: c}
          - id: b
            page: "*"
            action: {content: c}
          - id: c
            page: [/products/*, /pricing, /products/*, "/blog/*/pricing"]
            action: {content: c}
          - id: d
            page: [/products/*, /about]
            action: {content: c}
    """)
    assert compiled(text)["index"] == {
        "exact": {"/about": [3], "/pricing": [0, 2]},
        "prefix": [["/products/", [2, 3]]],
        "glob": [["/blog/*/pricing", [2]]],
        "any": [1],
    }


def test_triggers_are_ordered_by_pack_then_file_order():
    a = ("pack: a\ntriggers:\n  - {id: a2, action: {content: c}}\n"
         "  - {id: a1, action: {content: c}}\n")
    b = "pack: b\ntriggers:\n  - {id: b1, action: {content: c}}\n"
    snap = compiled(b, a)
    assert [t["id"] for t in snap["triggers"]] == ["b1", "a2", "a1"]
    assert [p["pack"] for p in snap["packs"]] == ["b", "a"]


def test_compile_is_deterministic():
    packs = load_pack_dir(RULES)
    first = json.dumps(compile_snapshot(packs, "r", 5))
    again = json.dumps(compile_snapshot(load_pack_dir(RULES), "r", 5))
    assert first == again


def test_snapshot_header_carries_revision_creation_time_and_pack_sources():
    pack = load_pack(with_action(), "rules/x.yaml")
    snap = compile_snapshot([pack], "rev-9", 1234)
    assert (snap["format"], snap["revision"], snap["created_ms"]) == ("edge-triggers/1", "rev-9",
                                                                      1234)
    assert snap["packs"] == [{"pack": "test-pack", "file": "rules/x.yaml", "sha256": pack.sha256,
                              "triggers": 1}]
    assert snap["limits"] == {"max_events": 500, "max_actions": 3}


def test_duplicate_trigger_ids_across_packs_name_both_files_and_lines():
    a = load_pack(with_action(), "rules/a.yaml")
    b = load_pack("pack: other\ntriggers:\n  - id: zz\n    action: {content: c}\n"
                  "  - id: t1\n    action: {content: c}\n", "rules/b.yaml")
    with pytest.raises(RulePackError) as info:
        compile_snapshot([a, b], "r", 0)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.column, problem.trigger) == ("rules/b.yaml", 5, 9,
                                                                             "t1")
    assert "rules/a.yaml:3:9" in problem.message


def test_duplicate_pack_names_are_reported():
    a = load_pack(with_action(), "rules/a.yaml")
    b = load_pack(with_action().replace("t1", "t2"), "rules/b.yaml")
    with pytest.raises(RulePackError) as info:
        compile_snapshot([a, b], "r", 0)
    [problem] = info.value.problems
    assert problem.file == "rules/b.yaml"
    assert "pack name 'test-pack'" in problem.message and "rules/a.yaml" in problem.message


def test_a_pack_given_twice_clashes_with_itself():
    a = load_pack(with_action(), "rules/a.yaml")
    with pytest.raises(RulePackError) as info:
        compile_snapshot([a, a], "r", 0)
    assert len(info.value.problems) == 2  # the pack name and its one trigger id


def test_every_valid_pack_compiles_to_a_snapshot_the_core_loads():
    text = with_action(yaml_text("""
        page: [/products/*, "/blog/*/x", /about]
        on: {type: hover, target: "#cta"}
        when:
          - scroll_velocity: {lt: 5, window: 10m}
          - hover: {target: "#cta", gte: 1s}
    """), action="content: c1, tier: queued, delay: 1m, priority: -1000")
    snap = load_snapshot(json.dumps(compiled(text)))
    assert snap.by_id["t1"].on_key == "hover"


def test_a_pack_loads_into_the_frozen_model():
    pack = load_pack(with_action("description: hi"), "x.yaml")
    assert isinstance(pack, Pack)
    assert pack.triggers[0].description == "hi"
    with pytest.raises(AttributeError):
        pack.name = "other"  # type: ignore[misc]


def test_an_alias_that_contains_itself_is_a_problem_not_a_crash():
    problems = problems_of("pack: p\ntriggers: &t\n  - id: a\n    action: {content: c}\n"
                           "    cap: *t\n")
    assert any("refers to itself" in p.message for p in problems)


def test_yaml_anchors_and_aliases_can_share_a_condition():
    text = yaml_text("""
        pack: p
        triggers:
          - id: a
            when: [&engaged {dwell: ">= 3s"}]
            action: {content: c}
          - id: b
            when: [*engaged]
            action: {content: c}
    """)
    assert [t["when"] for t in compiled(text)["triggers"]] == [
        [{"signal": "dwell", "op": ">=", "value": 3000}]] * 2


PACK_WITH = """pack: p
description: {description}
triggers:
  - id: t1
    page: {page}
    when:
      - dwell: ">= 3s"
    action:
      content: c1
"""


def test_a_character_written_as_two_json_halves_is_that_character():
    pack = load_pack(PACK_WITH.format(description='"Sale \\ud83d\\ude00"', page="/pricing"),
                     "p.yaml")
    assert pack.description == "Sale \U0001F600"


@pytest.mark.parametrize("description,page,where", [
    ('"Sale \\ud83d!"', "/pricing", (2, 14)),
    ("sale", '"/pricing\\udc00"', (5, 11)),
    ('"\\ud83d\\ude00 \\ude00"', "/pricing", (2, 14)),
])
def test_half_a_character_is_a_problem_at_its_position(description, page, where):
    """YAML reads "\\ud83d" as half a character, which no page or terminal can show: it
    passed every check, then the console's pack pages answered 500 and `diff` crashed."""
    problem = only_problem(PACK_WITH.format(description=description, page=page))
    assert (problem.line, problem.column) == where
    assert "half of a character" in problem.message and problem.expected
    str(problem).encode()  # the problem itself prints anywhere


def test_half_a_character_in_a_key_is_a_problem_at_the_key():
    text = PACK_WITH.format(description="d", page="/pricing").replace(
        "pack: p", 'pack: p\n"x\\udc00": 1')
    assert any(p.line == 2 and "half of a character" in p.message for p in problems_of(text))


def test_yaml_nested_too_deeply_is_a_problem_where_it_gets_deep():
    text = "pack: p\ntriggers: " + "[" * 5000 + "]" * 5000 + "\n"
    problem = only_problem(text)
    assert (problem.line, problem.column) == (2, 11 + 64)  # the 65th bracket
    assert "nests too deeply" in problem.message and problem.expected


def test_a_key_over_the_readers_length_says_so_at_the_key():
    problem = only_problem("pack: p\ntriggers:\n  - " + "k" * 1100 + ": 1\n")
    assert (problem.line, problem.column) == (3, 5)
    assert "a key of 1100 characters" in problem.message and "1,024" in problem.expected


def test_an_unquoted_value_holding_a_colon_is_told_to_be_quoted():
    problem = only_problem("pack: p\ndescription: Sale: 10 off\ntriggers: []\n")
    assert problem.line == 2 and "quotes around a value" in problem.expected
