"""Real servers for tests: an in-process edge host on a free port, and an HTTP client."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from control_plane.distribution.keys import KeyRing, SigningKey
from control_plane.distribution.manifest_trust import ManifestKeys, VouchedStore
from edge_module.distribution.edge_store import (
    MANIFEST_FORMAT,
    EdgeStore,
    LocalFolderStore,
    object_key,
    read_manifest,
    sha256_text,
)
from edge_module.distribution.signing import entry_statement
from loadtest.stack import stop_process, wait_for  # noqa: F401  (the tests' shared helpers)

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
_KEYS = Path(tempfile.mkdtemp(prefix="edge-test-keys-"))
KEYRING = KeyRing(_KEYS / "private", _KEYS / "trusted")
TEST_KEY = KEYRING.ensure()  # the edges under test trust it (TRUSTED_KEYS)
TRUSTED_KEYS = KEYRING.trusted_dir


def vouched(store: Path | EdgeStore, *trusted: Path) -> VouchedStore:
    """`store` as the control plane reads it (`manifest_trust`): entries signed by the
    test key or by a key whose public half is in one of the `trusted` folders count."""
    raw = LocalFolderStore(store) if isinstance(store, Path) else store
    return VouchedStore(raw, ManifestKeys(TRUSTED_KEYS, *trusted))


def http(method: str, url: str, body: bytes | str | dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request; returns (status, JSON body, headers) for success and error alike."""
    data = json.dumps(body).encode() if isinstance(body, dict) else (
        body.encode() if isinstance(body, str) else body)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, hdrs = err.read(), err.code, dict(err.headers)
    return status, (json.loads(raw) if raw else {}), hdrs




def put_snapshot(store: Path | EdgeStore, text: str, revision: int,
                 key: SigningKey | None = TEST_KEY, sign_bytes: bytes | None = None, *,
                 sequence: int | None = None, rollback_from: int | None = None,
                 sign_entry: bool = True, object_bytes: bytes | None = None) -> dict[str, Any]:
    """Write a snapshot (signed by `key`, unsigned if None; `sign_bytes` signs something
    else) and point the manifest at it, bypassing the compiler (fault tests). The manifest
    entry is signed by `key` too (unless `sign_entry` is False), with `sequence` (default:
    one above the manifest's) and `rollback_from` (a rollback statement); `object_bytes`
    are stored at the snapshot's address instead of its text (a corrupt object). Returns it."""
    if isinstance(store, Path):
        store = LocalFolderStore(store)
    sha = sha256_text(text)
    store.put_object(object_key(sha), text.encode() if object_bytes is None else object_bytes)
    got = read_manifest(store)
    if sequence is None:
        sequence = (got[0].sequence or 0) + 1 if got is not None else 1
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "revision": revision,
                                "object": object_key(sha), "sha256": sha,
                                "published_ms": int(time.time() * 1000),
                                "sequence": sequence, "history": []}
    if rollback_from is not None:
        manifest["rollback_from"] = rollback_from
    if key is not None:
        manifest.update(signature=key.sign(sign_bytes or text.encode()), key_id=key.id)
        if sign_entry:
            manifest.update(entry_signature=key.sign(entry_statement(manifest)),
                            entry_key_id=key.id)
    store.put_manifest(json.dumps(manifest).encode(), None if got is None else got[1])
    return manifest


def healthy(url: str) -> bool:
    """The server at `url` answers its /healthz with 200 (False while it cannot be reached)."""
    try:
        return http("GET", url + "/healthz")[0] == 200
    except OSError:
        return False


@dataclass
class EdgeServer:
    url: str
    host: Any

    def decide(self, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        return http("POST", self.url + "/v1/decide", body)

    def health(self) -> dict[str, Any]:
        return http("GET", self.url + "/healthz")[1]


def stop_waitress(server: Any) -> None:
    """Close a server made by waitress's `create_server`, its task threads first: one
    finishing after the close would write its wake-up byte ("x") into whatever socket
    reused the closed trigger's descriptor (seen as "xHTTP/1.1 ..." by another client)."""
    server.task_dispatcher.shutdown(timeout=5)
    server.close()


@contextmanager
def running_edge(store_dir: Path, **overrides: Any) -> Iterator[EdgeServer]:
    """An edge host (real component, real waitress) serving from `store_dir`."""
    from waitress.server import create_server

    from edge_module.host.config import EdgeConfig
    from edge_module.host.edge_host import EdgeHost

    own_state = None if "state_dir" in overrides else \
        Path(tempfile.mkdtemp(prefix="edge-state-"))  # removed at the end, unlike a caller's
    settings = {"store": str(store_dir), "component": BUILD / "decision-engine.wasm",
                "cache_dir": BUILD / "cache", "sync_interval_s": 0.05, "threads": 2,
                "trusted_keys": TRUSTED_KEYS, "control_url": "", "state_dir": own_state}
    settings.update(overrides)
    config = EdgeConfig.from_env({}, **settings)
    host = EdgeHost.build(config)
    server = create_server(host.app, host="127.0.0.1", port=0, threads=config.threads)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:  # closed from the test's thread while the loop was in select()
            if not closing.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield EdgeServer(f"http://127.0.0.1:{server.effective_port}", host)
    finally:
        closing.set()
        stop_waitress(server)
        host.close()
        thread.join(timeout=5)
        if own_state is not None:
            shutil.rmtree(own_state, ignore_errors=True)


PUBLISHER_TOKEN = "publisher-token-for-tests"
EDGE_TOKEN = "edge-token-for-tests"


def control_config(tmp_path: Path, signing_key: bool = True, **extra: Any) -> dict[str, Any]:
    """Control plane settings in `tmp_path`, with tokens and (unless told) a signing key."""
    config = {"DATA_DIR": str(tmp_path / "control"), "STORE_DIR": str(tmp_path / "store"),
              "KEYS_DIR": str(tmp_path / "control" / "keys"),
              "TRUSTED_KEYS": str(tmp_path / "trusted"),
              "PUBLISHER_TOKENS": PUBLISHER_TOKEN, "EDGE_TOKENS": EDGE_TOKEN, **extra}
    if signing_key:
        KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"]).ensure()
    return config


def control_client(tmp_path: Path, token: str | None = PUBLISHER_TOKEN, app: Any = None,
                   **extra: Any) -> Any:
    """A Flask test client of the control plane (a new app, or `app`) presenting `token`
    on every call."""
    from control_plane import create_app

    if app is None:
        app = create_app(control_config(tmp_path, **extra))
        app.testing = True
    client = app.test_client()
    if token:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@dataclass
class Served:
    manifest: dict[str, Any]
    snapshot_text: str


def served(store: Path | EdgeStore) -> Served:
    """What an edge would fetch from `store` now: the manifest and its snapshot's text."""
    if isinstance(store, Path):
        store = LocalFolderStore(store)
    got = read_manifest(store)
    assert got is not None, "nothing published"
    manifest = got[0]
    return Served(manifest.doc, store.get_object(manifest.object).decode())
