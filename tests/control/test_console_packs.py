"""The console's packs and revisions pages: validation and lint at their lines, the diff
between revisions, and publish and rollback behind a confirmation (publisher only, CSRF)
with who did it in the audit trail. Real registry, real edge store (a folder)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

from control_plane.authoring import lint as linting
from control_plane.authoring import pack_diff
from control_plane.distribution import change_log, publishing
from control_plane.rulepack import load_pack_set
from tests.servers import PUBLISHER_TOKEN, ROOT, control_client

VIEWER_TOKEN = "viewer-token-for-tests"
PRICING = (ROOT / "rules" / "pricing-discount.yaml").read_text()
CHECKOUT = (ROOT / "rules" / "checkout-reminder.yaml").read_text()
UNCAPPED = ("pack: uncapped\ndescription: <script>alert(1)</script>\ntriggers:\n"
            "  - id: uncapped-nudge\n    page: /pricing\n    when: [{dwell: \">= 9s\"}]\n"
            "    action: {content: discount-nudge-10}\n")
BROKEN = ("pack: broken\ntriggers:\n  - id: b\n    page: /x\n"
          "    when:\n      - scroll_depth: '>= 1.4'\n    action: {content: x}\n")


@pytest.fixture
def api(tmp_path: Path) -> Any:
    """The API client (publisher token) of a control plane that also has a viewer token."""
    return control_client(tmp_path, VIEWER_TOKENS=VIEWER_TOKEN)


def console(api: Any, token: str = PUBLISHER_TOKEN, name: str = "Ann") -> Any:
    """A browser-like client of the same app, signed in through the sign-in form."""
    client = api.application.test_client()
    page = client.get("/sign-in").get_data(as_text=True)
    resp = client.post("/sign-in", data={"token": token, "name": name, "next": "/packs",
                                         "csrf": csrf_of(page)})
    assert resp.status_code == 302
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def expect_of(page: str) -> str:
    found = re.search(r'name="expect" value="([^"]+)"', page)
    assert found
    return found.group(1)


def text(resp: Any) -> str:
    return html.unescape(resp.get_data(as_text=True))


def store_of(api: Any) -> Any:
    return api.application.extensions["edge_store"]


def served_revision(api: Any) -> int | None:
    current = publishing.current(store_of(api))
    return None if current is None else int(current["revision"])


def submit(api: Any, name: str, source: str) -> None:
    assert api.put(f"/v1/packs/{name}", data=source).status_code in (200, 201)


def put_file(api: Any, name: str, source: str) -> None:
    """A pack written into the registry's folder as it is, unchecked (by hand, say)."""
    registry = api.application.extensions["pack_registry"]
    registry.save(name, source)


@pytest.fixture
def published(api: Any) -> Any:
    """Two packs, published twice through the API (revisions 1 and 2)."""
    submit(api, "pricing-discount", PRICING)
    assert api.post("/v1/snapshots").status_code == 201
    submit(api, "checkout-reminder", CHECKOUT)
    assert api.post("/v1/snapshots").status_code == 201
    return api


def publish_through_console(client: Any, **overrides: str) -> Any:
    page = client.get("/revisions/publish").get_data(as_text=True)
    form = {"csrf": csrf_of(page), "expect": expect_of(page), "confirm": "yes", **overrides}
    return client.post("/revisions/publish", data=form)


def rollback_through_console(client: Any, revision: int, **overrides: str) -> Any:
    page = client.get(f"/revisions/rollback?revision={revision}").get_data(as_text=True)
    form = {"csrf": csrf_of(page), "expect": expect_of(page), "confirm": "yes",
            "revision": str(revision), **overrides}
    return client.post("/revisions/rollback", data=form)


# --- the packs page -------------------------------------------------------------------

def test_packs_page_lists_each_pack_with_description_triggers_and_state(published):
    page = text(console(published).get("/packs"))
    row = re.search(r'<tr data-pack="pricing-discount">(.*?)</tr>', page, re.DOTALL)
    assert row
    assert "Discount nudge for engaged readers of the pricing page" in row.group(1)
    assert "pricing-discount" in row.group(1) and "valid" in row.group(1)


def test_lint_counts_are_the_lint_commands(api):
    submit(api, "pricing-discount", PRICING)
    submit(api, "uncapped", UNCAPPED)
    registry = api.application.extensions["pack_registry"]
    pack_set = load_pack_set([registry.root], check_content=False)
    findings = linting.lint(pack_set.packs, pack_set.catalog)
    expected = {name: sum(1 for f in findings if Path(f.file).stem == name)
                for name in ("pricing-discount", "uncapped")}
    assert expected["uncapped"] >= 1
    page = text(console(api).get("/packs"))
    for name, count in expected.items():
        row = re.search(rf'<tr data-pack="{name}">.*?<td class="findings">(\d+)</td>', page, re.DOTALL)
        assert row and int(row.group(1)) == count


