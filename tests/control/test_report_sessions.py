"""The reports read per-session facts (start, arm, last decision outside the holdout) from the
store's `sessions` table, kept at ingest and filled by migration 8: the numbers must not
depend on the order records arrive in, nor on whether the store was migrated."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

from control_plane.telemetry.audit import audit
from control_plane.telemetry.reports import experiment_report, trigger_report
from control_plane.telemetry.telemetry_store import MIGRATIONS, TelemetryStore

T0 = 1_700_000_000_000
HOUR = 3_600_000
SPLIT = {"adaptive": 45.0, "static": 45.0, "holdout": 10.0}


def records(seed: int = 5, sessions: int = 300) -> list[dict[str, Any]]:
    """Sessions over a few days: arms that change mid-session, decisions outside the
    experiment, holdouts, repeated firings and outcomes naming a trigger or none."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(sessions):
        session, start = f"s{i}", T0 + rng.randrange(72 * HOUR)
        arms = rng.choice([[None], ["adaptive"], ["static"], ["holdout"], [None, "holdout"],
                           ["adaptive", "static"], ["holdout", "adaptive"]])
        for k in range(rng.randrange(1, 5)):
            ts = start + rng.choice([1000 * k, 20 * HOUR * k])  # one firing per instant
            fired = rng.sample(["a", "b", "c"], rng.choice([0, 1, 1, 2]))
            arm = rng.choice(arms)
            out.append({"kind": "decision", "id": f"{session}-{k}", "session": session,
                        "ts_ms": ts, "revision": rng.choice([1, 2]), "arm": arm,
                        "latency_us": rng.choice([None, 80, 700]),
                        "fired": [] if arm == "holdout" else fired,
                        "suppressed": [{"trigger": t, "reason": "holdout"} for t in fired]
                        if arm == "holdout" else [],
                        "context": {"device": rng.choice(["desktop", "mobile"])}})
            for j in range(rng.randrange(3)):
                out.append({"kind": "outcome", "id": f"{session}-{k}-{j}", "session": session,
                            "ts_ms": ts + rng.choice([0, 5000, 45_000]),
                            "decision_id": f"{session}-{k}",
                            "trigger": rng.choice(["a", "b", "c", None]),
                            "type": rng.choice(["impression", "click", "conversion"])})
    return out


def reports(store: TelemetryStore) -> list[Any]:
    """Every report that reads sessions, over the whole store and from the middle on."""
    return [(trigger_report(store, 30.0, since), experiment_report(store, 30.0, since,
                                                                    split=SPLIT),
             audit(store, since_ms=since)) for since in (0, T0 + 36 * HOUR)]


def test_the_reports_do_not_depend_on_the_order_records_arrive_in(tmp_path: Path) -> None:
    recs = records()
    in_order = TelemetryStore(tmp_path / "in-order.db")
    in_order.ingest(sorted(recs, key=lambda r: r["ts_ms"]))
    shuffled = TelemetryStore(tmp_path / "shuffled.db")
    random.Random(1).shuffle(recs)
    for i in range(0, len(recs), 37):
        shuffled.ingest(recs[i:i + 37])
    shuffled.ingest(recs[:100])  # a batch sent again counts once
    expected = reports(in_order)
    assert reports(shuffled) == expected
    assert expected[0][1]["switched_sessions"] > 0 and expected[0][2]["sessions"] > 0


def at_version_7(path: Path, current: TelemetryStore) -> None:
    """A store at `path` at schema version 7 (before the `sessions` table) holding
    `current`'s records."""
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    old.execute("INSERT INTO schema_version VALUES (7)")
    for step in MIGRATIONS[:7]:
        step(old)
    old.execute("ATTACH DATABASE ? AS current", (str(current.path),))
    old.execute("INSERT INTO decisions SELECT * FROM current.decisions")
    old.execute("INSERT INTO outcomes SELECT * FROM current.outcomes")
    old.execute("INSERT INTO fires SELECT decision_id, trigger, session, ts_ms, revision, "
                "device, variant FROM current.fires")
    old.execute("DETACH DATABASE current")
    old.close()


