"""The console's experiments, learning and audit pages (Flask's test client against the real
app, real telemetry store and edge store): their numbers are the report functions', their
plots have a point per data point, the sample-ratio check warns on a skewed split only, and
names from packs and telemetry are escaped."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.telemetry.audit import audit
from control_plane.telemetry.reports import (
    SRM_P,
    chi2_sf,
    experiment_report,
    format_experiment,
    rate_interval,
    recalibration_log,
    sample_ratio_mismatch,
)
from control_plane.telemetry.telemetry_store import TelemetryStore
from tests.servers import EDGE_TOKEN, PUBLISHER_TOKEN, control_client

SPLIT = {"adaptive": 45.0, "static": 45.0, "holdout": 10.0}


# The sample-ratio check


@pytest.mark.parametrize("x, df, p", [(3.841459, 1, 0.05), (5.991465, 2, 0.05),
                                      (10.827566, 1, 0.001), (13.815511, 2, 0.001),
                                      (7.814728, 3, 0.05), (9.487729, 4, 0.05),
                                      (0.0, 2, 1.0)])
def test_chi_square_tail_matches_the_tables(x: float, df: int, p: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-5)


def test_a_fair_split_is_no_mismatch() -> None:
    srm = sample_ratio_mismatch({"adaptive": 452, "static": 446, "holdout": 102}, SPLIT)
    # (452-450)²/450 + (446-450)²/450 + (102-100)²/100
    assert srm["chi2"] == pytest.approx(0.0844, abs=1e-3) and srm["df"] == 2
    assert srm["p"] > 0.9 and srm["mismatch"] is False


def test_a_skewed_split_is_a_mismatch() -> None:
    srm = sample_ratio_mismatch({"adaptive": 520, "static": 400, "holdout": 80}, SPLIT)
    assert srm["expected"] == {"adaptive": 450.0, "static": 450.0, "holdout": 100.0}
    assert srm["p"] < SRM_P and srm["mismatch"] is True


def test_sessions_in_an_arm_declared_at_zero_are_a_mismatch() -> None:
    srm = sample_ratio_mismatch({"adaptive": 500, "static": 490, "holdout": 3},
                                {"adaptive": 50.0, "static": 50.0, "holdout": 0.0})
    assert srm["mismatch"] is True and srm["p"] == 0.0 and "holdout" in srm["note"]


def test_too_few_sessions_are_not_tested() -> None:
    srm = sample_ratio_mismatch({"adaptive": 20, "static": 20, "holdout": 1}, SPLIT)
    assert srm["p"] is None and srm["mismatch"] is False
    assert srm["note"].startswith("not enough sessions")


def test_the_rate_interval_is_wilsons() -> None:
    # 60 of 200: Wilson 95 % interval 0.2407..0.3668 (statsmodels proportion_confint wilson)
    assert rate_interval(60, 200) == pytest.approx([0.2407, 0.3668], abs=1e-4)
    assert rate_interval(0, 40)[0] == 0.0 and rate_interval(0, 0) is None


# Data: an experiment published through the API, sessions through the telemetry store

RECENT = int(time.time() * 1000) - 3_600_000  # an hour ago: inside every console period
DAY_MS = 86_400_000
VIEWER_TOKEN = "viewer-token-for-tests"
PACK = """\
pack: {name}
settings:
  experiment: {{salt: q4, adaptive: 45%, static: 45%, holdout: 10%}}
models:
  thresholds:
    "{trigger}#0": {{"*": 60%}}
triggers:
  - id: "{trigger}"
    page: /pricing
    when:
      - scroll_depth: {{gte: 80%, mode: adaptive}}
    action: {{content: discount-nudge-10}}
"""


def publish_experiment(api: Any, trigger: str = "exp-t") -> None:
    assert api.put("/v1/packs/exp", data=PACK.format(name="exp", trigger=trigger)
                   ).status_code in (200, 201)
    assert api.post("/v1/snapshots").status_code == 201


def ingest(target: Any, records: list[dict[str, Any]]) -> None:
    """Records into a store, or through an app's ingest endpoint as an edge sends them."""
    if isinstance(target, TelemetryStore):
        target.ingest(records)
        return
    edge = target.application.test_client()
    body = "\n".join(json.dumps(r) for r in records)
    answer = edge.post("/v1/telemetry", data=body,
                       headers={"Authorization": f"Bearer {EDGE_TOKEN}"}).get_json()
    assert answer["accepted"] == len(records), answer


