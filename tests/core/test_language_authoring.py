"""The authoring tools on the full language: lint reasons about what it can and takes the
rest as written; diff says what changed in any condition, trigger key, sequence, setting,
segment or model."""

from __future__ import annotations

import pytest

from control_plane.authoring.lint import lint
from control_plane.authoring.pack_diff import diff_snapshots
from control_plane.rulepack import load_catalog, load_pack
from tests.language_factories import SEGMENTS, compiled, pack, trigger, when
from tests.reference_examples import EXAMPLES, IDS, ROOT

CATALOG = load_catalog(ROOT / "rules" / "catalog.yaml")


def findings(text: str) -> list[tuple[str, str | None]]:
    return [(f.code, f.trigger) for f in lint([load_pack(text, "p.yaml")], CATALOG)]


def capped(body: str, tid: str, content: str = "cart-reminder") -> str:
    return trigger(body, tid=tid, action=f"content: {content}") + "    cap: {per_session: 1}\n"


# lint


@pytest.mark.parametrize("heading, text", EXAMPLES, ids=IDS)
def test_lint_finds_no_dead_trigger_in_the_reference_examples(heading, text):
    assert [c for c, _ in findings(text) if c == "L003"] == []


def test_contradictory_bounds_on_a_new_signal_never_fire():
    text = pack(capped('when: [{pages: "< 2"}, {pages: "> 5"}]', "t"))
    assert findings(text) == [("L003", "t")]


def test_bounds_on_different_events_counted_are_different_quantities():
    text = pack(capped("when: [{count: {event: click, window: 5s, lt: 2}}, "
                       "{count: {event: input, window: 5s, gt: 5}}]", "t"))
    assert findings(text) == []


def test_context_conditions_are_not_reasoned_about():
    text = pack(capped("when: [{device: mobile}, {device: desktop}]", "t"))
    assert findings(text) == []


def test_per_segment_and_adaptive_thresholds_never_make_a_trigger_look_dead():
    text = pack(capped("when: [{dwell: {lt: 2s, by_segment: {mobile: 9s}}}, "
                       "{dwell: '> 5s'}]", "t"), top=SEGMENTS)
    assert findings(text) == []


def test_a_trigger_limited_to_a_segment_overlaps_the_same_trigger_for_everyone():
    text = pack(capped('when: [{dwell: ">= 3s"}]', "everyone"),
                capped('segment: mobile\nwhen: [{dwell: ">= 3s"}]', "mobile-only"),
                top=SEGMENTS)
    assert findings(text) == [("L002", "mobile-only")]


def test_triggers_in_one_group_do_not_overlap():
    text = pack(capped('group: offers\nwhen: [{dwell: ">= 3s"}]', "loose"),
                capped('group: offers\nwhen: [{dwell: ">= 5s"}]', "strict"))
    assert findings(text) == []


def test_duplicates_in_one_group_are_reported_as_never_shown_together():
    text = pack(capped('group: offers\nwhen: [{dwell: ">= 3s"}]', "a"),
                capped('group: offers\nwhen: [{dwell: ">= 3s"}]', "b"))
    [found] = lint([load_pack(text, "p.yaml")], CATALOG)
    assert found.code == "L001"
    assert "in group offers, so only one of them is ever shown" in found.message


def test_identical_sustained_conditions_make_duplicates():
    body = "when: [{sustained: {for: 5s, when: [{scroll_depth: '>= 80%'}]}}]"
    assert findings(pack(capped(body, "a"), capped(body, "b"))) == [("L001", "b")]


def test_lint_reports_sequence_step_content_missing_from_the_catalog():
    text = pack(top="""
        sequences:
          - id: s
            start: click
            steps: [{id: one, action: {content: cart-remindr}}]
    """)
    assert findings(text) == [("L005", "s/one")]


# diff


