"""What a decision record says the decision was: the context it was decided with (a request
without context is decided with the session's kept one, docs/edge-api.md) and the channel
firings the edge never sent. Reports segment and count by these, so they must be the
decision's, not the request's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from control_plane.telemetry.reports import trigger_report
from control_plane.telemetry.telemetry_store import TelemetryStore
from edge_module.channels.records import crm_signature
from edge_module.telemetry.log_spool import read_batch
from loadtest.webhook_receiver import SECRET
from tests.edge.test_channels import EMAIL_LATER, abandon
from tests.factories import pack, snapshot_text
from tests.servers import EDGE_TOKEN, put_snapshot, running_edge

SEGMENTS = "segments:\n  mobile: {device: mobile}\n"
# fires on mobile only: 50 % is the mobile threshold, 95 % everyone else's
DEEP_SCROLL = """\
id: deep-scroll
page: /pricing
when:
  - scroll_depth: {gte: 95%, by_segment: {mobile: 50%}}
action: {content: discount-nudge-10}
cap: {per_session: 1}
"""


def publish(store: Path, text: str) -> None:
    store.mkdir(parents=True, exist_ok=True)
    put_snapshot(store, snapshot_text(text), 1)


def logged(edge: Any) -> list[dict[str, Any]]:
    """The decision records the edge has logged so far (flushed to its spool)."""
    log = edge.host.app.decision_log
    log.flush()
    return [r for f in sorted(log.spool_dir.glob("*.jsonl.gz")) for r in read_batch(f)
            if r["kind"] == "decision"]


def test_a_request_without_context_is_logged_with_the_context_it_was_decided_with(
        tmp_path: Path, free_port: int) -> None:
    publish(tmp_path / "store", SEGMENTS + pack(DEEP_SCROLL))
    now = int(time.time() * 1000)
    with running_edge(tmp_path / "store", control_url=f"http://127.0.0.1:{free_port}",
                      token=EDGE_TOKEN) as edge:
        status, first, _ = edge.decide({
            "session_id": "r4", "now_ms": now,
            "context": {"url": "/pricing", "device": "mobile", "country": "DE"},
            "events": [{"type": "page_view", "ts_ms": now, "url": "/pricing"}]})
        assert status == 200 and first["actions"] == [], first
        status, second, _ = edge.decide({  # no context: the session's kept one (mobile)
            "session_id": "r4", "now_ms": now + 1000,
            "events": [{"type": "scroll", "ts_ms": now + 1000, "depth": 0.6, "y": 600}]})
        assert status == 200, second
        assert [a["trigger"] for a in second["actions"]] == ["deep-scroll"], \
            "the mobile threshold (50 %) should fire at 60 %: the core used the kept context"
        records = logged(edge)
    by_id = {r["id"]: r for r in records}
    record = by_id[second["decision_id"]]
    assert record["fired"] == ["deep-scroll"]
    assert (record["context"].get("device"), record["context"].get("country")) == \
        ("mobile", "DE"), f"logged context {record['context']}: the kept one was decided with"
    store = TelemetryStore(tmp_path / "telemetry.db")
    store.ingest(records)
    rows = [(r["trigger"], r["device"], r["fires"]) for r in trigger_report(store)["rows"]]
    assert rows == [("deep-scroll", "mobile", 1)], f"report rows {rows}"


def test_a_request_with_context_is_logged_with_its_own(tmp_path: Path, free_port: int) -> None:
    publish(tmp_path / "store", SEGMENTS + pack(DEEP_SCROLL))
    now = int(time.time() * 1000)
    with running_edge(tmp_path / "store", control_url=f"http://127.0.0.1:{free_port}",
                      token=EDGE_TOKEN) as edge:
        for at, device in ((now, "mobile"), (now + 1000, "desktop")):
            status, answer, _ = edge.decide({
                "session_id": "r5", "now_ms": at,
                "context": {"url": "/pricing", "device": device},
                "events": [{"type": "page_view", "ts_ms": at, "url": "/pricing"}]})
            assert status == 200, answer
        records = logged(edge)
    assert [r["context"].get("device") for r in records] == ["mobile", "desktop"]


def test_an_email_never_sent_is_logged_as_undelivered(tmp_path: Path, free_port: int) -> None:
    publish(tmp_path / "store", pack(EMAIL_LATER.replace("tier: queued, delay: 2s",
                                                         "tier: immediate")))
    key = bytes.fromhex("cd" * 32)
    with running_edge(tmp_path / "store", crm_id_key=key.hex(),
                      channel_webhook_url="http://127.0.0.1:9/x", channel_webhook_secret=SECRET,
                      control_url=f"http://127.0.0.1:{free_port}", token=EDGE_TOKEN) as edge:
        edge.decide({**abandon("anon"), "context": {"url": "/cart", "crm_id": "cus_1"}})
        signed = {"url": "/cart", "crm_id": "cus_2",
                  "crm_id_sig": crm_signature(key, "cus_2", int(time.time()) + 60)}
        edge.decide({**abandon("known"), "context": signed})
        assert edge.health()["channels"]["dropped_by_reason"] == {"unverified_recipient": 1}
        records = logged(edge)
    assert [(r["fired"], r.get("undelivered")) for r in records] == [
        (["cart-email"], {"cart-email": "unverified_recipient"}), (["cart-email"], None)]
    store = TelemetryStore(tmp_path / "telemetry.db")
    store.ingest(records)
    [row] = trigger_report(store)["rows"]
    assert (row["fires"], row["undelivered"], row["sessions"]) == (1, 1, 1), row
