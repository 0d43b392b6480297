"""Issue #11, item 5: YAML alias fan-out cannot make the control plane work for seconds.

Against a real control plane on loopback: authoring calls need a token, and packs whose
anchors and aliases stand for far more than they spell out (billion laughs, one condition
list reused by every trigger) are refused with 413 and the position where the pack went
over its budget, quickly, while the server keeps answering.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.rulepack import RulePackError, load_pack_file
from control_plane.rulepack.pack_limits import PackLimits
from tests.control_server import running_control
from tests.servers import PUBLISHER_TOKEN, control_config, http

AUTH = {"Authorization": f"Bearer {PUBLISHER_TOKEN}", "Content-Type": "application/yaml"}
ROUTES = ("/v1/packs/validate", "/v1/compile")
GENEROUS_S = 5.0  # a refusal is expected in well under a second; this only catches hangs
NODES = PackLimits().nodes


def fan_out_pack(triggers: int, conditions: int) -> str:
    """One anchored condition list, reused by every trigger (the issue's attack)."""
    when = "\n".join(f'      - dwell: ">= {i + 1}s"' for i in range(conditions))
    first = (f"  - id: t0\n    page: /p\n    when: &c\n{when}\n"
             "    action: {content: discount-nudge-10}\n")
    rest = "".join(f"  - id: t{i}\n    page: /p\n    when: *c\n"
                   "    action: {content: discount-nudge-10}\n" for i in range(1, triggers))
    return "pack: fan-out\ntriggers:\n" + first + rest


def laughs_pack(depth: int, width: int) -> str:
    """Billion laughs: each level an anchored list of `width` aliases of the one before."""
    lines = ["pack: laughs", "l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, depth + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    lines.append(f"triggers: *l{depth}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory):
    with running_control(control_config(tmp_path_factory.mktemp("control"))) as server:
        yield server


@pytest.mark.parametrize("route", ROUTES)
def test_authoring_calls_without_a_token_are_401(control, route):
    status, body, headers = http("POST", control.url + route, fan_out_pack(2, 2),
                                 {"Content-Type": "application/yaml"})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert {k.lower(): v for k, v in headers.items()}["www-authenticate"] == "Bearer"


def assert_refused_quickly(control, route: str, pack: str) -> None:
    started = time.monotonic()
    status, body, _ = http("POST", control.url + route, pack, AUTH)
    elapsed = time.monotonic() - started
    assert status == 413, body
    error = body["error"]
    assert error["code"] == "pack_too_large"
    [problem] = error["problems"]
    assert problem["line"] >= 1 and problem["column"] >= 1 and problem["expected"]
    assert elapsed < GENEROUS_S


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(conditions=st.integers(10, 200), spare=st.integers(0, 400),
       route=st.sampled_from(ROUTES))
def test_a_condition_list_reused_by_many_triggers_is_413(control, conditions, spare, route):
    triggers = NODES // (2 * conditions) + 2 + spare  # always past the budget once expanded
    assert_refused_quickly(control, route, fan_out_pack(triggers, conditions))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(depth=st.integers(3, 9), width=st.integers(6, 12), route=st.sampled_from(ROUTES))
def test_billion_laughs_is_413(control, depth, width, route):
    if width ** depth <= NODES:
        depth += 2  # past the budget whatever the draw
    assert_refused_quickly(control, route, laughs_pack(depth, width))


def test_the_server_keeps_answering_while_attacked(control):
    """Four clients sending fan-out packs in a loop; /healthz answers meanwhile."""
    stop = threading.Event()
    answers: list[int] = []

    def attack() -> None:
        while not stop.is_set():
            answers.append(http("POST", control.url + "/v1/compile",
                                fan_out_pack(600, 60), AUTH)[0])

    attackers = [threading.Thread(target=attack, daemon=True) for _ in range(4)]
    for thread in attackers:
        thread.start()
    try:
        waits = []
        for _ in range(10):
            started = time.monotonic()
            with urllib.request.urlopen(control.url + "/healthz", timeout=30) as resp:
                assert resp.status == 200
            waits.append(time.monotonic() - started)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(timeout=30)
    assert answers and set(answers) == {413}
    assert max(waits) < GENEROUS_S


def test_a_limit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTROL_MAX_TRIGGERS", "1")
    with running_control(control_config(tmp_path)) as server:
        status, body, _ = http("POST", server.url + "/v1/packs/validate",
                               fan_out_pack(2, 1), AUTH)
    assert status == 413 and "at most 1" in body["error"]["problems"][0]["expected"]


def test_files_read_by_tools_are_refused_with_their_position(tmp_path: Path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs_pack(9, 9))
    with pytest.raises(RulePackError) as refused:
        load_pack_file(path)
    # file:line:column, at the alias that went over the budget (the CLI prints this)
    assert re.match(rf"{re.escape(str(path))}:([2-9]|1[01]):\d+: the YAML grows past ",
                    str(refused.value))