def test_a_broken_pack_shows_its_problem_count(api):
    submit(api, "pricing-discount", PRICING)
    put_file(api, "broken", BROKEN)
    page = text(console(api).get("/packs"))
    row = re.search(r'<tr data-pack="broken">(.*?)</tr>', page, re.DOTALL)
    assert row and "1 problem(s)" in row.group(1)


def test_pack_page_marks_the_line_of_a_validation_problem_and_says_it_there(api):
    put_file(api, "broken", BROKEN)
    page = console(api).get("/packs/broken").get_data(as_text=True)
    bad = re.search(r'<span class="line bad" id="L(\d+)">.*?</span>(.*?)</span>', page)
    assert bad and int(bad.group(1)) == 6  # scroll_depth: '>= 1.4'
    note = re.search(r'<span class="line note problem" data-line="6">(.*?)</span></span>|'
                     r'<span class="line note problem" data-line="6"><span class="no">'
                     r'</span>(.*?)</span>', page)
    assert note and "scroll_depth" in html.unescape(note.group(0))


def test_pack_page_shows_lint_findings_at_their_lines(api):
    submit(api, "uncapped", UNCAPPED)
    registry = api.application.extensions["pack_registry"]
    pack_set = load_pack_set([registry.root], check_content=False)
    finding = next(f for f in linting.lint(pack_set.packs) if f.code == "L004")
    page = console(api).get("/packs/uncapped").get_data(as_text=True)
    assert f'<span class="line lint" id="L{finding.line}">' in page
    assert re.search(rf'data-line="{finding.line}"><span class="no"></span>▲ L004', page)


def test_pack_page_lists_the_triggers_it_defines(published):
    page = text(console(published).get("/packs/checkout-reminder"))
    table = page.split('id="pack-triggers"')[1]
    assert "checkout-reminder" in table


def test_text_from_a_pack_is_escaped(api):
    submit(api, "uncapped", UNCAPPED)
    client = console(api)
    for path in ("/packs", "/packs/uncapped"):
        body = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_an_unknown_pack_is_404(api):
    assert console(api).get("/packs/nothing-here").status_code == 404


def test_a_viewer_reads_the_packs_pages(published):
    client = console(published, VIEWER_TOKEN, "Vic")
    assert client.get("/packs").status_code == 200
    assert client.get("/packs/pricing-discount").status_code == 200
    assert client.get("/revisions/diff?old=1&new=2").status_code == 200
    assert "Publish the registry" not in text(client.get("/packs"))


def test_pages_redirect_to_sign_in_without_a_session(published):
    anonymous = published.application.test_client()
    for path in ("/packs", "/packs/pricing-discount", "/revisions/diff", "/revisions/publish",
                 "/revisions/rollback?revision=1", "/fleet"):
        resp = anonymous.get(path)
        assert resp.status_code == 302 and "/sign-in" in resp.headers["Location"]


# --- history and diff -----------------------------------------------------------------

def test_history_lists_revisions_newest_first_with_who_published(published):
    publish_through_console(console(published, name="Ann"))
    page = text(console(published).get("/packs"))
    rows = re.findall(r'<tr data-revision="(\d+)" data-action="(\w+)">(.*?)</tr>', page, re.DOTALL)
    assert [(int(r), a) for r, a, _ in rows] == [(3, "publish"), (2, "publish"), (1, "publish")]
    assert "Ann (publisher)" in rows[0][2]
    assert change_log.API_ACTOR in rows[1][2]


def test_diff_page_says_what_trigger_engine_diff_says(published):
    store = store_of(published)
    expected = [c.text for c in pack_diff.diff_snapshots(
        publishing.published_snapshot(store, 1), publishing.published_snapshot(store, 2))]
    assert expected
    page = text(console(published).get("/revisions/diff?old=1&new=2"))
    shown = re.findall(r'<li class="\w+">(.*?)</li>', page.split('id="changes"')[1], re.DOTALL)
    assert shown == expected


def test_diff_of_an_unknown_revision_says_so(published):
    page = text(console(published).get("/revisions/diff?old=1&new=9"))
    assert "revision 9 was never published" in page


# --- publish --------------------------------------------------------------------------

def test_publish_confirmation_says_exactly_what_will_happen(published):
    submit(published, "uncapped", UNCAPPED)
    page = text(console(published).get("/revisions/publish"))
    assert ("Serve revision 3 (checkout-reminder, pricing-discount, uncapped) instead of "
            "revision 2") in page
    assert 'name="confirm" value="yes" required' in page
    assert "uncapped-nudge" in page  # what changes: the trigger it adds


def test_publishing_from_the_console_makes_the_next_revision_current(published):
    resp = publish_through_console(console(published))
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/packs")
    assert served_revision(published) == 3
    page = text(console(published).get("/packs"))
    assert "Published revision 3" in page or served_revision(published) == 3


def test_the_result_of_a_publish_is_flashed(published):
    client = console(published)
    publish_through_console(client)
    assert "Published revision 3: 2 trigger(s)" in text(client.get("/packs"))


