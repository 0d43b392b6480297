"""Issue #11, item 6: the recalibration job published the registry's packs, not the served
snapshot's, so a draft that was submitted but never published went live at the next run,
and a rollback was undone seconds later. The job now re-tunes exactly the snapshot being
served, records what it started from, and leaves a rollback alone unless asked. Real
control plane on loopback, a real edge following the store, the CLI for the override."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.distribution import publishing
from control_plane.distribution.manifest_trust import VouchedStore
from control_plane.learning import evaluate
from control_plane.learning.labelled_sessions import load_sessions
from control_plane.learning.scheduler import RecalibrationScheduler
from loadtest import generators
from tests.control_server import ControlServer
from tests.servers import (
    PUBLISHER_TOKEN,
    control_config,
    http,
    running_edge,
    vouched,
    wait_for,
)

AUTH = {"Authorization": f"Bearer {PUBLISHER_TOKEN}"}
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "adaptive-pricing.yaml"
PUBLISHED = EXAMPLE.read_text()
DRAFT = PUBLISHED.replace("discount-nudge-10", "draft-nudge-50")  # submitted, not published
PACK = "adaptive-pricing"


def submit(control: ControlServer, source: str) -> None:
    status, body, _ = http("PUT", control.url + f"/v1/packs/{PACK}", source,
                           {**AUTH, "Content-Type": "application/yaml"})
    assert status in (200, 201), body


def mobile_visit(session: str, depth: float) -> dict[str, Any]:
    t = int(time.time() * 1000) - 6000
    return {"session_id": session, "now_ms": t + 5000,
            "context": {"url": "/pricing", "device": "mobile"},
            "events": [{"type": "page_view", "ts_ms": t, "url": "/pricing"},
                       {"type": "scroll", "ts_ms": t + 1000, "depth": depth, "y": 10}]}


def contents(edge: Any, session: str) -> list[str]:
    """What the edge shows a keen mobile visitor (scrolled to the bottom of /pricing)."""
    status, body, _ = edge.decide(mobile_visit(session, 0.99))
    assert status == 200, body
    return [a["content"] for a in body["actions"]]


def an_hour_of_traffic(control: ControlServer, store: VouchedStore, tmp_path: Path) -> None:
    """600 visitors of an independent population through the served snapshot two hours
    ago (inside the learning window, none held out for the guardrail), their decisions
    and outcomes in the control plane's telemetry store, as edges would have sent them."""
    path = tmp_path / "hour.jsonl"
    path.write_text("".join(json.dumps(s) + "\n"
                            for s in generators.sessions("latent", 600, seed=3)))
    _, _, snap = evaluate.served_snapshot(store)
    hour = int(time.time() * 1000) - 2 * evaluate.HOUR_MS
    done = evaluate.log_hour(snap, load_sessions(path), control.telemetry(),
                             "pricing-discount", hour, seed=3, prefix="v")
    assert done.rejected == 0 and done.conversions >= 20


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[dict[str, Any], ControlServer, VouchedStore]]:
    """A control plane on loopback that has published the adaptive pricing pack."""
    config = control_config(tmp_path)
    control = ControlServer(config)
    try:
        submit(control, PUBLISHED)
        assert http("POST", control.url + "/v1/snapshots", b"", AUTH)[0] == 201
        yield config, control, vouched(Path(config["STORE_DIR"]), Path(config["TRUSTED_KEYS"]))
    finally:
        control.stop()


def test_recalibration_retunes_the_served_packs_only_and_leaves_a_rollback_alone(
        published, tmp_path):
    config, control, store = published
    first = publishing.current_entry(store)
    assert first is not None
    an_hour_of_traffic(control, store, tmp_path)  # enough to learn from
    submit(control, DRAFT)  # a draft: in the registry, never published
    job = RecalibrationScheduler(control.app)

    with running_edge(Path(config["STORE_DIR"]), trusted_keys=Path(config["TRUSTED_KEYS"]),
                      control_url="", decide_deadline_ms=2000) as edge:
        result = job.run_once()
        assert result.published is not None and result.published.revision == 2
        assert result.source.revision == first.revision
        wait_for(lambda: edge.health()["revision"] == "2", what="the recalibrated revision")
        assert contents(edge, "keen-1") == ["discount-nudge-10"]  # never the draft
        second = publishing.current_entry(store)
        assert second.recalibrated_from == 1 and second.pack_sha256 == first.pack_sha256
        assert publishing.published_snapshot(store, 2)["packs"] == \
            publishing.published_snapshot(store, 1)["packs"]
        sources = {row[0] for row in control.telemetry().query(
            "SELECT source FROM recalibrations")}
        assert [json.loads(s)["revision"] for s in sources] == [1]
        assert json.loads(sources.pop())["packs"] == dict(first.pack_sha256)

        # A rollback stays: the scheduled job does not run over it.
        status, body, _ = http("POST", control.url + "/v1/snapshots/rollback",
                               {"revision": 1}, AUTH)
        assert status == 200 and body["rollback_from"] == 2
        wait_for(lambda: edge.health()["revision"] == "1", what="the rollback")
        result = job.run_once()
        assert result.published is None and "rollback" in (result.note or "")
        current = publishing.current_entry(store)
        assert (current.revision, current.rollback_from) == (1, 2)
        assert edge.health()["revision"] == "1"

        # Asked explicitly, it re-tunes the rolled-back snapshot, and says so.
        ran = CliRunner().invoke(cli, [
            "recalibrate", "--data-dir", config["DATA_DIR"], "--store", config["STORE_DIR"],
            "--over-rollback", "--format", "json"])
        assert ran.exit_code == 0, ran.output
        doc = json.loads(ran.output)
        assert (doc["published"], doc["source"]) == (3, 1)
        assert "rollback" in doc["note"] and "as asked" in doc["note"]
        third = publishing.current_entry(store)
        assert third.recalibrated_from == 1 and third.pack_sha256 == first.pack_sha256
        wait_for(lambda: edge.health()["revision"] == "3", what="the asked-for revision")
        assert contents(edge, "keen-2") == ["discount-nudge-10"]


def test_recalibration_does_not_republish_an_old_entry_someone_put_back(published, tmp_path):
    """Whoever can write to the store copies revision 1's entry back into manifest.json
    (edges refuse it): the job must not re-tune it and sign it anew as the newest. The
    control plane reads the newest entry it signed (`manifest_trust`) as the current one,
    so it re-tunes revision 2, and its publish replaces the replayed manifest."""
    _, control, store = published
    submit(control, PUBLISHED.replace("discount-nudge-10", "discount-nudge-15"))
    assert http("POST", control.url + "/v1/snapshots", b"", AUTH)[0] == 201
    an_hour_of_traffic(control, store, tmp_path)
    manifest, etag = store.get_manifest()
    doc = json.loads(manifest)
    old = doc["history"][0]
    store.put_manifest(json.dumps({**doc, **old}).encode(), etag)  # the replay
    result = RecalibrationScheduler(control.app).run_once()
    assert result.source is not None and result.source.revision == 2
    assert result.published is not None and result.published.recalibrated_from == 2
    now = json.loads(store.get_manifest()[0])
    assert (now["revision"], now["recalibrated_from"]) == (3, 2)
    assert "discount-nudge-15" in json.dumps(publishing.published_snapshot(store))
