"""The console's fleet page: every edge as `GET /v1/fleet` has it (revision, how far
behind, last sync error), with decisions per second, traps, telemetry backlog and the last
report time; stale edges marked. Edges report through the real API."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import pytest

from control_plane.distribution.fleet import STALE_AFTER_MS, FleetRegistry
from tests.control.test_console_packs import (
    PRICING,
    VIEWER_TOKEN,
    console,
    submit,
)
from tests.servers import EDGE_TOKEN, control_client


@pytest.fixture
def api(tmp_path: Path) -> Any:
    """A control plane with revisions 1 to 3 published from its registry."""
    client = control_client(tmp_path, VIEWER_TOKENS=VIEWER_TOKEN)
    submit(client, "pricing-discount", PRICING)
    for _ in range(3):
        assert client.post("/v1/snapshots").status_code == 201
    return client


def edge_report(api: Any, **status: Any) -> None:
    edge = control_client(Path("unused"), token=EDGE_TOKEN, app=api.application)
    assert edge.post("/v1/fleet/report", json=status).status_code == 204


def status(edge_id: str, revision: str | None, decisions: int = 0, **extra: Any) -> dict:
    return {"edge_id": edge_id, "revision": revision, "status": "ok", "last_error": None,
            "decisions": decisions, "traps": 0,
            "telemetry": {"buffered": 0, "spooled_files": 0}, **extra}


def row_of(page: str, edge_id: str) -> str:
    found = re.search(rf'<tr data-edge="{re.escape(edge_id)}"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert found, f"no row for {edge_id}"
    return found.group(0)


def test_every_edge_is_shown_with_the_revision_it_serves_and_how_far_behind(api):
    edge_report(api, **status("pop-a", "3"))
    edge_report(api, **status("pop-b", "1", last_error="edge store unreachable"))
    page = html.unescape(console(api).get("/fleet").get_data(as_text=True))
    assert "revision 3" in row_of(page, "pop-a") and "up to date" in row_of(page, "pop-a")
    assert "2 behind" in row_of(page, "pop-b")
    assert "edge store unreachable" in row_of(page, "pop-b")


def test_an_edge_on_a_higher_revision_than_published_is_not_up_to_date(api):
    """After a rollback to 3, an edge that refused it still serves 4: it was shown "up to
    date" (behind 0), the incident invisible in the console."""
    edge_report(api, **status("pop-a", "4", last_error="snapshot revision 3 rejected"))
    [shown] = api.get("/v1/fleet").json["edges"]
    assert (shown["behind"], shown["in_sync"]) == (0, False)
    row = row_of(html.unescape(console(api).get("/fleet").get_data(as_text=True)), "pop-a")
    assert "up to date" not in row and "not on revision 3" in row


def test_the_numbers_are_the_fleet_apis(api):
    edge_report(api, **status("pop-a", "2", traps=4,
                              telemetry={"buffered": 17, "spooled_files": 2}))
    shown = api.get("/v1/fleet").json["edges"][0]
    row = row_of(console(api).get("/fleet").get_data(as_text=True), "pop-a")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
    assert f"{shown['behind']} behind" in cells[2]
    assert cells[6].strip() == str(shown["traps"]) == "4"
    assert "17 record(s), 2 spool file(s)" in cells[7]


def test_decisions_per_second_come_from_successive_reports():
    fleet = FleetRegistry()
    fleet.report("pop-a", {"decisions": 100}, now_ms=10_000)
    fleet.report("pop-a", {"decisions": 600}, now_ms=15_000)
    assert fleet.view(None, now_ms=15_000)[0]["decisions_per_s"] == 100.0


def test_decisions_per_second_are_unknown_after_a_restart_or_a_first_report():
    fleet = FleetRegistry()
    fleet.report("pop-a", {"decisions": 600}, now_ms=10_000)
    assert fleet.view(None, now_ms=10_000)[0]["decisions_per_s"] is None
    fleet.report("pop-a", {"decisions": 5}, now_ms=15_000)  # the counter went back
    assert fleet.view(None, now_ms=15_000)[0]["decisions_per_s"] is None


def test_the_page_shows_decisions_per_second(api):
    fleet = api.application.extensions["fleet"]
    now = int(time.time() * 1000)
    fleet.report("pop-a", status("pop-a", "3", decisions=100), now_ms=now - 4000)
    fleet.report("pop-a", status("pop-a", "3", decisions=300), now_ms=now)
    row = row_of(console(api).get("/fleet").get_data(as_text=True), "pop-a")
    assert "<td>50.0</td>" in row


def test_an_edge_silent_past_the_fleet_rule_is_marked_stale(api):
    fleet = api.application.extensions["fleet"]
    now = int(time.time() * 1000)
    fleet.report("pop-old", status("pop-old", "3"), now_ms=now - STALE_AFTER_MS - 5000)
    edge_report(api, **status("pop-new", "3"))
    page = console(api).get("/fleet").get_data(as_text=True)
    old, new = row_of(page, "pop-old"), row_of(page, "pop-new")
    assert 'class="stale"' in old and ">stale<" in old
    assert "stale" not in new


def test_the_last_report_time_is_shown(api):
    fleet = api.application.extensions["fleet"]
    fleet.report("pop-a", status("pop-a", "3"), now_ms=1_796_000_000_000)
    row = row_of(console(api).get("/fleet").get_data(as_text=True), "pop-a")
    assert time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(1_796_000_000)) in row


def test_text_an_edge_reports_is_escaped(api):
    edge_report(api, **status("<script>x()</script>", "3",
                              last_error="<img src=x onerror=alert(1)>"))
    body = console(api).get("/fleet").get_data(as_text=True)
    assert "<script>x()" not in body and "<img src=x" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_a_viewer_sees_the_fleet(api):
    edge_report(api, **status("pop-a", "3"))
    resp = console(api, VIEWER_TOKEN, "Vic").get("/fleet")
    assert resp.status_code == 200 and 'data-edge="pop-a"' in resp.get_data(as_text=True)


def test_no_edges_yet_says_so(api):
    assert "No edge has reported yet" in console(api).get("/fleet").get_data(as_text=True)
