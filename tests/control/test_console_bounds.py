"""What the console and the reports list is bounded whatever telemetry names: a visitor's
context.device is any string, an edge token's holder may name any trigger, revision or
variant. The most fired values are listed, the others summed into one "(other)" row, and
the page says how many were. Also: the console cookie's Secure setting, and a sign-out
that could not be recorded."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from control_plane import create_app
from control_plane.auth import configured_tokens, ensure_token_file
from control_plane.config import ConfigError
from control_plane.telemetry.audit import MAX_FLAGS, MAX_MATRIX, audit
from control_plane.telemetry.reports import (
    LIMITS,
    OTHER,
    format_table,
    holdout_lift,
    trigger_report,
)
from control_plane.telemetry.telemetry_store import TelemetryStore
from tests.servers import control_config

NOW = int(time.time() * 1000)


def decision(k: int, fired: list[str], device: str = "desktop", **extra: Any) -> dict:
    return {"kind": "decision", "id": f"d{k}", "session": f"s{k}", "ts_ms": NOW - 1000 - k,
            "fired": fired, "context": {"device": device}, **extra}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = create_app(control_config(tmp_path))
    for role in ("publisher", "viewer"):
        ensure_token_file(app.config["DATA_DIR"], role)
    return app


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def signed_in(app: Any) -> Any:
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    resp = client.post("/sign-in", data={"csrf": csrf_of(form), "name": "Ada",
                                         "token": configured_tokens(app.config, "viewer")[0]})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return client


def test_made_up_devices_are_folded_into_one_other_row(app: Any) -> None:
    store = app.extensions["telemetry_store"]
    made_up = LIMITS["devices"] * 3
    # desktop fires most (3 each), then the made-up ones once each
    store.ingest([decision(k, ["exit"], "desktop") for k in range(3)] +
                 [decision(100 + k, ["exit"], f"made-up-{k:03d}") for k in range(made_up)])
    report = trigger_report(store)
    devices = {r["device"] for r in report["rows"]}
    assert len(devices) == LIMITS["devices"] + 1 and OTHER in devices and "desktop" in devices
    assert report["folded"]["devices"] == made_up + 1 - LIMITS["devices"]
    assert sum(r["fires"] for r in report["rows"]) == 3 + made_up  # nothing lost
    other = next(r for r in report["rows"] if r["device"] == OTHER)
    assert other["fires"] == other["sessions"] == report["folded"]["devices"]

    page = signed_in(app).get("/triggers").get_data(as_text=True)
    select = page[page.index('name="device"'):page.index("</select>", page.index('name="device"'))]
    assert select.count("<option") == 1 + LIMITS["devices"] + 1  # all, the kept, (other)
    assert f"{report['folded']['devices']} more devices" in page
    assert "made-up-029" not in page  # folded, never listed


def test_made_up_triggers_are_folded_in_the_report_the_page_and_the_api(app: Any) -> None:
    store = app.extensions["telemetry_store"]
    extra = 25
    names = [f"t{k:04d}-" + "x" * 200 for k in range(LIMITS["triggers"] + extra)]
    # the first LIMITS fire twice, the rest once: the rest are folded
    store.ingest([decision(k, [n]) for k, n in enumerate(names)] +
                 [decision(10_000 + k, [n]) for k, n in enumerate(names[:LIMITS["triggers"]])])
    report = trigger_report(store)
    triggers = [r["trigger"] for r in report["rows"]]
    assert len(triggers) == LIMITS["triggers"] + 1 and triggers[-1] == OTHER  # last
    assert report["folded"]["triggers"] == extra
    assert next(r for r in report["rows"] if r["trigger"] == OTHER)["fires"] == extra
    assert f"{extra} more triggers" in format_table(report)  # the CLI says so too

    page = signed_in(app).get("/triggers").get_data(as_text=True)
    assert page.count('<tr data-trigger=') == LIMITS["triggers"] + 1
    assert names[-1] not in page and f"{extra} more triggers" in page

    publisher = app.test_client()
    publisher.environ_base["HTTP_AUTHORIZATION"] = \
        f"Bearer {configured_tokens(app.config, 'publisher')[0]}"
    api = publisher.get("/v1/reports/triggers").get_json()
    assert len({r["trigger"] for r in api["rows"]}) == LIMITS["triggers"] + 1
    assert api["folded"]["triggers"] == extra


def test_variants_and_revisions_are_folded_too(tmp_path: Path) -> None:
    store = TelemetryStore(tmp_path / "t.db")
    n = LIMITS["variants"] + 7
    store.ingest([decision(k, ["exit"], variants={"exit": f"v{k:04d}"}, revision=str(k))
                  for k in range(n)])
    report = trigger_report(store)
    assert len(report["variants"]) == LIMITS["variants"] + 1
    assert report["variants"][-1]["variant"] == OTHER and report["variants"][-1]["fires"] == 7
    assert len({r["revision"] for r in report["rows"]}) == LIMITS["revisions"] + 1
    assert report["folded"]["revisions"] == n - LIMITS["revisions"]


def test_holdout_lift_is_given_for_the_listed_triggers_only(tmp_path: Path) -> None:
    store = TelemetryStore(tmp_path / "t.db")
    names = [f"h{k:04d}" for k in range(LIMITS["triggers"] + 5)]
    held = [{"trigger": n, "reason": "holdout"} for n in names]
    store.ingest([decision(k, [n]) for k, n in enumerate(names)] +
                 [decision(5000 + k, [n]) for k, n in enumerate(names[:LIMITS["triggers"]])] +
                 [decision(9000, [], suppressed=held)])
    assert len(holdout_lift(store)) == LIMITS["triggers"]
    assert len(trigger_report(store)["holdout"]) == LIMITS["triggers"]


def test_the_audit_lists_a_bounded_number_of_flags_and_says_so(app: Any) -> None:
    store = app.extensions["telemetry_store"]
    names = [f"a{k:04d}-" + "y" * 300 for k in range(MAX_FLAGS + 40)]
    store.ingest([decision(k, [n]) for k, n in enumerate(names)])
    found = audit(store)
    low = [f for f in found["flags"] if f["flag"] == "low_confidence"]
    assert len(low) == MAX_FLAGS and found["flags_left_out"] == 40
    assert len(found["triggers"]) == MAX_MATRIX
    page = signed_in(app).get("/audit").get_data(as_text=True)
    assert "40 more flag(s) are not listed" in page
    assert "y" * 300 not in page[page.index("<svg"):page.index("</svg>")]  # tooltips cut


def test_cookie_secure_setting_is_read_from_the_environment(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("CONTROL_CONSOLE_COOKIE_SECURE", "1")
    app = create_app(control_config(tmp_path))
    ensure_token_file(app.config["DATA_DIR"], "viewer")
    client = app.test_client()
    form = client.get("/sign-in")
    assert "Secure" in form.headers["Set-Cookie"]  # plain http, yet asked for


@pytest.mark.parametrize("setting, environ, scheme, secure", [
    ("auto", {}, "http", False),  # plain http to this server (a laptop)
    ("auto", {"HTTP_X_FORWARDED_PROTO": "https"}, "http", True),  # a TLS proxy in front
    ("auto", {}, "https", True),  # TLS to this server (another WSGI server)
    ("0", {"HTTP_X_FORWARDED_PROTO": "https"}, "http", False),
])
def test_cookie_is_secure_when_the_request_came_over_https(tmp_path: Path, setting: str,
                                                             environ: dict, scheme: str,
                                                             secure: bool) -> None:
    app = create_app(control_config(tmp_path, CONSOLE_COOKIE_SECURE=setting))
    ensure_token_file(app.config["DATA_DIR"], "viewer")
    client = app.test_client()
    client.environ_base.update(environ)
    cookie = client.get("/sign-in", base_url=f"{scheme}://localhost").headers["Set-Cookie"]
    assert ("Secure" in cookie) is secure, cookie


def test_a_cookie_secure_setting_that_means_nothing_is_refused_at_start(tmp_path: Path
                                                                         ) -> None:
    with pytest.raises(ConfigError, match="CONTROL_CONSOLE_COOKIE_SECURE"):
        create_app(control_config(tmp_path, CONSOLE_COOKIE_SECURE="maybe"))


def test_a_sign_out_not_recorded_says_how_long_the_copy_works_and_the_retry_revokes_it(
        app: Any) -> None:
    client = signed_in(app)
    copy = app.test_client()
    copy.set_cookie("console", client.get_cookie("console").value)
    csrf = csrf_of(client.get("/triggers").get_data(as_text=True))
    lock = sqlite3.connect(Path(app.config["DATA_DIR"]) / "console.sqlite3",
                           isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        resp = client.post("/sign-out", data={"csrf": csrf})
        page = resp.get_data(as_text=True)
        assert resp.status_code == 503 and "still works until" in page
        # the pending record outlives the browser's closing (a re-review: it was a session
        # cookie, gone with the browser, and the copy then worked to the 8 h end)
        assert "Expires=" in resp.headers["Set-Cookie"]
        assert "removed from the control plane" in page and 'id="retry-sign-out"' in page
        assert "Sign in and out again shortly" not in page
    finally:
        lock.execute("ROLLBACK")
    assert copy.get("/triggers").status_code == 200  # as the page says: not revoked yet
    assert client.get("/triggers").status_code == 302  # this browser is signed out
    retry = client.post("/sign-out", data={"csrf": csrf_of(page)})  # the page's button
    assert retry.status_code == 302
    assert copy.get("/triggers").status_code == 302  # now the copy is refused


def test_signing_in_again_records_a_sign_out_that_could_not_be(app: Any) -> None:
    client = signed_in(app)
    copy = app.test_client()
    copy.set_cookie("console", client.get_cookie("console").value)
    csrf = csrf_of(client.get("/triggers").get_data(as_text=True))
    lock = sqlite3.connect(Path(app.config["DATA_DIR"]) / "console.sqlite3",
                           isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        assert client.post("/sign-out", data={"csrf": csrf}).status_code == 503
    finally:
        lock.execute("ROLLBACK")
    form = client.get("/sign-in").get_data(as_text=True)
    assert client.post("/sign-in", data={"csrf": csrf_of(form), "name": "Ada", "token":
                                         configured_tokens(app.config, "viewer")[0]}
                       ).status_code == 302
    assert copy.get("/triggers").status_code == 302
    assert client.get("/triggers").status_code == 200  # the new session is fine


def test_the_fleet_page_lists_a_bounded_number_of_edges_those_needing_a_look_first(
        app: Any) -> None:
    from control_plane.console.views_packs import MAX_FLEET_ROWS
    from tests.servers import EDGE_TOKEN

    edge = app.test_client()
    edge.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {EDGE_TOKEN}"
    many = MAX_FLEET_ROWS + 30
    for n in range(many):  # nothing published: none is in sync, so all need a look
        assert edge.post("/v1/fleet/report", json={
            "edge_id": f"made-up-{n:04d}", "revision": None, "status": "ok",
            "last_error": "sync failed" if n == many - 1 else None}).status_code == 204
    page = signed_in(app).get("/fleet").get_data(as_text=True)
    assert page.count("<tr data-edge=") == MAX_FLEET_ROWS
    assert 'data-edge="made-up-0000"' in page
    assert "30 more edge(s) are not listed (30 of them behind, stale or with a sync error)" \
        in page
