"""The control plane's HTTP API (Flask test client; storage is real folders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control_plane import create_app
from edge_module.core import load_snapshot
from edge_module.edge_store import LocalFolderStore
from tests.servers import ROOT

PRICING_SOURCE = (ROOT / "rules" / "pricing-discount.yaml").read_text()
CHECKOUT_SOURCE = (ROOT / "rules" / "checkout-reminder.yaml").read_text()
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def client(tmp_path: Path):
    app = create_app({"DATA_DIR": str(tmp_path / "control"), "STORE_DIR": str(tmp_path / "store")})
    app.testing = True
    return app.test_client()


def test_validate_answers_a_summary_for_a_good_pack(client):
    resp = client.post("/v1/packs/validate", data=PRICING_SOURCE, headers=YAML)
    assert resp.status_code == 200
    assert resp.json == {"ok": True, "pack": "pricing-discount", "triggers": ["pricing-discount"]}


def test_validate_lists_every_problem_with_its_position(client):
    bad = ("pack: bad\ntriggers:\n  - id: a\n    when:\n      - scroll_depth: '>= 1.4'\n"
           "    action: {content: x, tier: sometimes}\n")
    resp = client.post("/v1/packs/validate?file=bad.yaml", data=bad, headers=YAML)
    assert resp.status_code == 422
    err = resp.json["error"]
    assert err["code"] == "invalid_pack"
    where = sorted((p["file"], p["line"], p["trigger"]) for p in err["problems"])
    assert where == [("bad.yaml", 5, "a"), ("bad.yaml", 6, "a")]


def test_malformed_yaml_is_a_422_with_a_position_not_a_500(client):
    resp = client.post("/v1/packs/validate", data="pack: [unclosed\n", headers=YAML)
    assert resp.status_code == 422
    problem = resp.json["error"]["problems"][0]
    assert problem["line"] >= 1 and problem["column"] >= 1


def test_submitting_stores_the_pack_and_lists_it(client):
    assert client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE).status_code == 201
    assert client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE).status_code == 200
    assert client.get("/v1/packs").json == {"packs": ["pricing-discount"]}
    assert client.get("/v1/packs/pricing-discount").get_data(as_text=True) == PRICING_SOURCE


def test_a_pack_must_be_submitted_under_its_own_name(client):
    resp = client.put("/v1/packs/other-name", data=PRICING_SOURCE)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "name_mismatch"


def test_a_trigger_id_clashing_with_another_pack_is_refused(client):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    clash = CHECKOUT_SOURCE.replace("id: checkout-reminder", "id: pricing-discount")
    resp = client.put("/v1/packs/checkout-reminder", data=clash)
    assert resp.status_code == 422
    assert "pricing-discount" in json.dumps(resp.json)


def test_publishing_writes_a_loadable_snapshot_and_a_manifest(client, tmp_path):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    client.put("/v1/packs/checkout-reminder", data=CHECKOUT_SOURCE)
    resp = client.post("/v1/snapshots")
    assert resp.status_code == 201
    assert resp.json["revision"] == 1 and resp.json["triggers"] == 2
    store = LocalFolderStore(tmp_path / "store")
    fetched = store.fetch_current()
    assert fetched is not None and load_snapshot(fetched.snapshot_text).revision == "1"
    assert fetched.manifest["object"] == f"snapshots/{fetched.manifest['sha256']}.json"


def test_revisions_increase_and_are_listed_newest_first(client):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    for _ in range(3):
        client.post("/v1/snapshots")
    assert [r["revision"] for r in client.get("/v1/snapshots").json["revisions"]] == [3, 2, 1]
    assert client.get("/v1/snapshots/current").json["revision"] == 3


def test_publishing_with_no_packs_is_a_clear_409(client):
    resp = client.post("/v1/snapshots")
    assert resp.status_code == 409 and resp.json["error"]["code"] == "no_packs"


def test_current_before_any_publish_is_404(client):
    assert client.get("/v1/snapshots/current").status_code == 404


def test_deleting_a_pack_removes_it(client):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    assert client.delete("/v1/packs/pricing-discount").status_code == 204
    assert client.delete("/v1/packs/pricing-discount").status_code == 404


def test_unknown_routes_and_bad_names_are_json_errors(client):
    resp = client.get("/v1/nothing")
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    resp = client.put("/v1/packs/Bad_Name", data=PRICING_SOURCE)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_name"


def test_a_pack_over_the_size_limit_is_413(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path / "c"), "STORE_DIR": str(tmp_path / "s"),
                      "MAX_PACK_BYTES": 1000})
    resp = app.test_client().post("/v1/packs/validate", data="#" * 2000)
    assert resp.status_code == 413 and resp.json["error"]["code"] == "request_entity_too_large"
