"""What the trigger report counts (docs/telemetry.md, Reports): a conversion once per session
and trigger, whichever level reports it and however often; a channel firing the edge never
sent apart from the fires, in every report that counts fires."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from control_plane.telemetry.reports import (
    experiment_report,
    format_table,
    holdout_lift,
    hourly_activity,
    trigger_report,
)
from control_plane.telemetry.telemetry_store import MIGRATIONS, TelemetryStore

T0 = 1_700_000_000_000


def decision(did: str, session: str, at: int, fired: list[str], **extra: Any) -> dict[str, Any]:
    return {"kind": "decision", "id": did, "session": session, "ts_ms": T0 + at,
            "revision": "1", "fired": fired, "suppressed": [],
            "context": {"device": "desktop"}, **extra}


def outcome(oid: str, session: str, at: int, kind: str, decision_id: str,
            trigger: str | None = None) -> dict[str, Any]:
    return {"kind": "outcome", "id": oid, "session": session, "ts_ms": T0 + at, "type": kind,
            "decision_id": decision_id, "trigger": trigger}


def store_of(tmp_path: Path, records: list[dict[str, Any]]) -> TelemetryStore:
    store = TelemetryStore(tmp_path / "telemetry.db")
    ingested = store.ingest(records)
    assert not ingested.rejected, ingested.answer()
    return store


def row_of(store: TelemetryStore, trigger: str) -> dict[str, Any]:
    [row] = [r for r in trigger_report(store)["rows"] if r["trigger"] == trigger]
    return row


def conversions_per_hour(store: TelemetryStore, trigger: str | None) -> int:
    return sum(n for _, n in hourly_activity(store, 0, trigger)["conversions"])


def test_a_conversion_reported_for_the_decision_and_the_action_counts_once(tmp_path):
    store = store_of(tmp_path, [
        decision("d1", "s1", 0, ["blog-finisher"]),
        outcome("o1", "s1", 1000, "click", "d1", "blog-finisher"),
        outcome("o2", "s1", 5000, "conversion", "d1"),  # decision-level
        outcome("o3", "s1", 5000, "conversion", "d1", "blog-finisher"),  # trigger-level
    ])
    row = row_of(store, "blog-finisher")
    assert (row["sessions"], row["clicks"], row["conversions"]) == (1, 1, 1), \
        f"one session converted once, got {row}"
    assert conversions_per_hour(store, "blog-finisher") == 1
    assert conversions_per_hour(store, None) == 1


def test_a_conversion_cited_by_each_decision_of_a_session_counts_once(tmp_path):
    store = store_of(tmp_path, [
        decision("d1", "s1", 0, ["a"]), decision("d2", "s1", 2000, []),
        decision("d3", "s1", 4000, []),
        outcome("o1", "s1", 6000, "conversion", "d1"),
        outcome("o2", "s1", 6000, "conversion", "d2"),
        outcome("o3", "s1", 6000, "conversion", "d3"),
    ])
    assert row_of(store, "a")["conversions"] == 1
    assert conversions_per_hour(store, "a") == 1


def test_conversions_count_sessions_and_still_only_after_the_firing(tmp_path):
    store = store_of(tmp_path, [
        decision("d1", "s1", 0, ["a"]), outcome("o1", "s1", 500, "conversion", "d1"),
        decision("d2", "s2", 0, ["a"]), outcome("o2", "s2", 500, "conversion", "d2", "a"),
        decision("d3", "s3", 0, []), outcome("o3", "s3", 100, "conversion", "d3"),
        decision("d4", "s3", 1000, ["a"]),  # converted before it fired: not its conversion
    ])
    row = row_of(store, "a")
    assert (row["sessions"], row["conversions"]) == (3, 2), row
    assert conversions_per_hour(store, "a") == 2
    assert conversions_per_hour(store, None) == 3  # every converting session, once


def undelivered_records() -> list[dict[str, Any]]:
    """cart-mail fired in two sessions; the email of one was never sent (no signed id)."""
    return [
        decision("d1", "s1", 0, ["cart-mail"],
                 undelivered={"cart-mail": "unverified_recipient"}),
        decision("d2", "s2", 0, ["cart-mail"]),
        outcome("o2", "s2", 60_000, "conversion", "d2", "cart-mail"),
    ]


def test_a_firing_never_sent_is_counted_apart_from_the_fires(tmp_path):
    store = store_of(tmp_path, undelivered_records())
    row = row_of(store, "cart-mail")
    assert (row["fires"], row["undelivered"], row["sessions"]) == (1, 1, 1), row
    assert (row["false_triggers"], row["conversions"]) == (1, 1), row  # only the sent one's
    assert sum(n for _, n in hourly_activity(store, 0, "cart-mail")["fires"]) == 1
    assert sum(n for _, n in hourly_activity(store, 0)["fires"]) == 1
    table = format_table(trigger_report(store))
    assert "unsent" in table.splitlines()[0]
    assert table.splitlines()[2].split()[-1] == "1"


def test_a_firing_never_sent_treats_nobody_in_the_holdout_lift_nor_an_arm(tmp_path):
    records = undelivered_records() + [
        decision("h1", "s3", 0, [], suppressed=[{"trigger": "cart-mail", "reason": "holdout"}])]
    for rec in records:
        if rec["kind"] == "decision":
            rec["arm"] = "adaptive"
    store = store_of(tmp_path, records)
    [lift] = holdout_lift(store)
    assert (lift["treated"], lift["holdout"]) == (1, 1), lift
    assert trigger_report(store)["holdout"] == [lift]
    [adaptive] = [a for a in experiment_report(store)["arms"] if a["arm"] == "adaptive"]
    assert (adaptive["sessions"], adaptive["fires"]) == (3, 1), adaptive


def test_firings_stored_before_the_undelivered_column_are_fires(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    old.execute("INSERT INTO schema_version VALUES (8)")  # before migration 9's column
    for step in MIGRATIONS[:8]:
        step(old)
    old.execute("INSERT INTO fires (decision_id, trigger, session, ts_ms, revision, device) "
                "VALUES ('d1', 'a', 's1', ?, '1', 'desktop')", (T0,))
    old.close()
    row = row_of(TelemetryStore(path), "a")
    assert (row["fires"], row["undelivered"]) == (1, 0), row


def test_an_undelivered_field_that_is_not_trigger_to_reason_is_refused(tmp_path):
    store = TelemetryStore(tmp_path / "telemetry.db")
    ingested = store.ingest([decision("d1", "s1", 0, ["a"], undelivered={"a": 3}),
                             decision("d2", "s1", 0, ["a"], undelivered=["a"]),
                             decision("d3", "s1", 0, ["a"], undelivered={"a": "\ud800"})])
    assert [r.index for r in ingested.rejected] == [0, 1, 2]
    assert all("undelivered" in r.reason for r in ingested.rejected)


def test_an_empty_device_is_listed_as_unknown_not_folded_into_other(tmp_path):
    """A re-review: SQL ranked '' as a device of its own, the rows counted it as 'unknown',
    so the most fired device of all landed in (other)."""
    from control_plane.telemetry.reports import LIMITS, OTHER

    devices = [f"d{i}" for i in range(LIMITS["devices"] + 1)]
    records = [decision(f"e{i}", f"se{i}", i, ["t"], context={"device": ""})
               for i in range(50)]
    records += [decision(f"x{k}-{d}", f"sx{k}-{d}", 100 + k, ["t"], context={"device": d})
                for d in devices for k in range(2)]
    report = trigger_report(store_of(tmp_path, records))
    by_device = {r["device"]: r["fires"] for r in report["rows"]}
    assert by_device["unknown"] == 50
    assert by_device[OTHER] == 2 * 2 and report["folded"]["devices"] == 2
