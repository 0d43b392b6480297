"""An edge store that does not answer, against a real control plane: a review stalled
telemetry, healthz and the console with six anonymous clients asking for the manifest
(each read held a thread for its whole timeout), and the fleet view, where edges' sync
errors show, was a 503 exactly while the store was away."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from control_plane.distribution.manifest_cache import ManifestCache
from edge_module.distribution.edge_store import S3Store, StoreError, read_manifest
from tests.control_server import running_control
from tests.factories import snapshot_text
from tests.s3_server import S3Server
from tests.servers import TEST_KEY, control_config, http, put_snapshot


class Silent:
    """An S3 endpoint that takes connections and never answers (a blackholed store)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.taken: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.taken.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.taken:
            conn.close()


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


def test_while_a_read_hangs_the_fleet_and_healthz_answer_at_once(tmp_path, silent):
    config = control_config(tmp_path, STORE_DIR="s3://bucket/edge", S3_ENDPOINT_URL=silent.url)
    with running_control(config) as control:
        control.app.extensions["edge_store"].retry_s = 0  # its start-up read failed: ask again
        asked = len(silent.taken)
        first: dict[str, Any] = {}
        reading = threading.Thread(target=lambda: first.update(
            answer=http("GET", control.url + "/v1/snapshots/current")))
        reading.start()
        while len(silent.taken) == asked and reading.is_alive():  # the read under way
            reading.join(0.01)
        status, fleet, _ = http("GET", control.url + "/v1/fleet")
        assert status == 200 and "no answer yet" in fleet["store_error"]
        assert fleet["current_revision"] is None
        assert http("GET", control.url + "/healthz")[0] == 200
        assert reading.is_alive()  # both answered while the store still held the first
        reading.join()
        assert first["answer"][0] == 503


def test_a_failed_read_is_the_answer_for_a_while_without_asking_the_store_again(silent):
    cache = ManifestCache(S3Store("bucket", "edge", endpoint_url=silent.url), retry_s=600)
    with pytest.raises(StoreError):
        read_manifest(cache)  # boto3 gives up after its timeouts and retries
    asked = len(silent.taken)
    for _ in range(20):
        with pytest.raises(StoreError):
            read_manifest(cache)
    assert len(silent.taken) == asked


def test_a_write_through_the_cache_is_read_back_at_once():
    s3 = S3Server()
    try:
        store = S3Store(s3.new_bucket(), "edge", endpoint_url=s3.endpoint)
        cache = ManifestCache(store, fresh_s=600)
        assert read_manifest(cache) is None  # nothing published: cached as such
        put_snapshot(cache, snapshot_text(), 1, TEST_KEY)
        assert read_manifest(cache)[0].doc["revision"] == 1
        put_snapshot(store, snapshot_text(), 2, TEST_KEY)  # another process publishes
        assert read_manifest(cache)[0].doc["revision"] == 1  # seen after fresh_s
    finally:
        s3.stop()


def test_a_read_ending_in_a_surprise_is_not_kept_as_an_answer(tmp_path):
    """A third review's store broke off mid-body: a raw botocore error escaped, the cache
    kept 'nothing' as the answer, and every view was a 500 for a second."""
    from edge_module.distribution.edge_store import LocalFolderStore

    store = LocalFolderStore(tmp_path / "store")
    put_snapshot(store, snapshot_text(), 1, TEST_KEY)

    class BreaksOnce:
        broke = False

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def get_manifest(self, if_none_match: str | None = None) -> Any:
            if not self.broke:
                self.broke = True
                raise RuntimeError("connection broken off mid-body")
            return store.get_manifest(if_none_match)

    cache = ManifestCache(BreaksOnce(), fresh_s=600)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        read_manifest(cache)
    assert read_manifest(cache)[0].doc["revision"] == 1
