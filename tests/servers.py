"""Real servers for tests: an in-process edge host on a free port, and an HTTP client."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edge_module.edge_store import MANIFEST_FORMAT, LocalFolderStore, object_key, sha256_text

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


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


def wait_for(predicate: Any, timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy (servers start and sync asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def put_snapshot(store_dir: Path, text: str, revision: int) -> None:
    """Write a snapshot and point the manifest at it, bypassing the compiler (fault tests)."""
    store = LocalFolderStore(store_dir)
    sha = sha256_text(text)
    store.put(object_key(sha), text.encode())
    store.write_manifest({"format": MANIFEST_FORMAT, "revision": revision,
                          "object": object_key(sha), "sha256": sha, "history": []})


@dataclass
class EdgeServer:
    url: str
    host: Any

    def decide(self, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        return http("POST", self.url + "/v1/decide", body)

    def health(self) -> dict[str, Any]:
        return http("GET", self.url + "/healthz")[1]


@contextmanager
def running_edge(store_dir: Path, **overrides: Any) -> Iterator[EdgeServer]:
    """An edge host (real component, real waitress) serving from `store_dir`."""
    from waitress.server import create_server

    from edge_module.host.config import EdgeConfig
    from edge_module.host.server import EdgeHost

    settings = {"store_dir": store_dir, "component": BUILD / "decision-engine.wasm",
                "cache_dir": BUILD / "cache", "sync_interval_s": 0.05, "threads": 2}
    settings.update(overrides)
    config = EdgeConfig.from_env({}, **settings)
    host = EdgeHost.build(config)
    server = create_server(host.app, host="127.0.0.1", port=0, threads=config.threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield EdgeServer(f"http://127.0.0.1:{server.effective_port}", host)
    finally:
        server.close()
        host.close()
