"""`POST /v1/packs/validate` refuses what `PUT /v1/packs/<name>` refuses, and validation
(the API's and `trigger-engine validate` on a folder) reports every problem at once: a
pack's own, those only the packs together show, and the content catalog's."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from control_plane.rulepack import RulePackError, load_pack_set
from tests.servers import control_client

YAML = {"Content-Type": "application/yaml"}

CATALOG = """
content:
  cart-reminder: Cart reminder
  discount-nudge-10: 10 % off
"""

STORED = """
pack: stored
segments:
  mobile: {device: mobile}
triggers:
  - id: taken
    page: /cart
    action: {content: cart-reminder}
"""

GOOD = """
pack: fresh
triggers:
  - id: fresh
    page: /pricing
    segment: mobile
    action: {content: discount-nudge-10}
"""

# Each pack is valid by itself; only the registry (its packs, its catalog) refuses it.
REFUSED_BY_THE_REGISTRY = {
    "unknown segment": (GOOD.replace("segment: mobile", "segment: phon"),
                        [(6, 14, "unknown segment 'phon'")]),
    "trigger id of another pack": (GOOD.replace("id: fresh", "id: taken"),
                                   [(4, 9, "trigger id 'taken' is also defined in stored.yaml")]),
    "content id not in the catalog": (GOOD.replace("discount-nudge-10", "discount-nudge-99"),
                                      [(7, 23, "content 'discount-nudge-99' is not in the "
                                               "content catalog")]),
}

# A pack with a mistake of its own (line 6) and, further down, each of the above.
EVERYTHING_WRONG = """
pack: fresh
triggers:
  - id: taken
    page: /pricing
    when: [{scrol_depth: ">= 50%"}]
    segment: phon
    action: {content: discount-nudge-99}
"""
EVERYTHING_WRONG_AT = [
    (4, 9, "trigger id 'taken' is also defined in stored.yaml"),
    (6, 13, "unknown signal 'scrol_depth'"),
    (7, 14, "unknown segment 'phon'"),
    (8, 23, "content 'discount-nudge-99' is not in the content catalog"),
]


@pytest.fixture
def client(tmp_path: Path):
    client = control_client(tmp_path)
    (tmp_path / "control" / "packs").mkdir(parents=True)
    (tmp_path / "control" / "packs" / "catalog.yaml").write_text(CATALOG)
    assert client.put("/v1/packs/stored", data=STORED).status_code == 201
    return client


def where(resp) -> list[tuple[int, int, str]]:
    """Each problem's position and the start of its message, as answered."""
    assert resp.status_code == 422, resp.json
    return [(p["line"], p["column"], p["message"]) for p in resp.json["error"]["problems"]]


def matches(found: list[tuple[int, int, str]], expected: list[tuple[int, int, str]]) -> bool:
    return len(found) == len(expected) and all(
        (line, column) == (e_line, e_column) and message.startswith(e_message)
        for (line, column, message), (e_line, e_column, e_message) in zip(found, expected))


def validate(client, text: str):
    return client.post("/v1/packs/validate?file=fresh.yaml", data=textwrap.dedent(text),
                       headers=YAML)


def submit(client, text: str):
    return client.put("/v1/packs/fresh", data=textwrap.dedent(text), headers=YAML)


def test_a_pack_the_registry_takes_validates(client):
    answer = validate(client, GOOD).json
    assert {k: answer[k] for k in ("ok", "pack", "triggers")} == \
        {"ok": True, "pack": "fresh", "triggers": ["fresh"]}
    submitted = submit(client, GOOD)
    assert submitted.status_code == 201
    assert submitted.json["warnings"] == answer["warnings"]  # the same lint, both ways


def test_a_stored_pack_validates_again_as_its_own_replacement(client):
    assert validate(client, STORED.replace("page: /cart", "page: /basket")).status_code == 200


@pytest.mark.parametrize("case", REFUSED_BY_THE_REGISTRY)
def test_validate_refuses_what_submitting_refuses_with_the_same_problems(client, case):
    text, expected = REFUSED_BY_THE_REGISTRY[case]
    validated, submitted = validate(client, text), submit(client, text)
    assert matches(where(validated), expected), where(validated)
    assert validated.json == submitted.json
    assert client.get("/v1/packs").json == {"packs": ["stored"]}


