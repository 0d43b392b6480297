"""The stack a real browser visits: control plane, edge host and the demo store, each its
own process on its own loopback port (so the store's pages call the edge cross-origin),
set up as `./build.sh up` sets them up, in a throwaway folder. A second demo store asks
for consent first. The edge can be stopped and started again mid-visit. Push, email and
webhook deliveries go to a signed-webhook receiver on loopback (`receiver`), and the
stores sign their customers' ids with the key the edge checks (`crm_key`).

Used by the browser tests (tests/browser) and `python -m loadtest.bench_browser`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.stack import BIN, ROOT, _run, _start, _wait_healthy, free_port, stop_process, wait_for
from loadtest.webhook_receiver import Receiver
from sdk.build import build as sdk_build

# Installed in every page before its own scripts: when each nudge element appeared (the
# page's clock, which also stamps the SDK's events) and the bodies the SDK sent with fetch.
PROBE = """
window.__probe = {appeared: {}, sent: []};
(function () {
  const f = window.fetch;
  window.fetch = function (url, opts) {
    try { window.__probe.sent.push({url: String(url), body: String(opts && opts.body),
                                    at: Date.now()}); } catch (e) {}
    return f.apply(this, arguments);
  };
  new MutationObserver(function (records) {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType === 1 && n.hasAttribute("data-trigger")) {
        const key = n.getAttribute("data-trigger");
        if (!(key in window.__probe.appeared)) window.__probe.appeared[key] = Date.now();
      }
    }
  }).observe(document, {childList: true, subtree: true});
})();
"""


def decide_events(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the SDK sent to /v1/decide (the probe's `sent`), in order and each once.

    A batch the edge refused for now (429, 5xx) or the network lost is sent again with the
    same events, stamped when they happened: an identical copy is the same event resent.
    (Two events alike in every field, stamp included, count once: no check here needs them.)
    """
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for req in sent:
        if not req["url"].endswith("/v1/decide"):
            continue
        for event in json.loads(req["body"])["events"]:
            key = json.dumps(event, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(event)
    return out


def request(method: str, url: str, body: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=None if body is None else body.encode(),
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class BrowserStack:
    def __init__(self, work: Path, edge_env: dict[str, str] | None = None) -> None:
        """`edge_env`: more settings for the edge host (e.g. client-carried sessions)."""
        self.work = work
        cport, eport, dport, dport2 = (free_port() for _ in range(4))
        self.control = f"http://127.0.0.1:{cport}"
        self.edge = f"http://127.0.0.1:{eport}"
        self.demo = f"http://127.0.0.1:{dport}"
        self.demo_consent = f"http://127.0.0.1:{dport2}"
        data = work / "control"
        # push, email and webhook nudges go to this receiver; customer ids are signed
        self.receiver = Receiver(free_port()).start()
        self.crm_key = secrets.token_hex(32)
        self.env = {
            **os.environ, "CONTROL_HOST": "127.0.0.1", "CONTROL_PORT": str(cport),
            "CONTROL_DATA_DIR": str(data), "TRIGGERS_STORE": str(work / "store"),
            "TRIGGERS_TRUSTED_KEYS": str(work / "trusted"), "EDGE_HOST": "127.0.0.1",
            "EDGE_PORT": str(eport), "EDGE_STATE_DIR": str(work / "edge"),
            "EDGE_SYNC_INTERVAL_S": "0.1", "EDGE_REPORT_INTERVAL_S": "0.5",
            "EDGE_TELEMETRY_INTERVAL_S": "0.2", "EDGE_CONTROL_URL": self.control,
            "EDGE_ALLOWED_ORIGINS": f"{self.demo},{self.demo_consent}",
            "EDGE_SDK_DIR": str(ROOT / "build" / "sdk"),
            "EDGE_CHANNEL_WEBHOOK_URL": self.receiver.url,
            "EDGE_CHANNEL_WEBHOOK_SECRET": self.receiver.secret,
            "EDGE_CRM_ID_KEY": self.crm_key,
            "EDGE_LOG_LEVEL": os.environ.get("EDGE_LOG_LEVEL", "WARNING"), **(edge_env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        sdk_build(ROOT / "build" / "sdk")  # the SDK the edge serves is this tree's
        engine = str(BIN / "trigger-engine")
        for argv in (["keys", "generate"], ["tokens"], ["publish", str(ROOT / "rules")]):
            _run([engine, *argv], self.env)
        self.env["EDGE_TOKEN"] = (data / "edge.token").read_text().strip()
        self.publisher = (data / "publisher.token").read_text().strip()
        try:
            self.start("control", [engine, "serve"], self.control)
            self.start_edge()
            store = [sys.executable, "-m", "demo.store", "--edge", self.edge]
            self.start("demo", [*store, "--port", str(dport)], self.demo, "/")
            self.start("demo-consent", [*store, "--port", str(dport2), "--consent", "required"],
                       self.demo_consent, "/")
        except BaseException:
            self.close()
            raise

    def start(self, name: str, argv: list[str], url: str, path: str = "/healthz") -> None:
        log = self.work / f"{name}.log"
        self.procs[name] = proc = _start(argv, self.env, log)
        _wait_healthy(url, proc, log, 60.0, name, path)

    def start_edge(self) -> None:
        self.start("edge", [str(BIN / "edge-host")], self.edge)
        wait_for(lambda: request("GET", self.edge + "/healthz")[1].get("revision"),
             what="the edge serving a snapshot")

    def stop(self, name: str) -> None:
        stop_process(self.procs.pop(name))

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        self.receiver.stop()

    def _auth(self, content_type: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.publisher}", "Content-Type": content_type}

    def trigger_report(self) -> dict[str, dict[str, int]]:
        """Per trigger id, summed over devices and revisions: fires, impressions, clicks,
        conversions, dismissals, as the control plane reports them."""
        status, body = request("GET", self.control + "/v1/reports/triggers?window_s=3600",
                               headers=self._auth())
        if status != 200:
            raise RuntimeError(f"trigger report: {status} {body}")
        out: dict[str, dict[str, int]] = {}
        for row in body["rows"]:
            sums = out.setdefault(row["trigger"], {})
            for key in ("fires", "impressions", "clicks", "conversions", "dismissals"):
                sums[key] = sums.get(key, 0) + row[key]
        return out

    def publish_pack(self, name: str, text: str) -> None:
        """Publish one more pack beside rules/ and wait until the edge serves it."""
        before = request("GET", self.edge + "/healthz")[1]["revision"]
        for method, path, body, kind in (("PUT", f"/v1/packs/{name}", text, "application/yaml"),
                                         ("POST", "/v1/snapshots", None, "application/json")):
            status, answer = request(method, self.control + path, body, self._auth(kind))
            if status not in (200, 201):
                raise RuntimeError(f"{method} {path}: {status} {answer}")
        wait_for(lambda: request("GET", self.edge + "/healthz")[1]["revision"] != before,
             what="the edge serving the new pack")
