"""The trigger sprawl audit: findings on packs that are valid but will misbehave."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.authoring.condition_logic import glob_covers, globs_meet
from control_plane.authoring.lint import Finding, lint
from control_plane.rulepack import load_catalog, load_pack, load_pack_set
from edge_module.core.globs import glob_match, normalize

RULES = Path(__file__).resolve().parents[2] / "rules"


def trigger(tid: str, body: str = "", content: str = "discount-nudge-10",
            cap: str = "{per_session: 1}") -> str:
    lines = textwrap.dedent(body).strip("\n").splitlines()
    inner = "".join(f"    {line}\n" for line in lines)
    return f"  - id: {tid}\n{inner}    action: {{content: {content}}}\n    cap: {cap}\n"


def findings(*triggers: str, ignore: tuple[str, ...] = ()) -> list[Finding]:
    text = "pack: p\ntriggers:\n" + "".join(triggers)
    return lint([load_pack(text, "p.yaml")], load_catalog(RULES / "catalog.yaml"), ignore)


def codes(found: list[Finding]) -> list[tuple[str, str | None]]:
    return [(f.code, f.trigger) for f in found]


ENGAGED = 'page: /pricing\nwhen:\n  - dwell: ">= 3s"\n  - scroll_depth: ">= 50%"'


def test_the_shipped_packs_have_no_findings():
    pack_set = load_pack_set([RULES])
    assert lint(pack_set.packs, pack_set.catalog) == []


def test_a_duplicate_is_reported_at_the_second_trigger_naming_the_first():
    found = findings(trigger("a", ENGAGED), trigger("b", ENGAGED))
    assert codes(found) == [("L001", "b")]
    assert "duplicates a (p.yaml:3:9)" in found[0].message


def test_triggers_alike_but_in_priority_are_duplicates():
    second = trigger("b", ENGAGED).replace("{content: discount-nudge-10}",
                                           "{content: discount-nudge-10, priority: 9}")
    assert codes(findings(trigger("a", ENGAGED), second)) == [("L001", "b")]


def test_conditions_written_in_another_order_are_still_duplicates():
    swapped = 'page: /pricing\nwhen:\n  - scroll_depth: {gte: 0.5}\n  - dwell: ">=3000ms"'
    assert codes(findings(trigger("a", ENGAGED), trigger("b", swapped))) == [("L001", "b")]


def test_a_stricter_trigger_overlaps_the_looser_one_it_implies():
    strict = 'page: /pricing\nwhen:\n  - dwell: ">= 5s"\n  - scroll_depth: ">= 80%"'
    found = findings(trigger("loose", ENGAGED), trigger("strict", strict))
    assert codes(found) == [("L002", "strict")]
    assert found[0].message.startswith("overlaps loose (p.yaml:3:9)")


def test_a_trigger_on_a_page_covered_by_a_wider_glob_overlaps():
    wide = 'page: "/products/*"\nwhen:\n  - dwell: ">= 3s"'
    narrow = 'page: /products/shoes\nwhen:\n  - dwell: ">= 3s"'
    assert codes(findings(trigger("narrow", narrow), trigger("wide", wide))) == [
        ("L002", "narrow")]


def test_triggers_on_different_pages_do_not_overlap():
    other = ENGAGED.replace("/pricing", "/features")
    assert findings(trigger("a", ENGAGED), trigger("b", other)) == []


def test_triggers_on_different_events_do_not_overlap():
    clicked = "on: {type: click, target: '#buy'}\n" + ENGAGED
    assert findings(trigger("a", ENGAGED), trigger("b", clicked)) == []


def test_contradictory_conditions_never_fire():
    body = 'when:\n  - dwell: "< 2s"\n  - dwell: "> 5s"'
    [found] = findings(trigger("dead", body))
    assert (found.code, found.line, found.column) == ("L003", 6, 9)
    assert found.message == "never fires: dwell < 2s and dwell > 5s contradict each other"


def test_a_scroll_depth_beyond_the_page_never_fires():
    [found] = findings(trigger("dead", 'when:\n  - scroll_depth: "> 1"'))
    assert found.code == "L003"
    assert "scroll_depth > 100%" in found.message


def test_a_condition_that_cannot_hold_at_a_page_view_never_fires_on_one():
    [found] = findings(trigger("dead", 'on: page_view\nwhen:\n  - dwell: ">= 1s"'))
    assert found.code == "L003"
    assert "dwell is still 0" in found.message


def test_a_range_of_dwell_is_not_a_contradiction():
    assert findings(trigger("ok", 'when:\n  - dwell: ">= 2s"\n  - dwell: "< 5s"')) == []


def test_a_trigger_without_a_per_session_cap_is_reported():
    [found] = findings(trigger("uncapped", ENGAGED, cap="{per_page: 1}"))
    assert (found.code, found.trigger) == ("L004", "uncapped")


@pytest.mark.parametrize("cap, says", [
    ("{per_page: 1}", "on every page view"),
    ("{per_page: unlimited, cooldown: 30s}", "on every page view"),
    # nothing at all between two firings: not once per page view, but at every decision
    ("{per_page: unlimited}", "at every decision while its conditions hold"),
])
def test_an_uncapped_trigger_is_told_how_often_it_can_fire(cap, says):
    [found] = findings(trigger("uncapped", ENGAGED, cap=cap))
    assert found.code == "L004" and says in found.message


def test_a_content_id_missing_from_the_catalog_is_reported_with_a_suggestion():
    [found] = findings(trigger("t", ENGAGED, content="discount-nudge-1"))
    assert (found.code, found.line, found.column) == ("L005", 8, 23)
    assert found.message.endswith("did you mean 'discount-nudge-10'?")


def test_ignored_codes_are_not_reported():
    assert findings(trigger("uncapped", ENGAGED, cap="{per_page: 1}"), ignore=("L004",)) == []


def test_a_finding_reads_as_file_line_column_code_trigger_message():
    finding = Finding("p.yaml", 3, 9, "L004", "has no per_session cap", "t")
    assert str(finding) == "p.yaml:3:9: L004 [t] has no per_session cap"


@pytest.mark.parametrize("outer, inner, covers", [
    ("*", "/anything/*", True),
    ("/products/*", "/products/shoes", True),
    ("/products/*", "/products/*/reviews", True),
    ("/products/*", "/product", False),
    ("/pricing", "/pricing", True),
    ("/pricing", "/pricing/*", False),
    ("/blog/*/pricing", "/blog/2024/pricing", True),
    ("/blog/*/pricing", "/blog/*", False),
])
def test_a_glob_covers_another_when_it_matches_every_path_the_other_does(outer, inner, covers):
    assert glob_covers(outer, inner) is covers


HELD = 'page: /p\nwhen:\n  - sustained: {for: 5s, when: [{mouse_entropy: ">= 2"}, {scroll_velocity: "< 200"}]}'


def test_three_windowed_signals_read_at_every_event_of_a_page_are_reported_once():
    """Each is read at every event of a batch: 500 events cost the edge 10-40 ms apiece."""
    rage = 'page: "*"\non: click\nwhen:\n  - count: {event: click, window: 2s, gte: 3}'
    [found] = findings(trigger("held", HELD), trigger("rage", rage))
    assert (found.code, found.trigger) == ("L006", "held")
    assert "3 windowed signals are read at every event on /p (by held, rage)" in found.message


@pytest.mark.parametrize("body", [
    HELD,  # two: within the bound
    # windowed signals read at the decision only (no sustained, consecutive or on:)
    'page: /p\nwhen:\n  - mouse_entropy: ">= 2"\n  - scroll_velocity: "< 200"\n'
    '  - count: {event: click, window: 2s, gte: 3}',
    # many conditions read at every event, none of them over a window
    'page: /p\nconsecutive: 3\nwhen:\n  - dwell: ">= 2s"\n  - scroll_depth: ">= 50%"\n'
    '  - pages: ">= 2"',
])
def test_few_or_cheap_conditions_at_every_event_are_not_reported(body):
    assert [f for f in findings(trigger("t", body)) if f.code == "L006"] == []


def test_triggers_of_other_pages_do_not_add_up():
    other = HELD.replace("page: /p", "page: /q")
    assert [f for f in findings(trigger("a", HELD), trigger("b", other)) if f.code == "L006"] == []
    spike = 'page: /p\nconsecutive: 2\nwhen:\n  - velocity_spike: {gte: 3, baseline: session}'
    assert codes([f for f in findings(trigger("a", HELD), trigger("b", spike))
                  if f.code == "L006"]) == [("L006", "a")]


def test_pages_that_meet_without_covering_each_other_add_up():
    """/products/*, /*/sale and /pro*sale all match /products/sale, none covers another:
    six signals read there at every event went unreported (67 ms in the component)."""
    found = findings(*(trigger(f"t{i}", HELD.replace("page: /p", f'page: "{page}"'))
                       for i, page in enumerate(("/products/*", "/*/sale", "/pro*sale"))))
    assert codes([f for f in found if f.code == "L006"]) == [("L006", "t0")]
    assert "6 windowed signals" in found[0].message


def test_an_intent_score_counts_as_the_two_signals_it_reads():
    intent = 'page: /p\non: click\nwhen:\n  - intent: ">= 0.5"'
    models = "models:\n  intent:\n    bias: -1\n    weights: {dwell: 1}\n"
    text = ("pack: p\n" + models + "triggers:\n" + trigger("held", HELD.replace(
        "{scroll_velocity: \"< 200\"}", "{dwell: \">= 1s\"}")) + trigger("score", intent))
    found = lint([load_pack(text, "p.yaml")], load_catalog(RULES / "catalog.yaml"))
    assert [f.message.split(" windowed")[0] for f in found if f.code == "L006"] == ["3"]


@pytest.mark.parametrize("a, b, meet", [
    ("/products/*", "/*/sale", True), ("/pro*sale", "/*/sale", True),
    ("/blog/*", "/shop/*", False), ("*.html", "*.pdf", False), ("/a", "/a*", True),
    ("/a", "/b*", False), ("*", "/x", True), ("/x/*/y", "/x/a*", True),
])
def test_globs_meet_when_some_path_matches_both(a, b, meet):
    assert globs_meet(a, b) is meet and globs_meet(b, a) is meet


@settings(max_examples=300, deadline=None)
@given(st.text("ab/*", min_size=1, max_size=6), st.text("ab/*", min_size=1, max_size=6))
def test_globs_meet_exactly_as_a_search_over_paths_finds(a, b):
    """Against every path of up to 8 characters over the globs' alphabet: a witness exists
    within that length whenever the globs meet at all (their parts are at most 6 long)."""
    found = any(glob_match(a, p) and glob_match(b, p)
                for n in range(9) for p in map("".join, itertools.product("ab/", repeat=n)))
    if found or not globs_meet(a, b):
        assert globs_meet(a, b) is found
    else:  # they meet on a longer path: the one globs_meet builds
        assert "*" in a and "*" in b
        pa, pb = normalize(a).split("*"), normalize(b).split("*")
        path = max(pa[0], pb[0], key=len) + "".join(pa[1:-1] + pb[1:-1]) + \
            max(pa[-1], pb[-1], key=len)
        assert glob_match(a, path) and glob_match(b, path)
