"""Snapshots reach the edge through S3 (a real S3-protocol server on loopback, boto3 over
HTTP), signed; every fault leaves the edge serving its last good revision and saying why."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from control_plane.distribution.keys import KeyRing
from edge_module.distribution.edge_store import (
    LocalFolderStore,
    ManifestConflict,
    NoManifest,
    S3Store,
    StoreError,
    object_key,
    read_manifest,
    sha256_text,
)
from edge_module.distribution.signing import entry_statement
from tests.cases_decisions import CHECKOUT, OPENING, PRICING
from tests.factories import T0, big_snapshot_text, snapshot_text
from tests.s3_server import S3Server
from tests.servers import TEST_KEY, http, put_snapshot, running_edge, wait_for


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def store(s3) -> S3Store:
    return S3Store(s3.new_bucket(), "prod/edge", endpoint_url=s3.endpoint)


def edge_on(store: S3Store, s3: S3Server, **overrides):
    return running_edge(Path("unused"), **{"store": f"s3://{store.bucket}/prod/edge",
                                            "s3_endpoint_url": s3.endpoint, **overrides})


def visit(session: str, now: int = 3200, events=OPENING) -> dict:
    return {"session_id": session, "now_ms": T0 + now, "context": {"url": "/pricing"},
            "events": list(events)}


def last_error(edge) -> str:
    return wait_for(lambda: edge.health()["last_error"], what="a sync error")


# -- the store itself --------------------------------------------------------------------------

def test_objects_round_trip_through_s3(store):
    store.put_object("snapshots/abc.json", b'{"x": 1}')
    assert store.get_object("snapshots/abc.json") == b'{"x": 1}'


def test_an_empty_store_has_no_manifest(store):
    with pytest.raises(NoManifest):
        store.get_manifest()
    assert read_manifest(store) is None


def test_a_store_folder_that_does_not_exist_is_told_apart_from_an_empty_one(tmp_path):
    with pytest.raises(NoManifest, match=r"yet$"):
        LocalFolderStore(tmp_path).get_manifest()
    with pytest.raises(NoManifest, match=r"yet \(there is no such folder\)"):
        LocalFolderStore(tmp_path / "stroe").get_manifest()


def test_the_manifest_is_replaced_only_by_compare_and_swap(store):
    etag = store.put_manifest(b'{"a": 1}', None)
    with pytest.raises(ManifestConflict):
        store.put_manifest(b'{"b": 2}', None)  # someone created it first
    newer = store.put_manifest(b'{"c": 3}', etag)
    with pytest.raises(ManifestConflict):
        store.put_manifest(b'{"d": 4}', etag)  # stale ETag: another publisher won
    assert store.get_manifest(newer) is None  # If-None-Match: unchanged, nothing sent
    assert store.get_manifest("stale")[0] == b'{"c": 3}'


def test_the_local_folder_store_has_the_same_compare_and_swap(tmp_path):
    folder = LocalFolderStore(tmp_path)
    etag = folder.put_manifest(b"{}", None)
    with pytest.raises(ManifestConflict):
        folder.put_manifest(b"{1}", None)
    assert folder.get_manifest(etag) is None
    folder.put_manifest(b"{2}", etag)


def test_a_manifest_may_only_name_the_content_address_of_its_hash(tmp_path):
    from edge_module.distribution.edge_store import Manifest

    sha = "a" * 64
    for key in ("/dev/zero", "../../etc/passwd", f"snapshots/{'b' * 64}.json"):
        doc = {"format": "edge-manifest/1", "revision": 1, "object": key, "sha256": sha}
        with pytest.raises(StoreError, match="content address"):
            Manifest.parse(json.dumps(doc).encode())


def test_an_unreachable_s3_is_a_store_error(s3):
    dead = S3Store("b", endpoint_url="http://127.0.0.1:9", timeout_s=0.2)
    with pytest.raises(StoreError, match="unreachable"):
        dead.get_manifest()


# -- the edge over S3 --------------------------------------------------------------------------

def test_an_edge_serves_what_was_published_to_s3_and_follows_new_revisions(store, s3):
    put_snapshot(store, snapshot_text(PRICING, revision="1"), 1)
    with edge_on(store, s3) as edge:
        status, body, _ = edge.decide(visit("s3-1"))
        assert status == 200 and body["revision"] == "1" and body["actions"]
        put_snapshot(store, snapshot_text(CHECKOUT, revision="2"), 2)
        wait_for(lambda: edge.health()["revision"] == "2", what="revision 2")
        assert edge.decide(visit("s3-2"))[1]["actions"] == []


@pytest.mark.parametrize("fault,expected", [
    ("corrupt", "content hash"),
    ("unsigned", "not signed"),
    ("wrong_signature", "bad signature"),
    ("untrusted_key", "does not trust"),
    ("missing_object", "not found"),
])
def test_a_bad_revision_is_rejected_and_the_last_good_one_keeps_serving(store, s3, fault,
                                                                       expected, tmp_path):
    put_snapshot(store, snapshot_text(PRICING, revision="1"), 1)
    with edge_on(store, s3) as edge:
        bad = snapshot_text(CHECKOUT, revision="2")
        if fault == "corrupt":
            # the bytes at the snapshot's address are not the ones its hash names (written
            # before the manifest points there: an edge never sees the good ones)
            put_snapshot(store, bad, 2, object_bytes=b'{"tampered": true}')
        elif fault == "unsigned":
            put_snapshot(store, bad, 2, key=None)
        elif fault == "wrong_signature":
            put_snapshot(store, bad, 2, sign_bytes=b"something else")
        elif fault == "untrusted_key":
            put_snapshot(store, bad, 2, key=KeyRing(tmp_path / "k", tmp_path / "t").ensure())
        else:
            manifest, etag = read_manifest(store)
            never_written = sha256_text("a snapshot nobody wrote")
            doc = {**manifest.doc, "revision": 2, "sha256": never_written,
                   "object": object_key(never_written), "sequence": manifest.sequence + 1}
            doc["entry_signature"] = TEST_KEY.sign(entry_statement(doc))  # a signed entry
            store.put_manifest(json.dumps(doc).encode(), etag)
        assert expected in last_error(edge)
        health = edge.health()
        assert health["revision"] == "1" and health["status"] == "ok"
        status, body, _ = edge.decide(visit(f"f-{fault}"))
        assert status == 200 and body["revision"] == "1" and body["actions"]


def test_a_snapshot_that_traps_on_load_is_rejected(store, s3):
    put_snapshot(store, snapshot_text(PRICING, revision="1"), 1)
    # A snapshot far too big to parse within the load deadline: loading it traps the guest.
    with edge_on(store, s3, load_deadline_ms=20) as edge:
        put_snapshot(store, big_snapshot_text(3000, revision="2"), 2)
        assert "trapped" in last_error(edge)
        assert edge.health()["revision"] == "1"
        assert edge.decide(visit("trap-1"))[1]["revision"] == "1"


def test_the_edge_rides_out_an_s3_outage_and_recovers(store, s3):
    put_snapshot(store, snapshot_text(PRICING, revision="1"), 1)
    with edge_on(store, s3) as edge:
        s3.stop()
        try:
            assert "unreachable" in last_error(edge)
            status, body, _ = edge.decide(visit("out-1"))
            assert status == 200 and body["revision"] == "1"
        finally:
            s3.restart()
        # the store answers again, nothing new: the outage's error is over
        wait_for(lambda: edge.health()["last_error"] is None, what="the error to clear")
        put_snapshot(store, snapshot_text(CHECKOUT, revision="2"), 2)
        wait_for(lambda: edge.health()["revision"] == "2", what="recovery")
        assert edge.health()["last_error"] is None


def test_a_restarted_edge_serves_its_last_good_snapshot_while_s3_is_down(store, s3, tmp_path):
    put_snapshot(store, snapshot_text(PRICING, revision="1"), 1)
    state = tmp_path / "edge-state"
    with edge_on(store, s3, state_dir=state) as edge:
        assert edge.health()["revision"] == "1"
    s3.stop()
    try:
        with edge_on(store, s3, state_dir=state) as edge:
            health = edge.health()
            assert health["revision"] == "1" and health["from_cache"] is True
            assert "unreachable" in health["last_error"]
            assert edge.decide(visit("cache-1"))[0] == 200
    finally:
        s3.restart()


def test_a_tampered_local_copy_is_not_served(store, s3, tmp_path):
    put_snapshot(store, snapshot_text(PRICING, revision="1"), 1)
    state = tmp_path / "edge-state"
    with edge_on(store, s3, state_dir=state):
        pass
    (state / "last-good" / "snapshot.json").write_text(snapshot_text(CHECKOUT, revision="1"))
    s3.stop()
    try:
        with edge_on(store, s3, state_dir=state) as edge:
            assert edge.health()["revision"] is None
            assert http("POST", edge.url + "/v1/decide", visit("t-1"))[0] == 503
    finally:
        s3.restart()


def test_publishing_while_deciding_never_fails_a_request_and_each_host_converges(store, s3):
    """Ten revisions published during a stream of decisions through two hosts: no failed
    request, every decision names one revision and acts as that revision says."""
    put_snapshot(store, _revision_text(1), 1)
    failures: list[object] = []
    seen: list[tuple[str, str]] = []
    stop = threading.Event()
    with edge_on(store, s3) as a, edge_on(store, s3) as b:
        def traffic(edge, name: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                status, body, _ = edge.decide({"session_id": f"{name}-{n}", "now_ms": T0,
                                               "context": {"url": "/"},
                                               "events": [{"type": "page_view", "ts_ms": T0}]})
                if status != 200:
                    failures.append((status, body))
                    continue
                rev = body["revision"]
                seen.append((rev, body["actions"][0]["content"] if body["actions"] else ""))

        threads = [threading.Thread(target=traffic, args=(e, n)) for e, n in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        try:
            for revision in range(2, 12):
                put_snapshot(store, _revision_text(revision), revision)
                wait_for(lambda: len(seen) > 5 * revision, what="traffic")
            for edge in (a, b):
                wait_for(lambda: edge.health()["revision"] == "11", what="convergence")
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert failures == []
    assert all(content == f"content-r{rev}" for rev, content in seen)
    assert len({rev for rev, _ in seen}) > 2


def _revision_text(revision: int) -> str:
    pack = f"""
    pack: greet
    triggers:
      - id: greet
        on: page_view
        action: {{content: content-r{revision}}}
    """
    return snapshot_text(pack, revision=str(revision))
