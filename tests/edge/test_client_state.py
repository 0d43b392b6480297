"""EDGE_SESSION_STORE=client over real HTTP: the visitor carries the session's state in a
signed token, and a session so carried decides exactly as one kept in the memory store."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from control_plane.rulepack import compile_snapshot, load_pack_set
from edge_module.state_token import StateTokens, parse_keys
from tests.event_strategies import URLS, valid_events
from tests.factories import T0
from tests.servers import BUILD, ROOT, put_snapshot, running_edge

KEYS = f"k2:{'22' * 32},k1:{'11' * 32}"
SHIPPED = [ROOT / "rules" / "pricing-discount.yaml", ROOT / "rules" / "checkout-reminder.yaml"]
# the README's pricing scenario: page view, scroll to 0.8 at +1 s, asked at +3.2 s
README_EVENTS = [{"type": "page_view", "ts_ms": T0, "url": "/pricing"},
                 {"type": "scroll", "ts_ms": T0 + 1000, "depth": 0.8, "y": 1400}]
# what differs between two answers to the same decision
PER_ANSWER = ("decision_id", "outcome_token", "latency_us", "component_us", "state_token")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("client-state") / "store"
    packs = load_pack_set(SHIPPED, check_content=False).packs
    put_snapshot(store, json.dumps(compile_snapshot(packs, "1", 0)), 1)
    return store


@pytest.fixture(scope="module")
def client_edge(store_dir):
    with running_edge(store_dir, session_store="client", state_token_keys=KEYS) as server:
        yield server


@pytest.fixture(scope="module")
def memory_edge(store_dir):
    with running_edge(store_dir) as server:
        yield server


def ask(session: str, at: int, events=(), token: str | None = None, url="/pricing") -> dict:
    req = {"session_id": session, "now_ms": T0 + at, "context": {"url": url},
           "events": list(events)}
    if token is not None:
        req["state_token"] = token
    return req


def decided(edge, request: dict) -> dict:
    status, body, _ = edge.decide(request)
    assert status == 200, body
    return body


def test_the_readme_scenario_nudges_then_the_carried_cap_holds(client_edge):
    first = decided(client_edge, ask("c-1", 3200, README_EVENTS))
    assert [a["trigger"] for a in first["actions"]] == ["pricing-discount"]
    assert first["state_token"].startswith("v1.k2.")
    again = decided(client_edge, ask("c-1", 4000, token=first["state_token"]))
    assert again["actions"] == []  # the cap travelled in the token


def test_without_the_token_the_same_session_starts_over(client_edge):
    decided(client_edge, ask("c-2", 3200, README_EVENTS))
    fresh = decided(client_edge, ask("c-2", 4000, README_EVENTS))
    assert [a["trigger"] for a in fresh["actions"]] == ["pricing-discount"]


def test_nothing_is_kept_at_the_edge(client_edge):
    decided(client_edge, ask("c-3", 3200, README_EVENTS))
    assert len(client_edge.host.app.sessions) == 0


def refusal(edge, request: dict) -> dict:
    status, body, _ = edge.decide(request)
    assert status == 400, body
    return body["error"]


def test_a_tampered_token_is_refused_naming_the_field(client_edge):
    token = decided(client_edge, ask("c-4", 1500, README_EVENTS))["state_token"]
    version, kid, issued, payload, mac = token.split(".")
    payload = ("B" if payload[0] == "A" else "A") + payload[1:]
    error = refusal(client_edge, ask("c-4", 3200, token=f"{version}.{kid}.{issued}.{payload}.{mac}"))
    assert error["code"] == "invalid_state_token" and error["field"] == "state_token"


def test_a_token_of_another_session_is_refused(client_edge):
    token = decided(client_edge, ask("c-5", 1500, README_EVENTS))["state_token"]
    assert refusal(client_edge, ask("c-6", 3200, token=token))["code"] == "invalid_state_token"


def test_a_token_of_an_unknown_key_is_refused(client_edge):
    foreign = StateTokens([("k9", b"\x09" * 32)]).seal("c-7", None, T0)
    assert refusal(client_edge, ask("c-7", 3200, token=foreign))["code"] == \
        "invalid_state_token"


def test_a_token_that_is_not_a_string_is_refused(client_edge):
    assert refusal(client_edge, ask("c-8", 3200, token=12))["field"] == "state_token"  # type: ignore[arg-type]


def test_an_expired_token_starts_a_fresh_session(client_edge):
    token = decided(client_edge, ask("c-9", 3200, README_EVENTS))["state_token"]
    keys = StateTokens(parse_keys(KEYS))
    state = keys.open(token, "c-9", int(token.split(".")[2]))
    # the same state, sealed one TTL and a millisecond ago (as if the visitor came back late)
    old = keys.seal("c-9", state, int(token.split(".")[2]) - 1_800_001)
    fresh = decided(client_edge, ask("c-9", 4000, README_EVENTS, token=old))
    assert [a["trigger"] for a in fresh["actions"]] == ["pricing-discount"]


def test_a_token_from_the_retired_key_is_still_accepted(client_edge):
    state_token = decided(client_edge, ask("c-10", 3200, README_EVENTS))["state_token"]
    keys = StateTokens(parse_keys(KEYS))
    issued = int(state_token.split(".")[2])
    state = keys.open(state_token, "c-10", issued)
    by_k1 = StateTokens(parse_keys(KEYS)[1:]).seal("c-10", state, issued)
    assert decided(client_edge, ask("c-10", 4000, token=by_k1))["actions"] == []


def test_client_mode_without_keys_is_refused_at_start():
    done = subprocess.run([sys.executable, "-m", "edge_module.host.server"], check=False,
                          env={**os.environ, "EDGE_SESSION_STORE": "client",
                               "EDGE_COMPONENT": str(BUILD / "decision-engine.wasm")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "needs EDGE_STATE_TOKEN_KEYS" in done.stderr
    assert "Traceback" not in done.stderr


def comparable(answer: dict) -> dict:
    kept = {k: v for k, v in answer.items() if k not in PER_ANSWER}
    kept["actions"] = [{k: v for k, v in a.items() if k != "outcome_token"}
                       for a in answer["actions"]]
    return kept


_sessions = itertools.count()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.tuples(st.lists(valid_events, max_size=12), st.integers(0, 20_000)),
                        min_size=1, max_size=5),
       url=st.sampled_from(URLS + ["/cart"]))
def test_a_carried_session_decides_as_the_memory_store_does(client_edge, memory_edge, batches,
                                                            url):
    session = f"parity-{next(_sessions)}"
    token = None
    fired = False
    now = 0
    for evs, at in batches:
        now = max(now, at)
        kept = decided(memory_edge, ask(session, now, evs, url=url))
        carried = decided(client_edge, ask(session, now, evs, token, url=url))
        token = carried["state_token"]
        assert comparable(carried) == comparable(kept)
        fired = fired or bool(kept["actions"])
        now = max(now, max((e["ts_ms"] - T0 for e in evs), default=now))
    event("an action fired" if fired else "nothing fired")


def test_a_state_too_large_for_a_token_starts_the_session_over():
    from edge_module.http.app import _seal

    small = StateTokens(parse_keys(KEYS), max_bytes=200)
    token = _seal(small, "c-11", os.urandom(1024), T0)
    assert small.open(token, "c-11", T0) is None