def test_a_store_from_before_the_sessions_table_reports_the_same_after_migrating(
        tmp_path: Path) -> None:
    current = TelemetryStore(tmp_path / "current.db")
    current.ingest(records())
    at_version_7(tmp_path / "old.db", current)
    migrated = TelemetryStore(tmp_path / "old.db")
    assert migrated.query("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    assert reports(migrated) == reports(current)


class Interleaved(TelemetryStore):
    """A store into which another connection (a concurrent POST /v1/telemetry) commits
    `later` right after the report's `after`-th query."""

    later: list[dict[str, Any]] | None = None
    after = 1

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = super().query(sql, params)
        self.after -= 1
        if self.later and self.after == 0:
            TelemetryStore(self.path).ingest(self.later)
            self.later = None
        return out


def _decision(i: int, session: str, fired: tuple[str, ...] = (), arm: str | None = None
              ) -> dict[str, Any]:
    return {"kind": "decision", "id": f"d{i}", "session": session, "ts_ms": T0,
            "fired": list(fired), "arm": arm}


def test_a_report_sees_an_ingest_committed_between_its_queries_whole_or_not_at_all(tmp_path):
    store = Interleaved(tmp_path / "audit.sqlite3")
    store.ingest([_decision(1, "s0"), _decision(2, "s1", ("a",))])
    store.later = [_decision(3, "s2", ("a",)), _decision(4, "s3", ("a",)),
                   _decision(5, "s4", ("b",))]
    found = audit(store)  # counted 2 sessions, then saw a firing in 3: sqrt of a negative
    assert found["sessions"] == 2 and found["triggers"] == ["a"]
    assert audit(store)["sessions"] == 5  # the next report sees all of it

    store = Interleaved(tmp_path / "experiment.sqlite3")
    store.after = 2
    store.ingest([_decision(10, "x0", arm="static")])
    store.later = [_decision(11, "x1", arm="static"), _decision(12, "x2", arm="static")] + [
        {"kind": "outcome", "id": f"o{n}", "session": s, "ts_ms": T0 + 1, "type": "conversion"}
        for n, s in enumerate(("x1", "x2"))]
    static = next(a for a in experiment_report(store)["arms"] if a["arm"] == "static")
    assert (static["sessions"], static["converted_sessions"]) == (1, 0)


def test_two_processes_opening_an_old_store_migrate_it_once(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "t.sqlite3"
    current = TelemetryStore(tmp_path / "current.sqlite3")
    current.ingest([_decision(i, f"s{i % 5000}") | {"ts_ms": T0 + i} for i in range(100_000)])
    at_version_7(path, current)
    opener = ("import sys; from control_plane.telemetry.telemetry_store import TelemetryStore; "
              "TelemetryStore(sys.argv[1])")
    procs = [subprocess.Popen([sys.executable, "-c", opener, str(path)], cwd=Path.cwd(),
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert TelemetryStore(path).query("SELECT count(*) FROM sessions")[0][0] == 5000


def test_a_record_from_far_in_the_future_is_refused_alone(tmp_path):
    import time

    store = TelemetryStore(tmp_path / "t.sqlite3")
    now = int(time.time() * 1000)
    done = store.ingest([_decision(1, "ok") | {"ts_ms": now},
                         _decision(2, "micro") | {"ts_ms": now * 1000}])  # microseconds
    assert done.stored == 1 and [r.index for r in done.rejected] == [0 + 1]
    assert "ahead of this server's clock" in done.rejected[0].reason


def test_a_busy_session_is_counted_as_a_brute_force_recount_counts_it(tmp_path: Path) -> None:
    # many firings and outcomes in one session (what a made-up client can send): the report
    # looks outcomes up per trigger and time instead of scanning them all per firing
    rng = random.Random(9)
    fires = [(T0 + rng.randrange(600_000), rng.choice("abc")) for _ in range(200)]
    outs = [(T0 + rng.randrange(700_000), rng.choice(["click", "conversion", "impression"]),
             rng.choice(["a", "b", "c", None])) for _ in range(300)]
    store = TelemetryStore(tmp_path / "t.db")
    store.ingest([{"kind": "decision", "id": f"d{i}", "session": "s", "ts_ms": ts,
                   "fired": [trig]} for i, (ts, trig) in enumerate(fires)] +
                 [{"kind": "outcome", "id": f"o{i}", "session": "s", "ts_ms": ts, "type": kind,
                   "trigger": trig} for i, (ts, kind, trig) in enumerate(outs)])
    report = {r["trigger"]: r for r in trigger_report(store, 30.0)["rows"]}
    for trig in "abc":
        mine = [ts for ts, t in fires if t == trig]
        false = sum(not any(ts <= o_ts <= ts + 30_000 and o_trig in (trig, None)
                            and kind != "impression" for o_ts, kind, o_trig in outs)
                    for ts in mine)
        first = min(mine)
        conversions = int(any(kind == "conversion" and (o_trig == trig or
                                                    (o_trig is None and o_ts >= first))
                              for o_ts, kind, o_trig in outs))
        assert (report[trig]["false_triggers"], report[trig]["conversions"]) == \
            (false, conversions)


def test_made_up_trigger_names_cannot_blow_up_the_audit(tmp_path: Path) -> None:
    from control_plane.telemetry.audit import MAX_FLAGS, MAX_MATRIX

    store = TelemetryStore(tmp_path / "t.db")
    names = [f"made-up-{i}" for i in range(MAX_MATRIX * 3)]
    store.ingest([{"kind": "decision", "id": f"d{k}", "session": f"s{k}", "ts_ms": T0,
                   "fired": names[:MAX_MATRIX * 3 if k == 0 else 2]} for k in range(5)])
    found = audit(store)
    assert len(found["triggers"]) == MAX_MATRIX and found["left_out"] == MAX_MATRIX * 2
    assert set(found["triggers"]) >= {"made-up-0", "made-up-1"}  # the most sessions first
    low = {f["trigger"] for f in found["flags"] if f["flag"] == "low_confidence"}
    # every name is still judged; the most frequent are listed, the rest counted
    assert len(low) == MAX_FLAGS and found["flags_left_out"] >= MAX_MATRIX * 3 - MAX_FLAGS


def test_a_small_body_naming_millions_of_firings_is_413_for_the_edge_to_split(
        tmp_path: Path) -> None:
    import gzip
    import json

    from control_plane.blueprints.telemetry import MAX_BATCH_FIRED
    from tests.servers import EDGE_TOKEN, control_client

    client = control_client(tmp_path, token=EDGE_TOKEN)
    names = [f"t{i}" for i in range(1000)]
    records = [{"kind": "decision", "id": f"d{k}", "session": f"s{k}", "ts_ms": T0,
                "fired": names} for k in range(MAX_BATCH_FIRED // 1000 + 1)]
    body = gzip.compress("\n".join(json.dumps(r) for r in records).encode())
    assert len(body) < 1024 * 1024  # within the request limit: only the firings are many
    resp = client.post("/v1/telemetry", data=body, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 413 and resp.json["error"]["code"] == "batch_too_large"
    half = gzip.compress("\n".join(json.dumps(r) for r in records[:len(records) // 2]).encode())
    resp = client.post("/v1/telemetry", data=half, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 200 and resp.json["accepted"] == len(records) // 2
