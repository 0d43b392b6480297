"""The console's sign-in and its triggers page (Flask's test client against the real app,
real telemetry store): who gets in, what a forged or missing CSRF token gets, and that the
page's numbers are the trigger report's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from control_plane import create_app
from control_plane.auth import configured_tokens, ensure_token_file
from control_plane.telemetry.reports import hourly_activity, trigger_report
from loadtest.bench_console import synthetic_telemetry
from tests.servers import control_config


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = create_app(control_config(tmp_path))
    for role in ("publisher", "viewer", "edge"):
        ensure_token_file(app.config["DATA_DIR"], role)
    return app


def token(app: Any, role: str) -> str:
    return configured_tokens(app.config, role)[0]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def signed_in(app: Any, role: str = "publisher", name: str = "Ada") -> Any:
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    resp = client.post("/sign-in", data={"csrf": csrf_of(form), "token": token(app, role),
                                         "name": name, "next": "/triggers"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/triggers"
    return client


@pytest.mark.parametrize("page", ["/triggers", "/triggers?period=30d", "/"])
def test_without_a_session_every_page_leads_to_sign_in(app: Any, page: str) -> None:
    resp = app.test_client().get(page, follow_redirects=True)
    assert resp.request.path == "/sign-in"
    assert 'name="token"' in resp.get_data(as_text=True)


def test_the_session_cookie_is_http_only_and_same_site_strict(app: Any) -> None:
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    resp = client.post("/sign-in", data={"csrf": csrf_of(form), "token": token(app, "viewer"),
                                         "name": "Vi"})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


@pytest.mark.parametrize("role", ["publisher", "viewer"])
def test_publisher_and_viewer_tokens_sign_in(app: Any, role: str) -> None:
    page = signed_in(app, role, name="Grace").get("/triggers").get_data(as_text=True)
    assert f"Grace ({role})" in page


@pytest.mark.parametrize("role", ["edge", None])
def test_other_tokens_do_not_sign_in(app: Any, role: str | None) -> None:
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    resp = client.post("/sign-in", data={"csrf": csrf_of(form), "name": "x",
                                         "token": token(app, role) if role else "guess"})
    assert resp.status_code == 403
    assert "not a publisher or viewer token" in resp.get_data(as_text=True)
    assert client.get("/triggers").status_code == 302


@pytest.mark.parametrize("sent", [None, "forged-token"])
def test_sign_in_and_sign_out_without_the_forms_csrf_token_are_refused(app: Any,
                                                                      sent: str | None) -> None:
    client = app.test_client()
    client.get("/sign-in")
    data = {"token": token(app, "publisher"), "name": "x"}
    if sent:
        data["csrf"] = sent
    assert client.post("/sign-in", data=data).status_code == 403
    assert client.get("/triggers").status_code == 302  # not signed in
    client = signed_in(app)
    assert client.post("/sign-out", data={"csrf": "forged"}).status_code == 403
    assert client.get("/triggers").status_code == 200  # still signed in


def test_sign_out_ends_the_session(app: Any) -> None:
    client = signed_in(app)
    csrf = csrf_of(client.get("/triggers").get_data(as_text=True))
    assert client.post("/sign-out", data={"csrf": csrf}).status_code == 302
    assert client.get("/triggers").status_code == 302


def copy_of(app: Any, client: Any) -> Any:
    """Another browser holding a copy of `client`'s console cookie."""
    copy = app.test_client()
    copy.set_cookie("console", client.get_cookie("console").value)
    return copy


def sign_out(client: Any) -> None:
    csrf = csrf_of(client.get("/triggers").get_data(as_text=True))
    assert client.post("/sign-out", data={"csrf": csrf}).status_code == 302


def test_a_copy_of_the_cookie_taken_before_signing_out_is_refused(app: Any) -> None:
    """Signing out records the session's id on the server: a copy (a shared machine, a
    proxy's log) no longer works, while other sessions do."""
    client, other = signed_in(app), signed_in(app, name="Other")
    copy = copy_of(app, client)
    assert copy.get("/triggers").status_code == 200
    sign_out(client)
    refused = copy.get("/triggers")
    assert refused.status_code == 302 and "/sign-in" in refused.headers["Location"]
    assert other.get("/triggers").status_code == 200


def signin_sid(app: Any, client: Any) -> str:
    """The session id inside `client`'s console cookie."""
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.loads(client.get_cookie("console").value)["sid"]


