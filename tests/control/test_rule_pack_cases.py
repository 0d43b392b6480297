"""The rule-pack tests written in YAML beside the packs (rules/*.test.yaml): one pytest
case per YAML case, run as `trigger-engine test rules/` runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.authoring.case_runner import Suite, load_suites, run_case
from control_plane.rulepack import RulePackError
from control_plane.rulepack.cases import PackCase

RULES = Path(__file__).resolve().parents[2] / "rules"


def collect() -> list[tuple[Suite, PackCase] | RulePackError]:
    try:
        suites = load_suites([RULES])
    except RulePackError as exc:  # reported by the one failing case below
        return [exc]
    return [(suite, case) for suite in suites for case in suite.cases]


CASES = collect()


def case_id(item: tuple[Suite, PackCase] | RulePackError) -> str:
    if isinstance(item, RulePackError):
        return "problems-in-rules"
    _, case = item
    return f"{Path(case.file).name}::{case.name}"


@pytest.mark.parametrize("item", CASES, ids=case_id)
def test_rule_pack_case(item):
    if isinstance(item, RulePackError):
        pytest.fail(f"the packs or their tests have problems:\n{item}")
    suite, case = item
    result = run_case(suite.snapshot, case)
    assert result.passed, f"{result.where} {case.name}\n{result.explain()}"
