"""The whole real path, started the way a user starts it: `./build.sh up`.

Rule pack -> control plane (HTTP) -> signed-off snapshot in the edge store -> edge host's
component -> a visitor's events over HTTP -> a decision. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.factories import T0
from tests.servers import ROOT, http, wait_for


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, proc: subprocess.Popen[bytes], control: str, edge: str, log: Path,
                 data: Path) -> None:
        self.proc, self.control, self.edge, self.log, self.data = proc, control, edge, log, data

    @property
    def auth(self) -> dict[str, str]:
        token = (self.data / "publisher.token").read_text().strip()
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"}

    def decide(self, body):
        return http("POST", self.edge + "/v1/decide", body)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    cport, eport = _free_port(), _free_port()
    env = {**os.environ, "CONTROL_PORT": str(cport), "EDGE_PORT": str(eport),
           "CONTROL_DATA_DIR": str(tmp / "control"), "TRIGGERS_STORE": str(tmp / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(tmp / "trusted"), "EDGE_STATE_DIR": str(tmp / "edge"),
           "EDGE_SYNC_INTERVAL_S": "0.1", "EDGE_REPORT_INTERVAL_S": "0.2",
           "VENV": str(Path(sys.executable).parent.parent)}
    log = tmp / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(ROOT / "build.sh"), "up"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stack = Stack(proc, f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{eport}", log,
                  tmp / "control")
    try:
        wait_for(lambda: b"Ctrl-C stops both" in log.read_bytes() or proc.poll() is not None,
                 timeout_s=240, what="./build.sh up")
        assert proc.poll() is None, log.read_text()
        yield stack
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def pricing_visit(session: str, now: int, events=()) -> dict:
    return {"session_id": session, "now_ms": T0 + now, "context": {"url": "/pricing"},
            "events": list(events)}


OPENING = [{"type": "page_view", "ts_ms": T0, "url": "/pricing"},
           {"type": "scroll", "ts_ms": T0 + 1000, "depth": 0.8, "y": 1400}]


def test_up_publishes_rules_and_serves_the_pricing_nudge(stack):
    status, body, _ = stack.decide(pricing_visit("e2e-1", 3200, OPENING))
    assert status == 200, body
    assert [(a["trigger"], a["content"], a["tier"]) for a in body["actions"]] == [
        ("pricing-discount", "discount-nudge-10", "immediate")]
    status, again, _ = stack.decide(pricing_visit("e2e-1", 4000))
    assert status == 200 and again["actions"] == []  # capped: once per session


def test_up_announces_the_next_check_before_the_dwell_threshold(stack):
    status, body, _ = stack.decide(pricing_visit("e2e-2", 1500, OPENING))
    assert status == 200 and body["actions"] == [] and body["next_check_ms"] == T0 + 3000


def test_up_answers_malformed_json_with_a_json_400(stack):
    status, body, _ = http("POST", stack.edge + "/v1/decide", b"{oops")
    assert status == 400 and body["error"]["code"] == "invalid_json"


def test_a_pack_submitted_and_published_over_http_reaches_the_edge(stack):
    source = (ROOT / "rules" / "pricing-discount.yaml").read_text()
    slower = source.replace('">= 3s"', '">= 5s"')
    assert slower != source
    status, body, _ = http("PUT", stack.control + "/v1/packs/pricing-discount", slower,
                           stack.auth)
    assert status == 200, body
    status, published, _ = http("POST", stack.control + "/v1/snapshots", headers=stack.auth)
    assert status == 201 and published["revision"] == 2
    wait_for(lambda: http("GET", stack.edge + "/healthz")[1].get("revision") == "2",
             what="the edge to serve revision 2")
    _, body, _ = stack.decide(pricing_visit("e2e-3", 3200, OPENING))
    assert body["revision"] == "2" and body["actions"] == []
    assert body["next_check_ms"] == T0 + 5000
    _, listing, _ = http("GET", stack.control + "/v1/snapshots")
    assert [r["revision"] for r in listing["revisions"]] == [2, 1]


def test_a_broken_pack_is_refused_with_its_position(stack):
    status, body, _ = http("PUT", stack.control + "/v1/packs/broken",
                           "pack: broken\ntriggers:\n  - id: x\n    when:\n      - scrol_depth: '>= 0.5'\n"
                           "    action: {content: c}\n", stack.auth)
    assert status == 422
    problem = body["error"]["problems"][0]
    assert (problem["line"], problem["column"]) == (5, 9)
    assert problem["suggestion"] == "scroll_depth"


def test_writes_without_the_publisher_token_are_refused(stack):
    status, body, _ = http("POST", stack.control + "/v1/snapshots")
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_the_edge_reports_its_revision_to_the_fleet_view(stack):
    def reported():
        edges = http("GET", stack.control + "/v1/fleet")[1]["edges"]
        return edges if edges and edges[0]["revision"] is not None else None

    [edge] = wait_for(reported, what="the edge's status report")
    assert edge["edge_id"] == stack.edge.removeprefix("http://")
    # `up` sets no EDGE_THREADS: one component instance per core (2 to 8)
    assert edge["last_error"] is None and edge["instances"] == min(max(os.cpu_count() or 2, 2), 8)


def test_ctrl_c_stops_the_whole_stack(stack):
    os.killpg(stack.proc.pid, signal.SIGINT)
    assert stack.proc.wait(timeout=20) is not None
    with pytest.raises(OSError):
        http("GET", stack.edge + "/healthz")
