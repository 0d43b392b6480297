"""The content catalog beside the packs: which content ids exist, and what each shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control_plane.rulepack import (
    RulePackError,
    compile_snapshot,
    find_catalog,
    load_catalog,
    load_pack,
    load_pack_dir,
    load_pack_set,
    unknown_content,
)
from control_plane.rulepack.content_catalog import parse_catalog
from edge_module.core import decide, load_snapshot

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


# -- fields and variants ------------------------------------------------------------------

def rendering_catalog(entry: str) -> str:
    return "content:\n  nudge:\n    description: a nudge\n" + entry


def where(problems: list) -> list[tuple[int, int, str | None]]:
    return [(p.line, p.column, p.suggestion) for p in problems]


def test_fields_and_variants_are_read_beside_the_description():
    catalog = parse_catalog(rendering_catalog(
        "    fields: {title: Ten off, cta_url: /checkout}\n"
        "    variants:\n"
        "      - {name: de, when: {locale: de}, fields: {title: Zehn weniger}}\n"), "c")
    assert catalog.content == {"nudge": "a nudge"}
    rendering = catalog.renderings["nudge"]
    assert rendering.fields == {"title": "Ten off", "cta_url": "/checkout"}
    assert [(v.name, dict(v.when), dict(v.fields)) for v in rendering.variants] == [
        ("de", {"locale": "de"}, {"title": "Zehn weniger"})]


def test_a_plain_description_still_works_and_has_no_fields():
    catalog = parse_catalog("content:\n  nudge: a nudge\n", "c")
    assert catalog.content == {"nudge": "a nudge"} and catalog.renderings == {}


def test_unknown_field_and_when_keys_point_at_the_key_and_suggest_the_nearest():
    problems = catalog_problems(rendering_catalog(
        "    fields: {title: t, cta_txt: Go}\n"
        "    variants:\n"
        "      - name: m\n"
        "        when: {devise: mobile}\n"
        "        fields: {title: m}\n"))
    assert where(problems) == [(4, 24, "cta_text"), (7, 16, "device")]


def test_bad_device_arm_and_locale_values_point_at_the_value():
    problems = catalog_problems(rendering_catalog(
        "    fields: {title: t}\n"
        "    variants:\n"
        "      - {name: a, when: {device: mobil}, fields: {title: a}}\n"
        "      - {name: b, when: {arm: statik}, fields: {title: b}}\n"
        "      - {name: c, when: {locale: deutsch}, fields: {title: c}}\n"))
    assert where(problems) == [(6, 34, "mobile"), (7, 31, "static"), (8, 34, None)]
    assert "not a language tag" in problems[2].message


def test_a_missing_title_in_the_default_is_a_compile_time_problem():
    [problem] = catalog_problems(rendering_catalog(
        "    fields: {body: only a body}\n"
        "    variants:\n"
        "      - {name: de, when: {locale: de}, fields: {title: Titel}}\n"))
    assert (problem.line, problem.column) == (4, 13)
    assert "no title" in problem.message and "no variant matches" in problem.message


def test_variants_without_fields_of_their_own_are_a_problem_too():
    [problem] = catalog_problems(rendering_catalog(
        "    variants:\n      - {name: de, when: {locale: de}, fields: {body: Text}}\n"))
    assert "no title" in problem.message


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "//evil.example/x",
                                 "ftp://example.com/x", "http:/x", "/a b", "/\\evil.example",
                                 "\\\\evil.example", "https:\\\\evil.example", "/x\\y"])
def test_urls_are_http_https_or_relative(url):
    [problem] = catalog_problems(rendering_catalog(f"    fields: {{title: t, cta_url: '{url}'}}\n"))
    assert "not an http(s) or relative URL" in problem.message


@pytest.mark.parametrize("url", ["https://example.com/x?a=1", "http://example.com", "/checkout",
                                 "checkout?x=1#top", "../cart"])
def test_http_https_and_relative_urls_are_fine(url):
    catalog = parse_catalog(rendering_catalog(f"    fields: {{title: t, image_url: '{url}'}}\n"),
                            "c")
    assert catalog.renderings["nudge"].fields["image_url"] == url


def test_a_field_over_one_kib_is_a_problem():
    [problem] = catalog_problems(rendering_catalog(f"    fields: {{title: {'x' * 1025}}}\n"))
    assert problem.expected == "at most 1024 bytes"


def test_at_most_32_variants_per_id():
    variants = "".join(f"      - {{name: v{i}, when: {{locale: de-x{i:03}}}, fields: {{title: t}}}}\n"
                       for i in range(33))
    [problem] = catalog_problems(rendering_catalog("    fields: {title: t}\n    variants:\n"
                                                   + variants))
    assert problem.line == 5 + 33 and problem.expected == "at most 32"


def test_two_variants_with_one_name_or_one_when_are_problems():
    problems = catalog_problems(rendering_catalog(
        "    fields: {title: t}\n"
        "    variants:\n"
        "      - {name: de, when: {locale: de}, fields: {title: a}}\n"
        "      - {name: de, when: {locale: fr}, fields: {title: b}}\n"
        "      - {name: de2, when: {locale: de}, fields: {title: c}}\n"))
    assert [(p.line, "twice" in p.message, "never be chosen" in p.message)
            for p in problems] == [(7, True, False), (8, False, True)]


def test_a_variant_named_default_or_without_when_is_a_problem():
    problems = catalog_problems(rendering_catalog(
        "    fields: {title: t}\n"
        "    variants:\n"
        "      - {name: default, when: {locale: de}, fields: {title: a}}\n"
        "      - {name: any, fields: {title: b}}\n"))
    assert ["usable name" in problems[0].message, "no when" in problems[1].message] == [True, True]


def test_the_snapshot_holds_each_variant_merged_over_the_default_fields():
    catalog = parse_catalog(rendering_catalog(
        "    fields: {title: Ten off, body: Today, style: toast}\n"
        "    variants:\n"
        "      - {name: mobile, when: {device: mobile}, fields: {style: banner}}\n"), "c")
    snapshot = compile_snapshot([load_pack(PACK.replace("discount-nudge-1", "nudge"), "p.yaml")],
                                "1", 0, catalog)
    assert snapshot["content"] == {"nudge": {
        "fields": {"title": "Ten off", "body": "Today", "style": "toast"},
        "variants": [{"name": "mobile", "when": {"device": "mobile"},
                      "fields": {"title": "Ten off", "body": "Today", "style": "banner"}}]}}


def test_the_reference_catalog_example_chooses_as_the_text_says():
    text = (RULES.parent / "docs" / "rules-reference.md").read_text()
    section = text.split("## content catalog", 1)[1].split("\n## ", 1)[0]
    catalog = parse_catalog(section.split("```yaml catalog\n", 1)[1].split("```", 1)[0], "c")
    pack = load_pack(section.split("```yaml\n", 1)[1].split("```", 1)[0], "p.yaml")
    snap = load_snapshot(json.dumps(compile_snapshot([pack], "1", 0, catalog)))

    def shown(**context: str) -> str:
        req = {"session_id": "s", "now_ms": 4000, "context": {"url": "/pricing", **context},
               "events": [{"type": "page_view", "ts_ms": 0, "url": "/pricing"}]}
        return decide(snap, req, None)["actions"][0]["variant"]["name"]

    assert shown(device="mobile", locale="de-AT") == "mobile-de"
    assert shown(device="desktop", locale="de-CH") == "de"
    assert shown(device="desktop", locale="fr") == "default"
    assert shown() == "default"
    shipped = load_catalog(RULES / "catalog.yaml").renderings["discount-nudge-10"]
    assert [v.name for v in catalog.renderings["discount-nudge-10"].variants] == \
        [v.name for v in shipped.variants]