def arm_sessions(target: Any, counts: dict[str, tuple[int, int]], at: int = RECENT) -> None:
    """Sessions per arm (sessions, converted): one decision each, firing in the treated
    arms; converted sessions report a conversion 5 s later."""
    records: list[dict[str, Any]] = []
    for arm, (sessions, converted) in counts.items():
        for n in range(sessions):
            session = f"{arm}-{n}"
            records.append({"kind": "decision", "id": f"{session}-d", "session": session,
                            "ts_ms": at, "revision": "1", "arm": arm,
                            "fired": [] if arm == "holdout" else ["exp-t"],
                            "suppressed": [{"trigger": "exp-t", "reason": "experiment_holdout"}]
                            if arm == "holdout" else [], "context": {"device": "desktop"}})
            if n < converted:
                records.append({"kind": "outcome", "id": f"{session}-c", "session": session,
                                "ts_ms": at + 5000, "type": "conversion"})
    ingest(target, records)


FAIR = {"adaptive": (452, 120), "static": (446, 90), "holdout": (102, 12)}
SKEWED = {"adaptive": (560, 150), "static": (380, 80), "holdout": (60, 7)}


def test_the_cli_and_the_api_check_the_split_the_published_snapshot_declares(
        tmp_path: Path) -> None:
    api = control_client(tmp_path)
    publish_experiment(api)
    arm_sessions(api, SKEWED)
    doc = api.get("/v1/reports/experiment").get_json()
    assert doc["srm"]["split"] == SPLIT and doc["srm"]["mismatch"] is True
    config = api.application.config
    shown = CliRunner().invoke(cli, ["report", "--data-dir", config["DATA_DIR"], "--store",
                                     config["STORE_DIR"], "--experiment"])
    assert shown.exit_code == 0, shown.output
    assert "SAMPLE RATIO MISMATCH: sessions adaptive 560, static 380, holdout 60" in shown.output
    as_json = CliRunner().invoke(cli, ["report", "--data-dir", config["DATA_DIR"], "--store",
                                       config["STORE_DIR"], "--experiment", "--format", "json"])
    assert json.loads(as_json.output)["srm"] == doc["srm"]


def test_without_a_published_experiment_the_split_is_not_checked(tmp_path: Path) -> None:
    store = TelemetryStore(tmp_path / "t.sqlite3")
    arm_sessions(store, FAIR)
    doc = experiment_report(store)
    assert doc["srm"] is None and "sample ratio" not in format_experiment(doc)
    fair = format_experiment(experiment_report(store, split=SPLIT))
    assert "sample ratio: as declared (adaptive 45%, static 45%, holdout 10%" in fair


# The pages


@pytest.fixture
def api(tmp_path: Path) -> Any:
    """The API client (publisher token) of a control plane that also has a viewer token."""
    return control_client(tmp_path, VIEWER_TOKENS=VIEWER_TOKEN)


def telemetry(api: Any) -> TelemetryStore:
    return api.application.extensions["telemetry_store"]


def console(api: Any, token: str = PUBLISHER_TOKEN) -> Any:
    """A browser-like client of the same app, signed in through the sign-in form."""
    client = api.application.test_client()
    page = client.get("/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    resp = client.post("/sign-in", data={"token": token, "name": "Ann", "csrf": csrf})
    assert resp.status_code == 302
    return client


def page(client: Any, path: str) -> str:
    resp = client.get(path)
    assert resp.status_code == 200, path
    return resp.get_data(as_text=True)


def cells(html: str, attr: str, value: str) -> list[str]:
    row = re.search(rf'<tr {attr}="{re.escape(value)}">(.*?)</tr>', html, re.DOTALL)
    assert row, f"no row {attr}={value}"
    return [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.DOTALL)]


def pct(v: float) -> str:
    return f"{v * 100:.1f} %"


