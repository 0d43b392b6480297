"""Diff between two versions of the rules, in plain words."""

from __future__ import annotations

import textwrap

from control_plane.authoring.pack_diff import diff_snapshots
from control_plane.rulepack import compile_snapshot, load_pack
from tests.cases_decisions import PRICING


def snapshot(text: str) -> dict:
    return compile_snapshot([load_pack(textwrap.dedent(text), "p.yaml")], "r", 0)


def changes(after: str, before: str = PRICING) -> list[str]:
    return [str(c) for c in diff_snapshots(snapshot(before), snapshot(after))]


def test_identical_rules_have_no_differences():
    assert changes(PRICING) == []


def test_a_changed_threshold_is_said_with_both_values_in_the_packs_units():
    assert changes(PRICING.replace(">= 3s", ">= 5s")) == [
        "pricing-discount: dwell threshold 3s -> 5s"]


def test_a_changed_ratio_threshold_is_said_in_percent():
    assert changes(PRICING.replace(">= 78%", ">= 0.9")) == [
        "pricing-discount: scroll_depth threshold 78% -> 90%"]


def test_a_changed_operator_is_said_alone():
    assert changes(PRICING.replace(">= 3s", "> 3s")) == [
        "pricing-discount: dwell operator >= -> >"]


def test_an_added_condition_is_said_as_written():
    after = PRICING.replace('      - scroll_depth', '      - hover: {target: "#cta", gte: 900ms}\n'
                                                   '      - scroll_depth')
    assert changes(after) == ["pricing-discount: condition added: hover on #cta >= 900ms"]


def test_a_removed_condition_is_said_as_written():
    after = PRICING.replace('      - scroll_depth: ">= 78%"\n', "")
    assert changes(after) == ["pricing-discount: condition removed: scroll_depth >= 78%"]


def test_changed_action_and_cap_fields_are_said_field_by_field():
    after = (PRICING.replace("discount-nudge-10, tier: immediate, priority: 10",
                             "discount-nudge-15, tier: immediate, priority: 20")
             .replace("{per_session: 1}", "{per_session: 2, cooldown: 30s}"))
    assert changes(after) == [
        "pricing-discount: content discount-nudge-10 -> discount-nudge-15",
        "pricing-discount: priority 10 -> 20",
        "pricing-discount: per_session cap 1 -> 2",
        "pricing-discount: cooldown 0s -> 30s",
    ]


def test_changed_pages_are_listed():
    assert changes(PRICING.replace("page: /pricing", "page: [/pricing, /plans]")) == [
        "pricing-discount: pages /pricing -> /pricing, /plans"]


def test_added_and_removed_triggers_are_described():
    after = PRICING.replace("id: pricing-discount", "id: pricing-discount-v2")
    described = "on /pricing when dwell >= 3s and scroll_depth >= 78% -> discount-nudge-10"
    assert changes(after) == [
        f"pricing-discount-v2: added (pack pricing): {described}",
        f"pricing-discount: removed (pack pricing): {described}",
    ]


def test_changes_carry_the_old_and_new_values_for_machines():
    [change] = diff_snapshots(snapshot(PRICING), snapshot(PRICING.replace("3s", "5s")))
    assert (change.trigger, change.kind, change.what) == ("pricing-discount", "changed",
                                                          "condition")
    assert (change.old["value"], change.new["value"]) == (3000, 5000)
