"""The content catalog beside the packs: which content ids exist, and what each shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.rulepack import (
    RulePackError,
    find_catalog,
    load_catalog,
    load_pack,
    load_pack_dir,
    load_pack_set,
    unknown_content,
)
from control_plane.rulepack.content_catalog import parse_catalog

RULES = Path(__file__).resolve().parents[2] / "rules"
PACK = "pack: p\ntriggers:\n  - id: t\n    action: {content: discount-nudge-1}\n"


def catalog_problems(text: str) -> list:
    with pytest.raises(RulePackError) as info:
        parse_catalog(text, "catalog.yaml")
    return info.value.problems


def test_the_shipped_catalog_lists_the_content_of_the_shipped_packs():
    catalog = load_catalog(RULES / "catalog.yaml")
    assert {"discount-nudge-10", "cart-reminder"} <= set(catalog.content)
    assert all(description for description in catalog.content.values())


def test_the_catalog_beside_a_pack_or_in_a_folder_is_found():
    assert find_catalog(RULES / "pricing-discount.yaml") == RULES / "catalog.yaml"
    assert find_catalog(RULES) == RULES / "catalog.yaml"


def test_a_folder_without_a_catalog_has_none(tmp_path):
    assert find_catalog(tmp_path) is None


def test_the_catalog_is_not_loaded_as_a_pack():
    assert [p.name for p in load_pack_dir(RULES)] == ["checkout-reminder", "pricing-discount"]


def test_an_unlisted_content_id_points_at_the_content_and_suggests_the_nearest():
    catalog = parse_catalog("content:\n  discount-nudge-10: ten\n  cart-reminder: cart\n", "c")
    [problem] = unknown_content([load_pack(PACK, "p.yaml")], catalog)
    assert (problem.line, problem.column, problem.trigger) == (4, 23, "t")
    assert problem.suggestion == "discount-nudge-10"
    assert problem.expected == "one of discount-nudge-10, cart-reminder"


def test_packs_without_a_catalog_are_not_checked_for_content(tmp_path):
    (tmp_path / "p.yaml").write_text(PACK)
    assert [p.name for p in load_pack_set([tmp_path]).packs] == ["p"]


def test_packs_beside_a_catalog_are_checked_against_it(tmp_path):
    (tmp_path / "p.yaml").write_text(PACK)
    (tmp_path / "catalog.yaml").write_text("content:\n  discount-nudge-10: ten\n")
    with pytest.raises(RulePackError) as info:
        load_pack_set([tmp_path])
    assert info.value.problems[0].suggestion == "discount-nudge-10"


def test_a_misspelt_catalog_key_is_a_problem_with_a_suggestion():
    [problem] = catalog_problems("contnet:\n  a: b\n")
    assert (problem.line, problem.column, problem.suggestion) == (1, 1, "content")


def test_a_content_id_without_a_description_is_a_problem():
    [problem] = catalog_problems("content:\n  nudge:\n")
    assert (problem.line, problem.message) == (2, "content 'nudge' has no description")


def test_a_catalog_that_is_a_list_is_a_problem():
    [problem] = catalog_problems("- nudge\n")
    assert problem.message == "the content catalog is a list"


def test_the_catalogs_name_is_reserved_for_it():
    with pytest.raises(RulePackError) as info:
        load_pack(PACK.replace("pack: p", "pack: catalog"), "p.yaml")
    assert info.value.problems[0].message == "pack name 'catalog' is reserved for the content " \
                                             "catalog"
