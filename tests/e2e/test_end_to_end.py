"""The whole real path, started the way a user starts it: `./build.sh up`.

Rule pack -> control plane (HTTP) -> signed-off snapshot in the edge store -> edge host's
component -> a visitor's events over HTTP -> a decision. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


EDGE_THREADS = 3  # set, unlike the default (one per core), so the test knows the count


@contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    """`./build.sh up` with its state in `tmp`; stopped with Ctrl-C (SIGINT) at the end."""
    cport, eport = _free_port(), _free_port()
    env = {**os.environ, "CONTROL_PORT": str(cport), "EDGE_PORT": str(eport),
           "DEMO_PORT": str(_free_port()),
           "CONTROL_DATA_DIR": str(tmp / "control"), "TRIGGERS_STORE": str(tmp / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(tmp / "trusted"), "EDGE_STATE_DIR": str(tmp / "edge"),
           "EDGE_SYNC_INTERVAL_S": "0.1", "EDGE_REPORT_INTERVAL_S": "0.2",
           "EDGE_THREADS": str(EDGE_THREADS), "VENV": str(Path(sys.executable).parent.parent)}
    log = tmp / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(ROOT / "build.sh"), "up"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stack = Stack(proc, f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{eport}", log,
                  tmp / "control")
    try:
        wait_for(lambda: b"Ctrl-C stops all three" in log.read_bytes() or proc.poll() is not None,
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the tests that leave it as they found it (none stops it or changes
    a pack the others decide with)."""
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


def page_visit(session: str, now: int, events=(), url: str = "/pricing") -> dict:
    return {"session_id": session, "now_ms": T0 + now, "context": {"url": url},
            "events": list(events)}


def opening(url: str = "/pricing") -> list[dict]:
    """The page view, then a scroll to 80 % one second in."""
    return [{"type": "page_view", "ts_ms": T0, "url": url},
            {"type": "scroll", "ts_ms": T0 + 1000, "depth": 0.8, "y": 1400}]


def test_up_publishes_rules_and_serves_the_pricing_nudge(stack):
    status, body, _ = stack.decide(page_visit("e2e-1", 3200, opening()))
    assert status == 200, body
    assert [(a["trigger"], a["content"], a["tier"]) for a in body["actions"]] == [
        ("pricing-discount", "discount-nudge-10", "immediate")]
    status, again, _ = stack.decide(page_visit("e2e-1", 4000))
    assert status == 200 and again["actions"] == []  # capped: once per session


def test_up_serves_the_catalog_variant_for_the_visitor(stack):
    visit = page_visit("e2e-variant", 3200, opening())
    visit["context"].update(device="mobile", locale="de-AT")
    status, body, _ = stack.decide(visit)
    assert status == 200, body
    [action] = body["actions"]
    assert action["content"] == "discount-nudge-10"
    assert action["variant"]["name"] == "mobile-de"
    assert action["variant"]["fields"]["title"] == "10 % Rabatt"


def test_up_announces_the_next_check_before_the_dwell_threshold(stack):
    status, body, _ = stack.decide(page_visit("e2e-2", 1500, opening()))
    assert status == 200 and body["actions"] == [] and body["next_check_ms"] == T0 + 3000


def test_up_answers_malformed_json_with_a_json_400(stack):
    status, body, _ = http("POST", stack.edge + "/v1/decide", b"{oops")
    assert status == 400 and body["error"]["code"] == "invalid_json"


def help_pack() -> str:
    """A pack of its own page (so the other tests' decisions do not change): the pricing
    pack's shape with a 5 s dwell and the help-chat offer."""
    source = (ROOT / "rules" / "pricing-discount.yaml").read_text()
    changed = (source.replace("pricing-discount", "e2e-help").replace("/pricing", "/e2e-help")
               .replace('">= 3s"', '">= 5s"').replace("discount-nudge-10", "help-chat-offer"))
    return changed


def test_a_pack_submitted_and_published_over_http_reaches_the_edge(stack):
    _, listing, _ = http("GET", stack.control + "/v1/snapshots")
    serving = listing["revisions"][0]["revision"]
    status, body, _ = http("PUT", stack.control + "/v1/packs/e2e-help", help_pack(), stack.auth)
    assert status == 201, body  # a new pack
    status, published, _ = http("POST", stack.control + "/v1/snapshots", headers=stack.auth)
    assert status == 201 and published["revision"] == serving + 1
    wait_for(lambda: http("GET", stack.edge + "/healthz")[1].get("revision") == str(serving + 1),
             what="the edge to serve the new revision")
    status, body, _ = stack.decide(page_visit("e2e-3", 3200, opening("/e2e-help"), "/e2e-help"))
    assert status == 200 and body["revision"] == str(serving + 1) and body["actions"] == []
    assert body["next_check_ms"] == T0 + 5000
    _, body, _ = stack.decide(page_visit("e2e-3", 5000, url="/e2e-help"))
    assert [(a["trigger"], a["content"]) for a in body["actions"]] == [
        ("e2e-help", "help-chat-offer")]
    _, listing, _ = http("GET", stack.control + "/v1/snapshots")
    assert [r["revision"] for r in listing["revisions"]][:2] == [serving + 1, serving]


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
    # one component instance per thread serving decisions
    assert edge["last_error"] is None and edge["instances"] == EDGE_THREADS


def test_ctrl_c_stops_the_whole_stack(tmp_path):
    with running_stack(tmp_path) as own:
        os.killpg(own.proc.pid, signal.SIGINT)
        assert own.proc.wait(timeout=20) is not None
        with pytest.raises(OSError):
            http("GET", own.edge + "/healthz")
