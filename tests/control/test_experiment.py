"""The adaptive-threshold experiment (settings.experiment): validation and compilation, arms
in the decision core, the arm in the decision log, the experiment report with its lifts,
and the audit and recalibration scheduler around it."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.rulepack import compile_snapshot, load_pack
from control_plane.rulepack.problems import RulePackError
from control_plane.rulepack.source import parse_yaml, plain
from control_plane.telemetry.audit import audit
from control_plane.telemetry.reports import experiment_report, format_experiment
from control_plane.telemetry.telemetry_store import TelemetryStore
from edge_module.core import decide, load_snapshot
from edge_module.telemetry.decision_log import decision_record
from tests.factories import T0, ev, request
from tests.servers import EDGE_TOKEN, control_client, control_config

ROOT = Path(__file__).resolve().parents[2]

PACK = """\
pack: {name}
settings:
  experiment: {experiment}
models:
  thresholds:
    "{name}-t#0": {{"*": 60%}}
triggers:
  - id: {name}-t
    page: /pricing
    when:
      - scroll_depth: {{gte: 80%, mode: adaptive}}
    action: {{content: discount-nudge-10}}
"""
SPLIT = "{salt: q4, adaptive: 45%, static: 45%, holdout: 10%}"


def experiment_pack(experiment: str = SPLIT, name: str = "exp") -> str:
    return PACK.format(name=name, experiment=experiment)


def problems(*texts: str) -> list[str]:
    """Every problem (as text) of the packs, alone and together."""
    try:
        packs = [load_pack(t, f"p{i}.yaml") for i, t in enumerate(texts)]
        compile_snapshot(packs, "1", 0)
    except RulePackError as exc:
        return [str(p) for p in exc.problems]
    return []


# Validation and compilation


def test_the_experiment_compiles_to_the_snapshots_top_level_with_numbers():
    snap = compile_snapshot([load_pack(experiment_pack(), "p.yaml")], "1", 0)
    assert snap["experiment"] == {"salt": "q4", "arms": {"adaptive": 45.0, "static": 45.0,
                                                         "holdout": 10.0}}
    assert all(type(v) is float for v in snap["experiment"]["arms"].values())
    assert list(snap).index("experiment") == list(snap).index("fatigue") + 1


def test_an_arm_left_out_is_zero_and_the_salt_has_a_default():
    snap = compile_snapshot([load_pack(experiment_pack("{adaptive: 50%, static: 50%}"),
                                       "p.yaml")], "1", 0)
    assert snap["experiment"] == {"salt": "experiment",
                                  "arms": {"adaptive": 50.0, "static": 50.0, "holdout": 0.0}}
    assert load_snapshot(json.dumps(snap)).experiment == ("experiment", 50.0, 50.0, 0.0)


def test_packs_without_an_experiment_compile_without_the_key():
    text = experiment_pack().replace("settings:\n  experiment: " + SPLIT + "\n", "")
    assert "experiment" not in compile_snapshot([load_pack(text, "p.yaml")], "1", 0)


@pytest.mark.parametrize("experiment, expected", [
    ("{salt: q4, adaptive: 45%, statc: 45%, holdout: 10%}",
     ["p0.yaml:3:41: unknown key 'statc' in experiment (expected one of salt, adaptive, "
      "static, holdout; did you mean 'static'?)"]),
    ("{adaptive: 45%, static: 45%}",
     ["p0.yaml:3:15: the experiment's arms add up to 90% (adaptive 45% + static 45% + "
      "holdout 0%) (expected adaptive, static and holdout shares that add up to 100% "
      "(a missing arm is 0%); did you mean 'holdout: 10%'?)"]),
    ("{adaptive: 60%, static: 45%, holdout: 10%}",
     ["p0.yaml:3:15: the experiment's arms add up to 115% (adaptive 60% + static 45% + "
      "holdout 10%) (expected adaptive, static and holdout shares that add up to 100% "
      "(a missing arm is 0%))"]),
    ("{adaptive: 45, static: 45%, holdout: 10%}",
     ["p0.yaml:3:26: experiment adaptive: 45 has no % sign: write the share of sessions as "
      "a percentage (expected a percentage from 0% to 100% such as 50%; did you mean "
      "'45%'?)"]),
    ("{adaptive: 110%, static: 0%, holdout: -10%}",
     ["p0.yaml:3:26: experiment adaptive: '110%' is outside 0% to 100% (expected a "
      "percentage from 0% to 100% such as 50%)",
      "p0.yaml:3:53: experiment holdout: '-10%' is outside 0% to 100% (expected a "
      "percentage from 0% to 100% such as 50%)"]),
    ("[45%, 45%, 10%]",
     ["p0.yaml:3:15: experiment is a list (expected a mapping such as {salt: q4, "
      "adaptive: 45%, static: 45%, holdout: 10%} whose arms add up to 100%)"]),
])
def test_experiment_mistakes_are_reported_precisely(experiment, expected):
    assert problems(experiment_pack(experiment)) == expected


def test_a_misspelt_experiment_setting_is_suggested():
    text = experiment_pack().replace("  experiment:", "  experimant:")
    found = problems(text)
    assert len(found) == 1 and "unknown key 'experimant' in settings" in found[0]
    assert "did you mean 'experiment'?" in found[0]


def test_only_one_pack_may_define_the_experiment():
    found = problems(experiment_pack(name="one"),
                     experiment_pack("{adaptive: 50%, static: 50%}", name="two"))
    assert found == ["p1.yaml:3:15: settings.experiment is also defined in p0.yaml:3:15 "
                     "(pack 'one'): one experiment splits all sessions (expected "
                     "settings.experiment in one pack only)"]


def test_the_editor_schema_knows_the_experiment():
    schema = json.loads((ROOT / "rules" / "schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)

    def errors(text: str) -> list[str]:
        root, _ = parse_yaml(text, "p.yaml")
        return [e.message for e in validator.iter_errors(plain(root))]

    assert errors(experiment_pack()) == []
    assert errors(experiment_pack("{adaptive: 45%, statc: 55%}"))
    assert errors(experiment_pack("{adaptive: 45, static: 55%}"))


# The arms in the decision core


def decide_once(snap, session: str, depth: float) -> dict:
    req = request([ev("page_view", 0, url="/pricing"), ev("scroll", 100, depth=depth, y=900)],
                  1000, session, "/pricing")
    return decide(snap, req, None)


def test_each_arm_behaves_as_described_and_sessions_keep_their_arm():
    doc = compile_snapshot([load_pack(experiment_pack(), "p.yaml")], "1", 0)
    for trig in doc["triggers"]:  # the arms alone: no exploration slice (issue #12)
        trig["explore"] = 0
    snap = load_snapshot(json.dumps(doc))
    arms: Counter[str] = Counter()
    for n in range(3000):
        session = f"visitor-{n}"
        out = decide_once(snap, session, 0.7)  # over the learned 60 %, under the static 80 %
        arm = out["arm"]
        arms[arm] += 1
        assert decide_once(snap, session, 0.9)["arm"] == arm  # stable per session id
        fired = [a["trigger"] for a in out["actions"]]
        if arm == "adaptive":
            assert fired == ["exp-t"] and "suppressed" not in out
        elif arm == "static":
            assert fired == [] and "suppressed" not in out
            deep = decide_once(snap, session, 0.85)  # the static value still applies
            assert [a["trigger"] for a in deep["actions"]] == ["exp-t"]
        else:
            assert fired == []
            assert out["suppressed"] == [{"trigger": "exp-t", "reason": "experiment_holdout"}]
    # 45 / 45 / 10 within a few standard errors of 3000 draws
    assert abs(arms["adaptive"] / 3000 - 0.45) < 0.04
    assert abs(arms["static"] / 3000 - 0.45) < 0.04
    assert abs(arms["holdout"] / 3000 - 0.10) < 0.025


def test_a_new_salt_draws_new_arms_and_no_experiment_names_no_arm():
    def arms_of(experiment: str | None) -> list[str | None]:
        text = experiment_pack(experiment) if experiment else \
            experiment_pack().replace("settings:\n  experiment: " + SPLIT + "\n", "")
        snap = load_snapshot(json.dumps(compile_snapshot([load_pack(text, "p.yaml")], "1", 0)))
        return [decide_once(snap, f"v{n}", 0.7).get("arm") for n in range(200)]

    q4 = arms_of(SPLIT)
    assert q4 == arms_of(SPLIT)
    assert q4 != arms_of(SPLIT.replace("q4", "q1"))
    assert set(arms_of(None)) == {None}


# The decision log


def test_the_decision_log_records_the_arm_and_the_store_keeps_it(tmp_path):
    req = request([ev("page_view", 0, url="/pricing")], 1000, "visitor-1", "/pricing")
    response = {"decision_id": "d1", "revision": "1", "latency_us": 50, "actions": [],
                "suppressed": [{"trigger": "t", "reason": "experiment_holdout"}],
                "arm": "holdout"}
    rec = decision_record(req, response, T0, "salt", "edge-1")
    assert rec["arm"] == "holdout"
    assert rec["suppressed"] == [{"trigger": "t", "reason": "experiment_holdout"}]
    plain_rec = decision_record(req, {**response, "id": "d2", "decision_id": "d2",
                                      "arm": None}, T0, "salt", "edge-1")
    store = TelemetryStore(tmp_path / "t.sqlite3")
    store.ingest([rec, plain_rec, {**plain_rec, "id": "d3", "arm": "bogus"}])
    assert store.query("SELECT id, arm FROM decisions ORDER BY id") == [
        ("d1", "holdout"), ("d2", None), ("d3", None)]


# The experiment report

# arm: (sessions, sessions with a conversion)
KNOWN = {"adaptive": (200, 60), "static": (200, 40), "holdout": (50, 5)}


def synthetic(store: TelemetryStore, counts: dict[str, tuple[int, int]]) -> None:
    """Sessions per arm, each with two decisions; converted ones report a conversion
    (naming no trigger) 5 s after the first; in adaptive and static every session fires
    one trigger, and a conversion follows within the window exactly when it converted."""
    records = []
    for arm, (sessions, converted) in counts.items():
        for n in range(sessions):
            session = f"{arm}-{n}"
            for k in range(2):
                records.append({"kind": "decision", "id": f"{session}-d{k}", "session": session,
                                "ts_ms": T0 + k * 1000, "revision": "1", "arm": arm,
                                "fired": ["t"] if arm != "holdout" and k == 0 else [],
                                "suppressed": [{"trigger": "t", "reason": "experiment_holdout"}]
                                if arm == "holdout" and k == 0 else [],
                                "context": {"device": "desktop"}})
            if n < converted:
                records.append({"kind": "outcome", "id": f"{session}-c", "session": session,
                                "ts_ms": T0 + 5000, "type": "conversion"})
    store.ingest(records)


def two_proportion_interval(n1: int, c1: int, n2: int, c2: int) -> tuple[float, float, float]:
    p1, p2 = c1 / n1, c2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p1 - p2, p1 - p2 - 1.96 * se, p1 - p2 + 1.96 * se


def test_the_report_gives_each_arm_and_the_lifts_with_their_intervals(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite3")
    synthetic(store, KNOWN)
    doc = experiment_report(store)
    arms = {a["arm"]: a for a in doc["arms"]}
    assert doc["sessions"] == 450 and doc["switched_sessions"] == 0
    assert (arms["adaptive"]["sessions"], arms["adaptive"]["converted_sessions"],
            arms["adaptive"]["conversion_rate"]) == (200, 60, 0.3)
    assert (arms["static"]["conversion_rate"], arms["holdout"]["conversion_rate"]) == (0.2, 0.1)
    # one fire per session; false when no conversion follows within 30 s
    assert (arms["adaptive"]["fires"], arms["adaptive"]["false_triggers"]) == (200, 140)
    assert arms["adaptive"]["false_trigger_rate"] == 0.7
    assert arms["static"]["false_trigger_rate"] == 0.8
    assert (arms["holdout"]["fires"], arms["holdout"]["false_trigger_rate"]) == (0, None)

    lifts = {(c["arm"], c["against"]): c for c in doc["comparisons"]}
    # adaptive vs static: 0.30 - 0.20, se = sqrt(.3*.7/200 + .2*.8/200) = 0.043012
    vs_static = lifts[("adaptive", "static")]
    assert vs_static["lift"] == 0.1
    assert vs_static["ci95"] == pytest.approx([0.0157, 0.1843], abs=1e-4)
    assert vs_static["significant"] is True and vs_static["note"] is None
    # each arm vs holdout, checked against the textbook formula
    for arm in ("adaptive", "static"):
        d, low, high = two_proportion_interval(*KNOWN[arm], *KNOWN["holdout"])
        got = lifts[(arm, "holdout")]
        assert got["lift"] == pytest.approx(d, abs=1e-4)
        assert got["ci95"] == pytest.approx([low, high], abs=1e-4)
    # static vs holdout: 0.20 - 0.10, se = sqrt(.2*.8/200 + .1*.9/50) = 0.050990
    assert lifts[("static", "holdout")]["ci95"] == pytest.approx([0.0001, 0.1999], abs=1e-4)
    table = format_experiment(doc)
    assert "adaptive vs static:" in table and "+10.00 pts" in table


def test_too_few_sessions_give_no_interval(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite3")
    synthetic(store, {"adaptive": (200, 60), "static": (200, 40), "holdout": (29, 3)})
    lifts = {(c["arm"], c["against"]): c for c in experiment_report(store)["comparisons"]}
    assert lifts[("adaptive", "static")]["ci95"] is not None
    for arm in ("adaptive", "static"):
        entry = lifts[(arm, "holdout")]
        assert entry["lift"] is None and entry["ci95"] is None
        assert entry["note"].startswith("not enough data: 30 sessions needed in each arm")
    empty = experiment_report(TelemetryStore(tmp_path / "empty.sqlite3"))
    assert empty["sessions"] == 0 and all(c["lift"] is None for c in empty["comparisons"])
    assert "no experiment data" in format_experiment(empty)


def test_a_session_that_changes_arm_counts_once_in_its_first(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite3")
    store.ingest([{"kind": "decision", "id": "a", "session": "s", "ts_ms": T0, "arm": "static"},
                  {"kind": "decision", "id": "b", "session": "s", "ts_ms": T0 + 1,
                   "arm": "adaptive"}])
    doc = experiment_report(store)
    assert doc["switched_sessions"] == 1
    assert [a["sessions"] for a in doc["arms"]] == [0, 1, 0]


def test_the_experiment_report_over_http_and_the_cli(tmp_path):
    edge = control_client(tmp_path, token=EDGE_TOKEN)
    synthetic(edge.application.extensions["telemetry_store"], KNOWN)
    publisher = control_client(tmp_path, app=edge.application)
    doc = publisher.get("/v1/reports/experiment").get_json()
    assert [c["lift"] for c in doc["comparisons"]] == [0.1, 0.2, 0.1]
    assert publisher.get("/v1/reports/experiment?min_sessions=60").get_json()[
        "comparisons"][1]["note"].startswith("not enough data")
    assert publisher.get("/v1/reports/experiment?window_s=x").status_code == 400
    assert edge.get("/v1/reports/experiment").status_code == 403  # edge token

    data = Path(edge.application.config["DATA_DIR"])
    runner = CliRunner()
    shown = runner.invoke(cli, ["report", "--data-dir", str(data), "--experiment"])
    assert shown.exit_code == 0, shown.output
    assert "holdout" in shown.output and "adaptive vs static:" in shown.output
    as_json = runner.invoke(cli, ["report", "--data-dir", str(data), "--experiment",
                                  "--format", "json"])
    assert json.loads(as_json.output)["comparisons"][0]["lift"] == 0.1


# The audit


def fires(store: TelemetryStore, plan: dict[str, list[str]], arms: dict[str, str] | None = None,
          engaged: set[str] = frozenset()) -> None:
    """One decision per session firing its planned triggers; engaged sessions click."""
    arms = arms or {}
    records = [{"kind": "decision", "id": f"d-{s}", "session": s, "ts_ms": T0,
                "fired": fired, "arm": arms.get(s)} for s, fired in plan.items()]
    records += [{"kind": "outcome", "id": f"o-{s}", "session": s, "ts_ms": T0 + 1000,
                 "type": "click"} for s in engaged]
    store.ingest(records)


def test_the_audit_flags_triggers_that_always_fire_together_and_thin_evidence(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite3")
    plan: dict[str, list[str]] = {}
    for n in range(100):
        fired = ["solo"] if n % 2 else []
        if n < 60:
            fired += ["twin-a", "twin-b"]  # always together
        if n < 3:
            fired.append("rare")
        plan[f"s{n}"] = fired
    engaged = {f"s{n}" for n in range(100) if n % 10}  # 90 %: a narrow interval
    fires(store, plan, engaged=engaged)
    doc = audit(store)
    flags = {(f["trigger"], f["flag"]): f for f in doc["flags"]}
    assert flags[("twin-b", "redundant")]["with"] == "twin-a"
    assert flags[("twin-b", "redundant")]["r"] == 1.0
    assert flags[("rare", "low_confidence")]["sessions"] == 3
    assert set(flags) == {("twin-b", "redundant"), ("rare", "low_confidence")}
    assert abs(doc["correlation"]["solo"]["twin-a"]) < 0.9


def test_the_audit_flags_a_pair_that_fires_in_every_session(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite3")
    fires(store, {f"s{n}": ["always-a", "always-b"] for n in range(50)},
          engaged={f"s{n}" for n in range(50)})
    doc = audit(store)
    assert doc["correlation"]["always-a"]["always-b"] is None  # no variance: r undefined
    assert {"trigger": "always-b", "flag": "redundant", "with": "always-a",
            "r": 1.0} in doc["flags"]


def test_the_audit_leaves_holdout_sessions_out(tmp_path):
    store = TelemetryStore(tmp_path / "t.sqlite3")
    plan = {f"s{n}": (["a"] if n % 2 else ["b"]) for n in range(40)}
    plan.update({f"h{n}": [] for n in range(400)})  # nothing ever fires in holdout
    fires(store, plan, arms={f"h{n}": "holdout" for n in range(400)})
    doc = audit(store)
    assert doc["sessions"] == 40
    assert doc["correlation"]["a"]["b"] == -1.0


# The recalibration scheduler


def test_the_scheduler_runs_recalibration_on_its_interval_and_stops_cleanly(tmp_path,
                                                                            monkeypatch):
    import control_plane.learning.scheduler as scheduler_module
    from control_plane import create_app
    from control_plane.learning.scheduler import RecalibrationScheduler

    app = create_app(control_config(tmp_path, RECALIBRATE_INTERVAL_S=0.02))
    packs_dir = Path(app.config["DATA_DIR"]) / "packs"
    packs_dir.mkdir(parents=True, exist_ok=True)
    (packs_dir / "exp.yaml").write_text(experiment_pack())
    calls: list[float] = []
    enough = threading.Event()

    def fake_recalibrate(edge_store, telemetry, key, *args, **kwargs):
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise RuntimeError("a failed run must not stop the schedule")
        if len(calls) >= 4:
            enough.set()
        return SimpleNamespace(published=None, moved=[], note=None)

    monkeypatch.setattr(scheduler_module, "recalibrate", fake_recalibrate)
    scheduler = RecalibrationScheduler(app)
    started = time.monotonic()
    scheduler.start()
    try:
        assert enough.wait(5), f"only {len(calls)} run(s)"
    finally:
        scheduler.stop()
    assert scheduler._thread is not None and not scheduler._thread.is_alive()
    assert calls[0] - started >= 0.015  # the first run waits one interval
    after_stop = len(calls)
    time.sleep(0.1)
    assert len(calls) == after_stop  # stopped: no more runs


def test_a_zero_interval_starts_no_scheduler(tmp_path):
    from control_plane import create_app
    from control_plane.learning.scheduler import RecalibrationScheduler

    scheduler = RecalibrationScheduler(create_app(control_config(tmp_path,
                                                                 RECALIBRATE_INTERVAL_S=0)))
    scheduler.start()
    assert scheduler._thread is None
    scheduler.stop()  # stopping a scheduler that never started is fine


def test_the_pack_diff_shows_an_experiment_change():
    from control_plane.authoring.pack_diff import diff_snapshots

    def snap(experiment: str) -> dict:
        return compile_snapshot([load_pack(experiment_pack(experiment), "p.yaml")], "1", 0)

    changes = [c.text for c in diff_snapshots(snap(SPLIT), snap(SPLIT.replace("q4", "q1")))]
    assert changes == ["settings: experiment adaptive 45%, static 45%, holdout 10% (salt q4) "
                       "-> adaptive 45%, static 45%, holdout 10% (salt q1)"]