BEFORE = pack(trigger('page: /pricing\nwhen:\n  - pages: ">= 3"\n'
                      '  - count: {event: click, window: 10s, gte: 2}\n'
                      '  - scroll_depth: {gte: 78%, by_segment: {mobile: 60%}}\n'
                      "  - device: mobile", tid="p", action="content: c"),
              top=SEGMENTS + "settings: {max_actions: 3}\n")


def changes(after: str, before: str = BEFORE) -> list[str]:
    return [str(c) for c in diff_snapshots(compiled(before), compiled(after))]


def test_identical_new_language_rules_have_no_differences():
    assert changes(BEFORE) == []


@pytest.mark.parametrize("old, new, said", [
    ('pages: ">= 3"', 'pages: ">= 5"', "p: pages threshold 3 -> 5"),
    ("gte: 2}", "gte: 4}", "p: count of click over 10s threshold 2 -> 4"),
    ("mobile: 60%", "mobile: 50%", ("p: condition scroll_depth >= 78% (mobile: 60%) -> "
                                   "scroll_depth >= 78% (mobile: 50%)")),
    ("{gte: 78%, by_segment", "{gte: 78%, mode: adaptive, by_segment",
     ("p: condition scroll_depth >= 78% (mobile: 60%) -> scroll_depth >= 78% (mobile: 60%, "
     "adaptive)")),
    ("- device: mobile", "- device: [mobile, tablet]",
     "p: condition device == mobile -> device in [mobile, tablet]"),
    ("max_actions: 3", "max_actions: 2", "settings: max_actions 3 -> 2"),
    ("mobile: {device: mobile}", "mobile: {device: tablet}",
     "segments: mobile device == mobile -> device == tablet"),
])
def test_changes_in_the_new_language_are_said_as_written(old, new, said):
    assert old in BEFORE
    assert changes(BEFORE.replace(old, new)) == [said]


def test_changed_trigger_keys_are_said_field_by_field():
    after = BEFORE.replace("    action:", "    segment: mobile\n    group: offers\n"
                                          "    rollout: 50%\n    journey: 2m\n    action:")
    assert changes(after) == ["p: segment none -> mobile", "p: group none -> offers",
                              "p: journey none -> within 2m", "p: rollout 100% -> 50%"]


SEQUENCE = """
sequences:
  - id: s
    start: {type: custom, name: cart_abandon}
    steps:
      - {id: one, after: 3s, action: {content: c}}
      - {id: two, after: 5s, when: [{pages: ">= 2"}], action: {content: d}}
"""


def test_sequences_are_compared_step_by_step():
    before = pack(top=SEQUENCE)
    after = pack(top=SEQUENCE.replace("after: 5s", "after: 10s").replace('">= 2"', '">= 4"'))
    assert changes(after, before) == ["s/two: after 5s -> 10s", "s/two: pages threshold 2 -> 4"]


def test_an_added_sequence_is_described():
    [change] = changes(pack(top=SEQUENCE), pack(top=SEGMENTS))[:1]
    assert change == ("s: added (pack test-pack): at custom event cart_abandon: 3s -> c; then "
                      "5s when pages >= 2 -> d")


def test_changed_thresholds_in_models_are_said():
    top = SEGMENTS + 'models:\n  thresholds: {"t1#0": {"*": 0.7}}\n'
    before = when("scroll_depth: {gte: 0.8, mode: adaptive}", top=top)
    after = before.replace('"*": 0.7', '"*": 0.6')
    assert changes(after, before) == ["models.thresholds: t1#0 *: 0.7 -> *: 0.6"]


def test_a_snapshot_published_before_the_new_keys_diffs_as_their_defaults():
    new = compiled(pack(trigger(tid="t", action="content: c")))
    old = {**new, "triggers": [{k: v for k, v in new["triggers"][0].items()
                                if k not in ("segment", "consecutive", "group", "journey",
                                             "rollout", "holdout", "salt")}]}
    for key in ("fatigue", "segments", "models", "sequences"):
        del old[key]
    assert diff_snapshots(old, new) == []