def test_validate_and_submit_report_a_packs_own_problems_with_the_registrys(client):
    validated, submitted = validate(client, EVERYTHING_WRONG), submit(client, EVERYTHING_WRONG)
    assert matches(where(validated), EVERYTHING_WRONG_AT), where(validated)
    assert validated.json == submitted.json


def test_a_malformed_catalog_is_reported_with_the_packs_own_problems(client, tmp_path):
    (tmp_path / "control" / "packs" / "catalog.yaml").write_text("content: [oops]\n")
    found = [(Path(p["file"]).name, p["line"]) for p in
             validate(client, EVERYTHING_WRONG).json["error"]["problems"]]
    assert found == [("fresh.yaml", 4), ("fresh.yaml", 6), ("fresh.yaml", 7),
                     ("catalog.yaml", 1)]


def test_a_pack_over_a_size_limit_is_still_a_413(tmp_path):
    client = control_client(tmp_path, MAX_PACK_NODES=50)
    big = "pack: big\ntriggers:\n" + "".join(
        f"  - {{id: t{i}, action: {{content: c}}}}\n" for i in range(40))
    assert client.post("/v1/packs/validate", data=big).status_code == 413


# `trigger-engine validate` on a folder

def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def problems(path: Path) -> list[tuple[str, int, int, str]]:
    with pytest.raises(RulePackError) as caught:
        load_pack_set([path])
    return [(Path(p.file).name, p.line, p.column, p.message) for p in caught.value.problems]


def test_a_folder_reports_its_packs_own_problems_with_those_across_packs_and_the_catalogs(
        tmp_path):
    found = problems(folder(tmp_path, {"a.yaml": EVERYTHING_WRONG, "b.yaml": STORED,
                                       "catalog.yaml": CATALOG + "  broken: {descripton: x}\n"}))
    expected = [("a.yaml", *at) for at in EVERYTHING_WRONG_AT[1:3]] + [
        ("b.yaml", 6, 9, "trigger id 'taken' is also defined in"),
        ("catalog.yaml", 5, 11, "content 'broken' has no description"),
        ("catalog.yaml", 5, 12, "unknown key 'descripton'"),
    ]
    assert len(found) == len(expected), found
    for got, want in zip(found, expected):
        assert got[:3] == want[:3] and got[3].startswith(want[3]), (got, want)


def test_unknown_content_shows_with_a_packs_own_problems(tmp_path):
    found = problems(folder(tmp_path, {"a.yaml": EVERYTHING_WRONG, "b.yaml": STORED,
                                       "catalog.yaml": CATALOG}))
    assert [f[1:3] for f in found if f[0] == "a.yaml"] == [(6, 13), (7, 14), (8, 23)]


def test_a_segment_defined_with_a_mistake_is_not_also_unknown_where_used(tmp_path):
    pack = (STORED.replace("{device: mobile}", "{devic: mobile}")
            + "  - {id: mobile-only, segment: mobile, action: {content: cart-reminder}}\n")
    found = problems(folder(tmp_path, {"a.yaml": pack}))
    assert [f[3].split(" (")[0] for f in found] == ["unknown context field 'devic' in segment "
                                                   "mobile"]


def test_an_id_twice_in_one_pack_is_reported_once(tmp_path):
    pack = STORED + "  - {id: taken, action: {content: cart-reminder}}\n"
    found = problems(folder(tmp_path, {"a.yaml": pack}))
    assert [f[3].split(" (")[0] for f in found] == ["duplicate trigger id 'taken'"]


def test_models_are_not_checked_against_a_pack_with_mistaken_conditions(tmp_path):
    # the mistaken first condition is missing from `when`: "t#1" still names the second
    pack = """
    pack: a
    models:
      thresholds: {"t#1": {"*": 0.7}}
    triggers:
      - id: t
        when: [{scrol_depth: ">= 50%"}, {scroll_depth: {gte: 0.8, mode: adaptive}}]
        action: {content: cart-reminder}
    """
    found = problems(folder(tmp_path, {"a.yaml": pack}))
    assert [f[3].split(" (")[0] for f in found] == ["unknown signal 'scrol_depth'"]