def test_no_session_outlives_its_sign_in_by_more_than_its_lifetime(app: Any,
                                                                  monkeypatch) -> None:
    """Every request re-issues the cookie with a fresh timestamp, so a copy kept in use
    would outlive the sign-out record; the sign-in time inside the cookie bounds it."""
    import time

    from control_plane.console import signin, signouts

    client = signed_in(app)
    copy = copy_of(app, client)
    sign_out(client)
    started = time.time()
    end = started + signin.SESSION_S + signouts.KEEP_AFTER_S + 60  # the record is gone
    at = started
    while at + signin.SESSION_S - 600 < end:  # kept alive: re-issued every 7 h 50 min
        at += signin.SESSION_S - 600
        monkeypatch.setattr(time, "time", lambda t=at: t)
        assert copy.get("/healthz").status_code == 200  # re-issues the copy's cookie
    monkeypatch.setattr(time, "time", lambda: end)
    sign_out(signed_in(app))  # any sign-out forgets records past their end: this one's
    assert app.extensions["console_signouts"].signed_out(
        signin_sid(app, copy)) is False
    assert copy.get("/triggers").status_code == 302  # its cookie is fresh, its sign-in not
    assert signed_in(app).get("/triggers").status_code == 200  # signed in now: fine


def test_a_sign_out_that_cannot_be_recorded_says_so_and_still_signs_this_browser_out(
        app: Any) -> None:
    import sqlite3

    client = signed_in(app)
    csrf = csrf_of(client.get("/triggers").get_data(as_text=True))
    lock = sqlite3.connect(Path(app.config["DATA_DIR"]) / "console.sqlite3",
                           isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than a page waits
    try:
        resp = client.post("/sign-out", data={"csrf": csrf})
        assert resp.status_code == 503
        page = resp.get_data(as_text=True)
        assert "could not be recorded" in page and "Traceback" not in page
        assert client.get("/triggers").status_code == 302  # this browser is signed out
    finally:
        lock.execute("ROLLBACK")


def test_unreadable_sign_outs_are_a_503_page_not_a_way_in(app: Any, monkeypatch) -> None:
    import sqlite3

    client = signed_in(app)

    def down(self: Any, sid: str) -> bool:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(app.extensions["console_signouts"].__class__, "signed_out", down)
    resp = client.get("/triggers")
    assert resp.status_code == 503
    assert "cannot check its sessions" in resp.get_data(as_text=True)


def test_a_clock_stepped_forward_and_back_keeps_the_sign_outs(app: Any, monkeypatch) -> None:
    import time

    from control_plane.console import signin

    client = signed_in(app)
    copy = copy_of(app, client)
    sign_out(client)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + signin.SESSION_S + 3600)  # 9 h ahead
    sign_out(signed_in(app))  # a sign-out purges what has ended
    monkeypatch.setattr(time, "time", lambda: now + 60)  # and the clock comes back
    assert copy.get("/triggers").status_code == 302


def test_a_sign_out_holds_across_a_restart(app: Any, tmp_path: Path) -> None:
    client = signed_in(app)
    copy_value = client.get_cookie("console").value
    sign_out(client)
    restarted = create_app(control_config(tmp_path))  # the same data folder
    copy = restarted.test_client()
    copy.set_cookie("console", copy_value)
    assert copy.get("/triggers").status_code == 302
    live = copy_of(restarted, signed_in(app))  # sessions not signed out carry on
    assert live.get("/triggers").status_code == 200


def test_a_rotated_token_signs_its_sessions_out(app: Any) -> None:
    client = signed_in(app, "viewer")
    (Path(app.config["DATA_DIR"]) / "viewer.token").write_text("a-new-token\n")
    assert client.get("/triggers").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_sign_in_never_redirects_off_site(app: Any, target: str) -> None:
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    resp = client.post("/sign-in", data={"csrf": csrf_of(form), "name": "x", "next": target,
                                         "token": token(app, "publisher")})
    assert resp.headers["Location"] == "/triggers"


def test_the_api_still_answers_json_errors(app: Any) -> None:
    resp = app.test_client().get("/v1/reports/triggers")
    assert resp.status_code == 401 and resp.is_json


def ingest(app: Any, days: int = 2, triggers: int = 6) -> None:
    records = synthetic_telemetry(days=days, triggers=triggers, sessions_per_hour=20, seed=3)
    app.extensions["telemetry_store"].ingest(records)


