"""Reports run in a lane of their own: past it the API answers 503 with Retry-After and the
console a page saying the reports are busy, at once, while /healthz and ingest are served.
A review ran four trigger reports at once over 397k firings: each took 50 s and /healthz
waited 48 s behind them. And the report's counts come from indexes that a store made
before them gets when it is opened."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from control_plane import create_app
from control_plane.auth import configured_tokens, ensure_token_file
from control_plane.telemetry.reports import trigger_report
from control_plane.telemetry.telemetry_store import MIGRATIONS, TelemetryStore
from tests.servers import EDGE_TOKEN, control_client, control_config

REPORTS = ["/v1/reports/triggers", "/v1/reports/experiment", "/v1/reports/recalibrations"]
PAGES = ["/triggers", "/experiments", "/learning", "/audit"]
REPORT_INDEXES = {"fires_ts", "fires_trigger_variant"}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = create_app(control_config(tmp_path))
    app.testing = True
    for role in ("publisher", "viewer", "edge"):
        ensure_token_file(app.config["DATA_DIR"], role)
    return app


@contextmanager
def lane_full(app: Any) -> Iterator[int]:
    """Every place of the report lane taken, as by reports being computed."""
    lane = app.extensions["report_lane"]
    held = 0
    while lane.acquire(blocking=False):
        held += 1
    try:
        yield held
    finally:
        for _ in range(held):
            lane.release()


def console(app: Any) -> Any:
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    resp = client.post("/sign-in", data={"csrf": csrf, "name": "Ada", "next": "/triggers",
                                         "token": configured_tokens(app.config, "viewer")[0]})
    assert resp.status_code == 302, f"sign-in as viewer: {resp.status_code}"
    return client


def test_the_lane_leaves_two_threads_for_everything_else(app: Any) -> None:
    with lane_full(app) as held:
        assert held == app.config["THREADS"] - 2, f"report lane took {held} places"


@pytest.mark.parametrize("path", REPORTS)
def test_a_report_past_the_lane_is_503_with_retry_after(app: Any, tmp_path: Path,
                                                        path: str) -> None:
    client = control_client(tmp_path, app=app)
    with lane_full(app):
        resp = client.get(path)
    assert resp.status_code == 503, f"{path} with the report lane full: {resp.status_code}"
    error = resp.get_json()["error"]
    assert error["code"] == "reports_busy" and "ask again" in error["message"], error
    assert int(resp.headers["Retry-After"]) >= 1, resp.headers
    assert client.get(path).status_code == 200, f"{path} once the lane has room"


def test_health_and_ingest_are_served_while_the_lane_is_full(app: Any, tmp_path: Path) -> None:
    edge = control_client(tmp_path, EDGE_TOKEN, app=app)
    with lane_full(app):
        assert app.test_client().get("/healthz").status_code == 200
        resp = edge.post("/v1/telemetry", data=b'{"kind": "outcome", "id": "o1", '
                                               b'"session": "s1", "ts_ms": 1, "type": "click"}')
        assert resp.status_code == 200 and resp.get_json()["accepted"] == 1, resp.get_json()


@pytest.mark.parametrize("page", PAGES)
def test_a_console_page_past_the_lane_says_the_reports_are_busy(app: Any, page: str) -> None:
    client = console(app)
    with lane_full(app):
        resp = client.get(page)
    assert resp.status_code == 503, f"{page} with the report lane full: {resp.status_code}"
    assert resp.mimetype == "text/html" and "reports are busy" in resp.get_data(as_text=True)
    assert int(resp.headers["Retry-After"]) >= 1, resp.headers
    assert client.get(page).status_code == 200, f"{page} once the lane has room"


def test_a_request_turned_away_takes_no_place_and_a_report_gives_its_back(
        app: Any, tmp_path: Path) -> None:
    with lane_full(app):  # the token is checked first: 401, not busy
        assert app.test_client().get("/v1/reports/triggers").status_code == 401
    client = control_client(tmp_path, app=app)
    assert client.get("/v1/reports/triggers?window_s=nan").status_code == 400
    assert client.get("/v1/reports/triggers").status_code == 200
    with lane_full(app) as held:
        assert held == app.config["THREADS"] - 2, f"places left after reports: {held}"


def indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'fires'")}
    finally:
        db.close()


def test_a_store_made_before_the_report_indexes_gets_them_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    old.execute("INSERT INTO schema_version VALUES (9)")
    for step in MIGRATIONS[:9]:
        step(old)
    old.execute("INSERT INTO fires (decision_id, trigger, session, ts_ms, revision, device) "
                "VALUES ('d1', 'a', 's1', 1000, '1', 'desktop')")
    old.close()
    assert not REPORT_INDEXES & indexes(path)
    store = TelemetryStore(path)
    assert REPORT_INDEXES <= indexes(path), indexes(path)
    assert store.query("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    [row] = trigger_report(store)["rows"]
    assert (row["trigger"], row["device"], row["fires"]) == ("a", "desktop", 1), row


class Recording(TelemetryStore):
    """A store that keeps the SQL of every `query` (the report's folds run there)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sql: list[str] = []

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.sql.append(sql)
        return super().query(sql, params)


def test_the_report_counts_triggers_and_variants_from_an_index_not_the_table(
        tmp_path: Path) -> None:
    store = Recording(tmp_path / "telemetry.db")
    trigger_report(store, 30.0, 0)
    folds = [sql for sql in store.sql if "FROM fires" in sql and "GROUP BY" in sql]
    assert len(folds) == 4, folds
    indexed = [sql for sql in folds if "GROUP BY trigger" in sql]  # trigger; trigger, variant
    assert len(indexed) == 2, folds
    for sql in indexed:
        plan = " | ".join(row[3] for row in store.query("EXPLAIN QUERY PLAN " + sql, (0, 1)))
        assert "fires USING COVERING INDEX" in plan, f"{sql}\nreads the table: {plan}"
