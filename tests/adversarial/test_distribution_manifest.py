"""Issue #11, item 7: whoever could write to the edge store could roll edges back, invisibly
(copying an old history entry into manifest.json made an edge serve revision 1 instead of
4, with the fleet view showing it "in sync"). Manifest entries are signed with a sequence;
an edge refuses one older than what it serves, says so in /healthz and the fleet view,
keeps refusing after a restart, and still follows a rollback made by the control plane.
Real control plane and edges on loopback, real component."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from edge_module.distribution.edge_store import MANIFEST_FORMAT, LocalFolderStore, read_manifest
from tests.control_server import ControlServer
from tests.servers import (
    EDGE_TOKEN,
    PUBLISHER_TOKEN,
    control_config,
    http,
    running_edge,
    wait_for,
)

AUTH = {"Authorization": f"Bearer {PUBLISHER_TOKEN}"}


def pack_source(content: str) -> str:
    return (f"pack: greet\ntriggers:\n  - id: greet\n    on: page_view\n"
            f"    action: {{content: {content}}}\n")


def publish(control: ControlServer, content: str) -> int:
    """Submit the pack greeting with `content` and publish it: the new revision."""
    status, body, _ = http("PUT", control.url + "/v1/packs/greet", pack_source(content),
                           {**AUTH, "Content-Type": "application/yaml"})
    assert status in (200, 201), body
    status, body, _ = http("POST", control.url + "/v1/snapshots", b"", AUTH)
    assert status == 201, body
    return int(body["revision"])


def greeting(edge: Any) -> tuple[str, str]:
    """(revision, content) of what the edge decides for a new visitor's page view now."""
    status, body, _ = edge.decide({"session_id": uuid.uuid4().hex, "context": {"url": "/"},
                                   "events": [{"type": "page_view", "ts_ms": 1}]})
    assert status == 200, body
    return body["revision"], body["actions"][0]["content"]


def replay(store: LocalFolderStore, entry: dict[str, Any]) -> None:
    """What an attacker with write access to the store does: an old (signed) history
    entry becomes the manifest again."""
    manifest, etag = read_manifest(store)
    doc = {"format": MANIFEST_FORMAT, **entry, "history": manifest.doc["history"]}
    store.put_manifest(json.dumps(doc).encode(), etag)


def refusal(edge: Any, revision: int) -> str:
    """The edge's error once it refused a manifest naming `revision`."""
    said = f"manifest for revision {revision} refused"
    return wait_for(lambda: (e := edge.health()["last_error"]) and said in e and e,
                    what="the edge to refuse the replayed manifest")


@pytest.fixture
def stack(tmp_path: Path):
    config = control_config(tmp_path)
    control = ControlServer(config)
    try:
        yield control, config
    finally:
        control.stop()


def edge_settings(control: ControlServer, config: dict[str, Any], state: Path) -> dict[str, Any]:
    return {"trusted_keys": Path(config["TRUSTED_KEYS"]), "control_url": control.url,
            "token": EDGE_TOKEN, "report_interval_s": 0.05, "telemetry": False,
            "state_dir": state,
            "decide_deadline_ms": 2000}  # a busy CI machine is not what this is about


def test_a_replayed_history_entry_is_refused_reported_and_survives_a_restart(stack, tmp_path):
    control, config = stack
    store_dir = Path(config["STORE_DIR"])
    store = LocalFolderStore(store_dir)
    settings = edge_settings(control, config, tmp_path / "edge-state")
    latest = [publish(control, f"hello-{n}") for n in range(1, 5)][-1]
    with running_edge(store_dir, **settings) as edge:
        wait_for(lambda: edge.health()["revision"] == str(latest), what="the newest revision")
        history = read_manifest(store)[0].doc["history"]
        for entry in history[:-1]:  # every older entry, each a correctly signed one
            replay(store, entry)
            message = refusal(edge, entry["revision"])
            assert f"than the one served (revision {latest}" in message
            assert greeting(edge) == (str(latest), f"hello-{latest}")

            def reported() -> dict[str, Any] | None:
                edges = http("GET", control.url + "/v1/fleet", headers=AUTH)[1]["edges"]
                return next((e for e in edges if e.get("last_error") == message), None)

            shown = wait_for(reported, what="the refusal in the fleet view")
            assert shown["revision"] == str(latest)
            # the control plane reads a manifest written behind its back within a second,
            # names the replay, and keeps the newest entry it signed as the current one
            def replay_named(revision: int = entry["revision"]) -> dict[str, Any] | None:
                doc = http("GET", control.url + "/v1/fleet", headers=AUTH)[1]
                named = any(f"current revision {revision} " in reason and "replayed" in reason
                            for reason in doc["untrusted"])
                return doc if named else None

            fleet = wait_for(replay_named, what="the replayed manifest shown")
            assert fleet["current_revision"] == latest
            shown = reported()
            assert shown is not None and shown["in_sync"] is True
    # The store still holds a replayed manifest when the edge restarts: its last good
    # snapshot (kept on disk with its signed entry) serves, and the replay stays refused.
    with running_edge(store_dir, **settings) as edge:
        refusal(edge, history[-2]["revision"])
        assert greeting(edge) == (str(latest), f"hello-{latest}")


def test_a_rollback_through_the_control_plane_is_followed_and_cannot_be_undone_by_replay(
        stack, tmp_path):
    control, config = stack
    store_dir = Path(config["STORE_DIR"])
    store = LocalFolderStore(store_dir)
    for n in range(1, 4):
        publish(control, f"hello-{n}")
    with running_edge(store_dir, **edge_settings(control, config, tmp_path / "s")) as edge:
        wait_for(lambda: edge.health()["revision"] == "3", what="revision 3")
        before = read_manifest(store)[0].doc
        status, body, _ = http("POST", control.url + "/v1/snapshots/rollback", {"revision": 1},
                               AUTH)
        assert status == 200 and body["rollback_from"] == 3
        wait_for(lambda: edge.health()["revision"] == "1", what="the rollback followed")
        assert greeting(edge) == ("1", "hello-1") and edge.health()["last_error"] is None
        # Undoing the rollback by putting revision 3's entry back is a replay too.
        replay(store, {k: v for k, v in before.items() if k not in ("format", "history")})
        refusal(edge, 3)
        assert greeting(edge) == ("1", "hello-1")
        # The next publish is newer than all of it.
        assert publish(control, "hello-4") == 4
        wait_for(lambda: edge.health()["revision"] == "4", what="revision 4")
        assert edge.health()["last_error"] is None


def test_a_manifest_whose_signed_fields_were_edited_is_rejected(stack, tmp_path):
    control, config = stack
    store_dir = Path(config["STORE_DIR"])
    store = LocalFolderStore(store_dir)
    publish(control, "hello-1")
    publish(control, "hello-2")
    with running_edge(store_dir, **edge_settings(control, config, tmp_path / "s")) as edge:
        wait_for(lambda: edge.health()["revision"] == "2", what="revision 2")
        first = read_manifest(store)[0].doc["history"][0]
        # revision 1's entry, made to look newer and like a rollback: the signature breaks
        forged = {**first, "sequence": first["sequence"] + 10 ** 9, "rollback_from": 2}
        replay(store, forged)
        error = wait_for(lambda: edge.health()["last_error"], what="the forgery rejected")
        assert "bad signature" in error and "manifest entry" in error
        assert greeting(edge) == ("2", "hello-2")