def test_publish_without_the_confirmation_changes_nothing(published):
    client = console(published)
    resp = publish_through_console(client, confirm="")
    assert resp.status_code == 302 and served_revision(published) == 2
    assert "tick the box" in text(client.get(resp.headers["Location"]))


def test_publish_confirmed_before_someone_else_published_changes_nothing(published):
    client = console(published)
    page = client.get("/revisions/publish").get_data(as_text=True)
    published.post("/v1/snapshots")  # revision 3, meanwhile
    client.post("/revisions/publish", data={"csrf": csrf_of(page), "expect": expect_of(page),
                                            "confirm": "yes"})
    assert served_revision(published) == 3


def test_a_viewer_cannot_publish(published):
    viewer = console(published, VIEWER_TOKEN, "Vic")
    page = viewer.get("/packs").get_data(as_text=True)
    assert viewer.get("/revisions/publish").status_code == 403
    resp = viewer.post("/revisions/publish", data={"csrf": csrf_of(page), "confirm": "yes",
                                                   "expect": "ignored"})
    assert resp.status_code == 403 and served_revision(published) == 2


def test_publish_without_a_csrf_token_is_refused(published):
    client = console(published)
    page = client.get("/revisions/publish").get_data(as_text=True)
    resp = client.post("/revisions/publish", data={"expect": expect_of(page), "confirm": "yes"})
    assert resp.status_code == 403 and served_revision(published) == 2


def test_publish_with_a_forged_csrf_token_is_refused(published):
    client = console(published)
    resp = publish_through_console(client, csrf="forged-token")
    assert resp.status_code == 403 and served_revision(published) == 2


def test_publish_with_another_sessions_csrf_token_is_refused(published):
    mine, theirs = console(published), console(published, name="Bob")
    stolen = csrf_of(theirs.get("/packs").get_data(as_text=True))
    assert publish_through_console(mine, csrf=stolen).status_code == 403
    assert served_revision(published) == 2


# --- rollback -------------------------------------------------------------------------

def test_rollback_confirmation_says_exactly_what_will_happen(published):
    page = text(console(published).get("/revisions/rollback?revision=1"))
    assert "Serve revision 1 again instead of 2" in page


def test_rolling_back_from_the_console_serves_the_earlier_revision(published):
    client = console(published)
    resp = rollback_through_console(client, 1)
    assert resp.status_code == 302 and served_revision(published) == 1
    assert "Revision 1 is served again instead of 2" in text(client.get("/packs"))


def test_rollback_without_the_confirmation_changes_nothing(published):
    rollback_through_console(console(published), 1, confirm="")
    assert served_revision(published) == 2


def test_a_viewer_cannot_roll_back(published):
    viewer = console(published, VIEWER_TOKEN, "Vic")
    page = viewer.get("/packs").get_data(as_text=True)
    assert viewer.get("/revisions/rollback?revision=1").status_code == 403
    resp = viewer.post("/revisions/rollback", data={"csrf": csrf_of(page), "confirm": "yes",
                                                    "revision": "1", "expect": "x"})
    assert resp.status_code == 403 and served_revision(published) == 2


def test_rollback_without_or_with_a_forged_csrf_token_is_refused(published):
    client = console(published)
    assert rollback_through_console(client, 1, csrf="").status_code == 403
    assert rollback_through_console(client, 1, csrf="forged").status_code == 403
    assert served_revision(published) == 2


def test_rollback_to_a_revision_never_published_is_404(published):
    assert console(published).get("/revisions/rollback?revision=7").status_code == 404


# --- the audit trail ------------------------------------------------------------------

def test_console_changes_are_recorded_with_the_persons_name_and_role(published):
    client = console(published, name="Ann")
    publish_through_console(client)
    rollback_through_console(client, 2)
    data_dir = published.application.config["DATA_DIR"]
    recorded = change_log.changes(data_dir)[-2:]
    assert [(c.action, c.revision, c.by, c.role, c.via) for c in recorded] == [
        ("publish", 3, "Ann", "publisher", "console"),
        ("rollback", 2, "Ann", "publisher", "console")]
    entries = publishing.revisions(store_of(published))
    assert [c.sequence for c in reversed(recorded)] == [e["sequence"] for e in entries[:2]]


def test_api_publishes_and_rollbacks_are_recorded_as_the_api(published):
    assert published.post("/v1/snapshots/rollback", json={"revision": 1}).status_code == 200
    recorded = change_log.changes(published.application.config["DATA_DIR"])
    assert [(c.action, c.revision, c.by) for c in recorded] == [
        ("publish", 1, change_log.API_ACTOR), ("publish", 2, change_log.API_ACTOR),
        ("rollback", 1, change_log.API_ACTOR)]
    assert recorded[-1].rollback_from == 2


def test_refused_changes_record_nothing(published):
    client = console(published)
    publish_through_console(client, csrf="forged")
    rollback_through_console(client, 1, confirm="")
    assert len(change_log.changes(published.application.config["DATA_DIR"])) == 2
