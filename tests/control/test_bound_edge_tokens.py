"""Edge tokens bound to one edge id (CONTROL_BOUND_EDGE_TOKENS): a holder speaks for that
edge only, in fleet reports and in telemetry records; shared edge tokens keep speaking for
any edge. (Flask's test client against the real app, real telemetry store.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control_plane import create_app
from control_plane.config import ConfigError
from tests.factories import T0
from tests.servers import EDGE_TOKEN, control_client, control_config

POP_A = "token-of-pop-a-0123456789"
POP_B = "token-of-pop-b-9876543210=="  # a token may hold `=`; an id may not
BOUND = f"pop-a={POP_A}, pop-b={POP_B}"


def client(tmp_path: Path, token: str) -> object:
    return control_client(tmp_path, token=token, BOUND_EDGE_TOKENS=BOUND)


def record(i: int, edge_id: str | None) -> dict:
    rec = {"kind": "decision", "id": f"d{i}", "session": f"s{i}", "ts_ms": T0, "fired": []}
    if edge_id is not None:
        rec["edge_id"] = edge_id
    return rec


def send(edge: object, records: list[dict]) -> dict:
    resp = edge.post("/v1/telemetry", data="\n".join(json.dumps(r) for r in records))
    assert resp.status_code == 200, resp.json
    return resp.json


def test_a_bound_token_reports_for_its_own_edge_only(tmp_path):
    pop_a = client(tmp_path, POP_A)
    assert pop_a.post("/v1/fleet/report", json={"edge_id": "pop-a", "revision": "1"}
                      ).status_code == 204
    pop_b = client(tmp_path, POP_B)
    assert pop_b.post("/v1/fleet/report", json={"edge_id": "pop-b", "revision": "1",
                                                "last_error": None}).status_code == 204
    assert pop_a.post("/v1/fleet/report", json={"edge_id": "pop-a/w1", "revision": "1"}
                      ).status_code == 204
    for made_up in ("pop-a/w0", "pop-a/w65", "pop-a/anything"):  # no crowding the fleet out
        assert pop_a.post("/v1/fleet/report", json={"edge_id": made_up, "revision": "1"}
                          ).status_code == 403
    resp = pop_a.post("/v1/fleet/report", json={"edge_id": "pop-b", "revision": "0",
                                                "last_error": "made up"})
    assert resp.status_code == 403 and resp.json["error"]["code"] == "edge_id_not_yours"
    assert "pop-a" in resp.json["error"]["message"]


def test_a_bound_tokens_records_of_another_edge_are_refused_one_by_one(tmp_path):
    pop_a = client(tmp_path, POP_A)
    answer = send(pop_a, [record(0, "pop-a"), record(1, "pop-b"), record(2, None),
                          record(3, "pop-a/w2"), record(4, "pop-ab"), record(5, "pop-b/w1"),
                          record(6, "pop-a/x"), record(7, "pop-a/w65"), record(8, "pop-a/w02"),
                          record(9, "pop-a/w" + "1" * 5000)])  # not a number to convert
    assert answer["accepted"] == 2  # its own, and a worker's of its own (EDGE_WORKERS)
    refused = {r["index"]: r["code"] for r in answer["rejected"]}
    assert refused == dict.fromkeys((1, 2, 4, 5, 6, 7, 8, 9), "edge_id_not_yours")
    publisher = control_client(tmp_path, BOUND_EDGE_TOKENS=BOUND)
    assert publisher.get("/v1/telemetry/counts?edge_id=pop-a").json["decisions"] == 1
    assert publisher.get("/v1/telemetry/counts?edge_id=pop-a/w2").json["decisions"] == 1
    assert publisher.get("/v1/telemetry/counts?edge_id=pop-b").json["decisions"] == 0


def test_a_shared_token_still_speaks_for_any_edge(tmp_path):
    shared = client(tmp_path, EDGE_TOKEN)
    assert shared.post("/v1/fleet/report", json={"edge_id": "pop-b", "revision": "1"}
                       ).status_code == 204
    assert send(shared, [record(0, "pop-a"), record(1, "pop-b")])["accepted"] == 2


def test_a_token_listed_both_shared_and_bound_is_shared(tmp_path):
    both = control_client(tmp_path, token=POP_A, EDGE_TOKENS=f"{EDGE_TOKEN},{POP_A}",
                          BOUND_EDGE_TOKENS=BOUND)
    assert both.post("/v1/fleet/report", json={"edge_id": "pop-b", "revision": "1"}
                     ).status_code == 204


def test_bound_tokens_are_not_publisher_tokens(tmp_path):
    pop_a = client(tmp_path, POP_A)
    assert pop_a.get("/v1/telemetry/counts").status_code == 403


@pytest.mark.parametrize("setting", ["secret-without-id", "=secret", "pop-a=",
                                     "pop-a=secret,pop-a=secret2",
                                     "pop-a=secret,pop-b=secret",  # one token, two edges
                                     "pop-a=secret1;pop-b=secret2",  # a typo for ","
                                     "eu=secret1,eu/fra=secret2"])  # eu would speak for it
def test_a_malformed_setting_is_refused_at_start_without_showing_a_token(tmp_path, setting):
    with pytest.raises(ConfigError, match="CONTROL_BOUND_EDGE_TOKENS") as refused:
        create_app(control_config(tmp_path, BOUND_EDGE_TOKENS=setting))
    assert "secret" not in str(refused.value)


def test_an_edge_host_with_a_bound_token_ships_its_records_and_reports(tmp_path):
    """A real edge host (EDGE_ID=pop-a, its bound token) and a real control plane: every
    decision and outcome record is stored under pop-a, and its fleet row is there."""
    import sqlite3

    from edge_module.host.config import EdgeConfig
    from tests.control_server import ControlServer
    from tests.edge.test_telemetry import engaged, outcome, publish_rules
    from tests.servers import http, running_edge, wait_for

    publish_rules(tmp_path / "store")
    control = ControlServer(control_config(tmp_path, BOUND_EDGE_TOKENS=BOUND))
    try:
        edge_id = EdgeConfig.from_env({"EDGE_ID": "pop-a"}).edge_id  # as documented
        with running_edge(tmp_path / "store", control_url=control.url, token=POP_A,
                          edge_id=edge_id, telemetry_interval_s=0.05) as edge:
            for n in range(5):
                status, body, _ = edge.decide(engaged(f"s{n}"))
                assert status == 200
                assert http("POST", edge.url + "/v1/outcome",
                            outcome(f"s{n}", decided=body))[0] == 200
            db = Path(control.config["DATA_DIR"]) / "telemetry.sqlite3"

            def stored() -> list[str]:
                with sqlite3.connect(db) as conn:
                    return [e for (e,) in conn.execute(
                        "SELECT edge_id FROM decisions UNION ALL "
                        "SELECT edge_id FROM outcomes")]
            wait_for(lambda: len(stored()) == 10, what="every record stored")
            assert set(stored()) == {"pop-a"}
            tel = http("GET", edge.url + "/healthz")[1]["telemetry"]
            assert tel["dropped"] == 0
    finally:
        control.stop()


@pytest.mark.parametrize(("env", "named"), [
    ({"EDGE_ID": "pop-a"}, "pop-a"), ({"EDGE_EDGE_ID": "pop-a"}, "pop-a"),
    ({"EDGE_ID": "", "EDGE_EDGE_ID": "pop-a"}, "pop-a"),  # an empty template variable
    ({"EDGE_ID": "pop-a", "EDGE_EDGE_ID": "pop-b"}, "pop-a")])
def test_the_edge_hosts_name_is_edge_id_as_documented(env, named):
    from edge_module.host.config import EdgeConfig

    assert EdgeConfig.from_env(env).edge_id == named