def test_the_triggers_page_shows_the_reports_numbers(app: Any) -> None:
    ingest(app)
    html = signed_in(app).get("/triggers?period=7d").get_data(as_text=True)
    report = trigger_report(app.extensions["telemetry_store"], 30.0, 0)
    totals: dict[str, dict[str, int]] = {}
    for row in report["rows"]:
        t = totals.setdefault(row["trigger"], {"fires": 0, "conversions": 0, "clicks": 0})
        for key in t:
            t[key] += row[key]
    assert totals, "the synthetic traffic fired triggers"
    for trig, t in totals.items():
        cells = re.search(rf'<tr data-trigger="{trig}">(.*?)</tr>', html, re.DOTALL).group(1)
        numbers = [int(n) for n in re.findall(r"<td>(\d+)</td>", cells)]
        fires, _impressions, clicks, conversions = numbers[:4]
        assert (fires, clicks, conversions) == (t["fires"], t["clicks"], t["conversions"])


def test_the_hourly_plot_has_a_point_per_hour_with_data(app: Any) -> None:
    ingest(app)
    html = signed_in(app).get("/triggers?period=7d").get_data(as_text=True)
    activity = hourly_activity(app.extensions["telemetry_store"], 0)
    points = re.findall(r'<circle class="point" data-series="fires" data-value="(\d+)"', html)
    assert [int(p) for p in points] == [n for _, n in activity["fires"]]
    assert len(points) > 24


def test_filters_and_sorting(app: Any) -> None:
    ingest(app)
    client = signed_in(app)
    by_fires = client.get("/triggers?sort=fires").get_data(as_text=True)
    order = re.findall(r'<tr data-trigger="([^"]+)">', by_fires)
    fires = [int(re.search(rf'<tr data-trigger="{t}">\s*<td>.*?</td><td class="text">.*?</td>\s*'
                           r"<td>(\d+)</td>", by_fires, re.DOTALL).group(1)) for t in order]
    assert fires == sorted(fires, reverse=True)
    by_name = client.get("/triggers?sort=trigger").get_data(as_text=True)
    assert re.findall(r'<tr data-trigger="([^"]+)">', by_name) == sorted(order)
    mobile = client.get("/triggers?device=mobile").get_data(as_text=True)
    assert "device desktop" not in mobile and "device mobile" in mobile


def test_names_from_telemetry_are_escaped(app: Any) -> None:
    app.extensions["telemetry_store"].ingest([
        {"kind": "decision", "id": "d1", "session": "s1", "ts_ms": 1_796_000_000_000,
         "revision": "1", "fired": ["<script>alert(1)</script>"], "suppressed": [],
         "context": {"device": "<b>x</b>"}}])
    html = signed_in(app).get("/triggers?period=90d").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_the_triggers_page_counts_as_the_api_does_with_the_configured_window(
        tmp_path: Path) -> None:
    import time

    app = create_app(control_config(tmp_path, FALSE_TRIGGER_WINDOW_S=60.0))
    ensure_token_file(app.config["DATA_DIR"], "viewer")
    now = int(time.time() * 1000) - 3_600_000
    decision = {"kind": "decision", "session": "s", "fired": ["a"]}
    app.extensions["telemetry_store"].ingest([
        {**decision, "id": "d1", "ts_ms": now},
        # clicked 45 s on: not a false trigger with a 60 s window (30 s is the default)
        {"kind": "outcome", "id": "o1", "session": "s", "ts_ms": now + 45_000,
         "type": "click", "trigger": "a"},
        # a conversion naming `a` in a session where it never fired counts for nobody
        {"kind": "decision", "id": "d2", "session": "t", "ts_ms": now, "fired": []},
        {"kind": "outcome", "id": "o2", "session": "t", "ts_ms": now + 1, "type": "conversion",
         "trigger": "a"}])
    client = signed_in(app, "viewer")
    api = client.get("/v1/reports/triggers",
                     headers={"Authorization": f"Bearer {token(app, 'publisher')}"}).get_json()
    [row] = api["rows"]
    assert (row["false_triggers"], row["conversions"]) == (0, 0)
    html = client.get("/triggers?period=7d&trigger=a").get_data(as_text=True)
    cells = re.search(r'<tr data-trigger="a">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "<td>0.0 %</td>" in cells  # the false-trigger rate, as the API counts it
    conversions = re.findall(r'<circle class="point" data-series="conversions" '
                             r'data-value="(\d+)"', html)
    assert sum(int(n) for n in conversions) == row["conversions"]