def test_the_experiments_page_shows_the_reports_numbers(api: Any) -> None:
    publish_experiment(api)
    arm_sessions(api, FAIR)
    html = page(console(api), "/experiments?period=7d")
    report = experiment_report(telemetry(api), 30.0, 0, split=SPLIT)
    for arm in report["arms"]:
        got = cells(html, "data-arm", arm["arm"])
        low, high = arm["conversion_ci95"]
        assert got[1:5] == [str(arm["sessions"]), str(arm["converted_sessions"]),
                            pct(arm["conversion_rate"]), f"{pct(low)} to {pct(high)}"]
    for c in report["comparisons"]:
        got = cells(html, "data-comparison", f"{c['arm']}-{c['against']}")
        assert got[1:3] == [f"{c['lift'] * 100:+.1f}",
                            f"{c['ci95'][0] * 100:+.1f} to {c['ci95'][1] * 100:+.1f}"]
    # one interval per arm, then one per comparison, each drawn as one point
    points = re.findall(r'<circle class="point" data-series="([^"]+)" data-value="([^"]+)"',
                        html)
    assert points == ([(a["arm"], f"{a['conversion_rate']:g}") for a in report["arms"]]
                      + [(f"{c['arm']} vs {c['against']}", f"{c['lift']:g}")
                         for c in report["comparisons"]])


def test_a_skewed_split_warns_and_says_what_to_check(api: Any) -> None:
    publish_experiment(api)
    arm_sessions(api, SKEWED)
    html = page(console(api), "/experiments")
    warning = re.search(r'<div class="warn" role="alert" id="srm">(.*?)</div>', html, re.DOTALL)
    assert warning, "no sample-ratio warning"
    srm = experiment_report(telemetry(api), split=SPLIT)["srm"]
    text = " ".join(warning.group(1).split())
    assert f"p = {srm['p']:.2g}" in text and f"chi-square {srm['chi2']:.2f}" in text
    assert "adaptive 560 (expected 450)" in text and "holdout 60 (expected 100)" in text
    assert "not the random split" in text and "same snapshot" in text


def test_a_fair_split_does_not_warn(api: Any) -> None:
    publish_experiment(api)
    arm_sessions(api, FAIR)
    html = page(console(api), "/experiments")
    assert 'role="alert"' not in html and "Sample ratio as declared" in html


def test_without_a_published_experiment_the_page_says_the_split_is_unknown(api: Any) -> None:
    arm_sessions(api, SKEWED)
    html = page(console(api), "/experiments")
    assert 'role="alert"' not in html and "declares no experiment split" in html


@pytest.mark.parametrize("path, sentence", [
    ("/experiments", "Nothing yet: no decision in this period names an arm"),
    ("/learning", "Nothing yet: the learning loop recorded no recalibration"),
    ("/audit", "Nothing yet: no trigger fired in this period")])
def test_pages_without_data_say_nothing_yet(api: Any, path: str, sentence: str) -> None:
    html = page(console(api), path)
    assert sentence in html and 'class="point"' not in html


def recalibrations(store: TelemetryStore, trigger: str = "exp-t") -> list[dict[str, Any]]:
    """Two thresholds of one trigger moving over three runs (one kept), and an old run."""
    rows = [
        {"ts_ms": RECENT - 3 * 3_600_000, "trigger": trigger, "model_key": f"{trigger}#0",
         "segment": "*", "old": 0.6, "new": 0.65, "samples": 400, "objective": 0.82,
         "reason": "reaches the recall target with fewer fires", "revision": "2",
         "details": {"guardrail": {"held_out": 57, "checked": True}, "step": 0.05}},
        {"ts_ms": RECENT - 3 * 3_600_000, "trigger": trigger, "model_key": f"{trigger}#0",
         "segment": "mobile", "old": 0.5, "new": 0.55, "samples": 120, "objective": 0.8,
         "reason": "reaches the recall target with fewer fires", "revision": "2",
         "details": {}},
        {"ts_ms": RECENT - 3_600_000, "trigger": trigger, "model_key": f"{trigger}#0",
         "segment": "*", "old": 0.65, "new": 0.7, "samples": 450, "objective": 0.81,
         "reason": "reaches the recall target with fewer fires", "revision": "3",
         "details": {"guardrail": {"held_out": 61, "checked": True}}},
        {"ts_ms": RECENT, "trigger": trigger, "model_key": f"{trigger}#0", "segment": "*",
         "old": 0.7, "new": None, "samples": 12, "objective": None,
         "reason": "too few samples (12 sessions)", "revision": None, "details": {}},
        {"ts_ms": RECENT - 20 * DAY_MS, "trigger": trigger, "model_key": f"{trigger}#0",
         "segment": "*", "old": 0.5, "new": 0.6, "samples": 300, "objective": 0.8,
         "reason": "first run", "revision": "1", "details": {}},
    ]
    store.record_recalibrations(rows)
    return rows


def test_the_learning_page_lists_each_recalibration_of_the_period(api: Any) -> None:
    recalibrations(telemetry(api))
    html = page(console(api), "/learning?period=7d")
    log = recalibration_log(telemetry(api), RECENT - 7 * DAY_MS, limit=1000)["recalibrations"]
    assert len(log) == 4 and "first run" not in html
    shown = re.findall(r'<tr data-trigger="exp-t">(.*?)</tr>', html, re.DOTALL)
    assert len(shown) == len(log)
    for row, tr in zip(log, shown, strict=True):
        got = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)]
        assert got[2:7] == [row["model_key"], row["segment"], f"{row['old']:.4g}",
                            "kept" if row["new"] is None else f"{row['new']:.4g}",
                            str(row["samples"])]
    assert "Why: too few samples (12 sessions)." in html
    assert "guardrail.held_out 61" in html and "(published as revision 3)" in html
    assert "first run" in page(console(api), "/learning?period=30d")


def test_the_threshold_plot_has_a_point_per_move_one_line_per_key_and_segment(
        api: Any) -> None:
    recalibrations(telemetry(api))
    html = page(console(api), "/learning?period=7d")
    points = re.findall(r'<circle class="point" data-series="([^"]+)" data-value="([^"]+)"',
                        html)
    assert points == [("exp-t#0 *", "0.65"), ("exp-t#0 *", "0.7"), ("exp-t#0 mobile", "0.55")]
    assert html.count("<polyline") == 2


def fire_plan(target: Any, names: tuple[str, str, str]) -> None:
    """Sixty sessions: the first two triggers fire together in two thirds of them, the
    third alone in the rest (twenty sessions: too few to judge); a third of them click."""
    twin, other, rare = names
    ingest(target, [{"kind": "decision", "id": f"p{i}", "session": f"p{i}", "ts_ms": RECENT,
                     "fired": [twin, other] if i % 3 else [rare]} for i in range(60)]
           + [{"kind": "outcome", "id": f"o{i}", "session": f"p{i}", "ts_ms": RECENT + 1000,
               "type": "click"} for i in range(0, 60, 3)])


def test_the_audit_page_draws_the_matrix_and_says_what_to_do(api: Any) -> None:
    fire_plan(api, ("a-twin", "b-twin", "rare"))
    html = page(console(api), "/audit")
    found = audit(telemetry(api))
    values = re.findall(r'<rect class="point" data-value="([^"]+)"', html)
    assert values == [f"{found['correlation'][a][b]:.2f}" for a in found["triggers"]
                      for b in found["triggers"]]
    flags = dict(re.findall(r'<li data-trigger="([^"]+)" data-flag="([^"]+)">', html))
    assert flags == {f["trigger"]: f["flag"] for f in found["flags"]}
    assert flags == {"b-twin": "redundant", "rare": "low_confidence"}
    assert "Merge them into one trigger, or retire" in html
    assert "It fired in only 20 session(s)" in html and "Gather more data" in html


def test_the_audit_page_takes_the_period(api: Any) -> None:
    fire_plan(api, ("a", "b", "c"))
    ingest(api, [{"kind": "decision", "id": "old", "session": "old",
                  "ts_ms": RECENT - 20 * DAY_MS, "fired": ["old-trigger"]}])
    assert "old-trigger" not in page(console(api), "/audit?period=7d")
    assert "old-trigger" in page(console(api), "/audit?period=30d")


@pytest.mark.parametrize("path", ["/experiments", "/learning", "/audit"])
def test_a_viewer_reads_the_pages_and_a_stranger_is_sent_to_sign_in(api: Any,
                                                                    path: str) -> None:
    assert console(api, VIEWER_TOKEN).get(path).status_code == 200
    resp = api.application.test_client().get(path)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/sign-in")


@pytest.mark.parametrize("path", ["/experiments", "/learning", "/audit"])
def test_the_pages_change_nothing(api: Any, path: str) -> None:
    assert console(api, VIEWER_TOKEN).post(path).status_code in (403, 405)
    assert console(api).post(path).status_code in (403, 405)


def test_names_from_telemetry_are_escaped(api: Any) -> None:
    evil = "<script>alert(1)</script>"
    fire_plan(api, (evil, "b", "c"))
    recalibrations(telemetry(api), trigger=evil)
    client = console(api)
    for path in ("/learning", "/audit"):
        html = page(client, path)
        assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
