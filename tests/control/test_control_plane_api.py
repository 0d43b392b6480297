"""The control plane's HTTP API (Flask test client; storage is real folders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_module.core import load_snapshot
from edge_module.distribution.edge_store import LocalFolderStore
from tests.servers import EDGE_TOKEN, ROOT, control_client, served

PRICING_SOURCE = (ROOT / "rules" / "pricing-discount.yaml").read_text()
CHECKOUT_SOURCE = (ROOT / "rules" / "checkout-reminder.yaml").read_text()
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def client(tmp_path: Path):
    return control_client(tmp_path)


def test_validate_answers_a_summary_for_a_good_pack(client):
    resp = client.post("/v1/packs/validate", data=PRICING_SOURCE, headers=YAML)
    assert resp.status_code == 200
    assert resp.json == {"ok": True, "pack": "pricing-discount",
                         "triggers": ["pricing-discount"], "warnings": []}


UNCAPPED = ("pack: loose\ntriggers:\n  - id: loose-nudge\n    page: /pricing\n"
            "    when: [{dwell: \">= 9s\"}]\n    action: {content: discount-nudge-10}\n")


def test_validate_and_submit_answer_the_lint_findings_of_a_valid_pack(client):
    """A review: lint findings were only in the CLI and the console, not in the answer a
    script gets when it submits a pack."""
    for resp in (client.post("/v1/packs/validate?file=loose.yaml", data=UNCAPPED,
                             headers=YAML),
                 client.put("/v1/packs/loose", data=UNCAPPED)):
        assert resp.status_code in (200, 201)
        (warning,) = resp.json["warnings"]
        assert (warning["code"], warning["trigger"], warning["line"]) == \
            ("L004", "loose-nudge", 3)
        assert "per_session" in warning["message"]


def test_a_submitted_pack_is_warned_of_a_duplicate_in_another_pack(client):
    assert client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE).status_code == 201
    twin = PRICING_SOURCE.replace("pack: pricing-discount", "pack: twin").replace(
        "id: pricing-discount", "id: pricing-twin")
    resp = client.put("/v1/packs/twin", data=twin)
    assert resp.status_code == 201
    codes = {(w["code"], w["file"]) for w in resp.json["warnings"]}
    assert codes == {("L001", "twin.yaml")}


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
    fetched = served(tmp_path / "store")
    assert load_snapshot(fetched.snapshot_text).revision == "1"
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
    client = control_client(tmp_path, MAX_PACK_BYTES=1000)
    resp = client.post("/v1/packs/validate", data="#" * 2000)
    assert resp.status_code == 413 and resp.json["error"]["code"] == "pack_too_large"


def test_a_request_body_over_the_request_limit_is_413(tmp_path):
    client = control_client(tmp_path, token=EDGE_TOKEN, MAX_REQUEST_BYTES=1000)
    resp = client.post("/v1/fleet/report", json={"edge_id": "e" * 2000})
    assert resp.status_code == 413 and resp.json["error"]["code"] == "request_entity_too_large"


def test_a_pack_over_a_trigger_limit_is_413_with_the_position(tmp_path):
    client = control_client(tmp_path, MAX_TRIGGERS=1)
    two = PRICING_SOURCE + PRICING_SOURCE[PRICING_SOURCE.index("  - id:"):].replace(
        "id: pricing-discount", "id: second")
    resp = client.post("/v1/packs/validate", data=two)
    assert resp.status_code == 413
    [problem] = resp.json["error"]["problems"]
    first_trigger = PRICING_SOURCE[:PRICING_SOURCE.index("  - id:")].count("\n") + 1
    assert problem["line"] == first_trigger and "at most 1" in problem["expected"]


def test_a_405_names_the_allowed_methods(client):
    resp = client.post("/v1/keys")
    assert resp.status_code == 405 and resp.json["error"]["code"] == "method_not_allowed"
    assert resp.headers["Allow"].split(", ") and "GET" in resp.headers["Allow"]


@pytest.mark.parametrize("report", [{"edge_id": "e", "revision": {"x": 1}},
                                    {"edge_id": "e", "last_error": 7}, {"edge_id": ""},
                                    ["edge_id"]])
def test_a_fleet_report_outside_its_schema_is_400(tmp_path, report):
    client = control_client(tmp_path, token=EDGE_TOKEN)
    resp = client.post("/v1/fleet/report", json=report)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_report"
    assert control_client(tmp_path, app=client.application).get("/v1/fleet").json["edges"] == []


def test_rotating_a_key_answers_its_id_and_the_key_list(client):
    resp = client.post("/v1/keys/rotate")
    assert resp.status_code == 201
    assert resp.json["key_id"] in [k["key_id"] for k in resp.json["keys"]]


# Compile, rollback and the content catalog


def test_compile_answers_the_snapshot_of_a_pack_without_publishing_it(client):
    resp = client.post("/v1/compile", data=PRICING_SOURCE, headers=YAML)
    assert resp.status_code == 200
    assert load_snapshot(resp.get_data(as_text=True)).revision == "draft"
    assert client.get("/v1/snapshots").json == {"revisions": []}


def test_compile_of_a_bad_pack_is_a_422_with_every_problem(client):
    bad = PRICING_SOURCE.replace("dwell", "dwel").replace("tier: immediate", "tier: now")
    resp = client.post("/v1/compile?file=p.yaml", data=bad, headers=YAML)
    assert resp.status_code == 422
    assert [p["line"] for p in resp.json["error"]["problems"]] == [11, 15]


def test_rollback_serves_an_earlier_revision_again(client, tmp_path):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    client.post("/v1/snapshots")
    client.post("/v1/snapshots")
    resp = client.post("/v1/snapshots/rollback", json={"revision": 1})
    assert resp.status_code == 200
    assert (resp.json["revision"], resp.json["rollback_from"]) == (1, 2)
    fetched = served(tmp_path / "store")
    assert load_snapshot(fetched.snapshot_text).revision == "1"
    assert client.get("/v1/snapshots").json["revisions"][0]["rollback_from"] == 2


def test_rollback_to_an_unknown_revision_is_a_404(client):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    client.post("/v1/snapshots")
    resp = client.post("/v1/snapshots/rollback", json={"revision": 4})
    assert resp.status_code == 404
    assert resp.json["error"] == {"code": "unknown_revision",
                                  "message": "revision 4 was never published (published: 1)"}


def test_rollback_before_anything_is_published_is_a_409(client):
    resp = client.post("/v1/snapshots/rollback", json={"revision": 1})
    assert resp.status_code == 409 and resp.json["error"]["code"] == "not_published"


@pytest.mark.parametrize("body", [{}, {"revision": "1"}, {"revision": 0}, [1]])
def test_rollback_needs_a_revision_number(client, body):
    resp = client.post("/v1/snapshots/rollback", json=body)
    assert resp.status_code == 400 and resp.json["error"]["field"] == "revision"


@pytest.fixture
def catalog_client(tmp_path: Path):
    packs = tmp_path / "control" / "packs"
    packs.mkdir(parents=True)
    (packs / "catalog.yaml").write_text("content:\n  discount-nudge-10: the nudge\n")
    return control_client(tmp_path)


def test_a_content_id_missing_from_the_registrys_catalog_is_a_problem(catalog_client):
    resp = catalog_client.put("/v1/packs/checkout-reminder", data=CHECKOUT_SOURCE)
    assert resp.status_code == 422
    [problem] = resp.json["error"]["problems"]
    assert (problem["line"], problem["column"], problem["trigger"]) == (11, 16,
                                                                        "checkout-reminder")
    assert problem["suggestion"] is None


def test_a_problem_names_the_registrys_catalog_by_its_file_name(tmp_path):
    """An answer does not show the server's folders (an independent review saw the
    catalog's absolute path in a 422)."""
    packs = tmp_path / "control" / "packs"
    packs.mkdir(parents=True)
    (packs / "catalog.yaml").write_text(
        "content:\n" + "".join(f"  nudge-{i}: n\n" for i in range(40)))
    resp = control_client(tmp_path).put("/v1/packs/checkout-reminder", data=CHECKOUT_SOURCE)
    assert resp.status_code == 422
    [problem] = resp.json["error"]["problems"]
    assert problem["expected"] == "a content id listed in catalog.yaml"
    assert str(tmp_path) not in resp.get_data(True)


def test_publishing_compiles_the_registrys_catalog_variants_in(tmp_path):
    packs = tmp_path / "control" / "packs"
    packs.mkdir(parents=True)
    (packs / "catalog.yaml").write_text(
        "content:\n  discount-nudge-10:\n    description: the nudge\n"
        "    fields: {title: Ten off}\n"
        "    variants: [{name: de, when: {locale: de}, fields: {title: Zehn weniger}}]\n")
    client = control_client(tmp_path)
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    assert client.post("/v1/snapshots").status_code == 201
    content = json.loads(served(tmp_path / "store").snapshot_text)["content"]
    assert [v["name"] for v in content["discount-nudge-10"]["variants"]] == ["de"]


def test_the_catalog_is_not_listed_as_a_pack(catalog_client):
    catalog_client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    assert catalog_client.get("/v1/packs").json == {"packs": ["pricing-discount"]}


# -- access control -----------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("put", "/v1/packs/pricing-discount"),
                                         ("delete", "/v1/packs/pricing-discount"),
                                         ("post", "/v1/snapshots"),
                                         ("post", "/v1/snapshots/rollback"),
                                         ("post", "/v1/keys/rotate")])
def test_every_write_needs_a_publisher_token(tmp_path, method, path):
    anonymous = control_client(tmp_path, token=None)
    resp = getattr(anonymous, method)(path, data=PRICING_SOURCE)
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_a_wrong_token_is_forbidden_and_not_logged(tmp_path, caplog):
    client = control_client(tmp_path, token="guessed-token")
    resp = client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
    assert "refused PUT /v1/packs/pricing-discount" in caplog.text
    assert "guessed-token" not in caplog.text


def test_an_edge_token_cannot_publish(tmp_path):
    client = control_client(tmp_path, token=EDGE_TOKEN)
    assert client.post("/v1/snapshots").status_code == 403


def test_reads_need_no_token_but_checks_do(tmp_path):
    anonymous = control_client(tmp_path, token=None)
    assert anonymous.get("/v1/snapshots").status_code == 200
    for path in ("/v1/packs/validate", "/v1/compile"):
        resp = anonymous.post(path, data=PRICING_SOURCE)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"


def test_an_author_token_validates_and_compiles_but_cannot_publish(tmp_path):
    author = control_client(tmp_path, token="author-token-for-tests",
                            AUTHOR_TOKENS="author-token-for-tests")
    assert author.post("/v1/packs/validate", data=PRICING_SOURCE).status_code == 200
    assert author.post("/v1/compile", data=PRICING_SOURCE).status_code == 200
    assert author.put("/v1/packs/pricing-discount", data=PRICING_SOURCE).status_code == 403


def test_with_no_token_configured_writes_are_refused(tmp_path):
    client = control_client(tmp_path, PUBLISHER_TOKENS="")
    assert client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE).status_code == 403


# -- signing and fleet status ---------------------------------------------------------------

def test_a_published_snapshot_is_signed_by_the_active_key(client, tmp_path):
    from edge_module.distribution.signing import TrustedKeys

    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    published = client.post("/v1/snapshots").json
    store = LocalFolderStore(tmp_path / "store")
    data = store.get_object(published["object"])
    TrustedKeys(tmp_path / "trusted").verify(data, published["signature"], published["key_id"])


def test_rotating_the_key_signs_new_revisions_with_the_new_key(client, tmp_path):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    first = client.post("/v1/snapshots").json["key_id"]
    rotated = client.post("/v1/keys/rotate")
    assert rotated.status_code == 201 and rotated.json["key_id"] != first
    assert client.post("/v1/snapshots").json["key_id"] == rotated.json["key_id"]
    keys = {k["key_id"]: k for k in client.get("/v1/keys").json["keys"]}
    assert keys[first]["trusted"] and not keys[first]["active"]


def test_publishing_without_a_signing_key_is_a_clear_409(tmp_path):
    client = control_client(tmp_path, signing_key=False)
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    resp = client.post("/v1/snapshots")
    assert resp.status_code == 409 and "keys generate" in resp.json["error"]["message"]


def test_edges_report_and_the_fleet_view_shows_who_is_behind(client, tmp_path):
    client.put("/v1/packs/pricing-discount", data=PRICING_SOURCE)
    for _ in range(3):
        client.post("/v1/snapshots")
    edge = control_client(tmp_path, token=EDGE_TOKEN, app=client.application)
    assert edge.post("/v1/fleet/report", json={"edge_id": "pop-a", "revision": "3"}) \
        .status_code == 204
    assert edge.post("/v1/fleet/report", json={"edge_id": "pop-b", "revision": "1",
                                                "last_error": "edge store unreachable"}) \
        .status_code == 204
    view = client.get("/v1/fleet").json
    assert view["current_revision"] == 3
    rows = {e["edge_id"]: e for e in view["edges"]}
    assert (rows["pop-a"]["behind"], rows["pop-a"]["in_sync"]) == (0, True)
    assert (rows["pop-b"]["behind"], rows["pop-b"]["last_error"]) == (2, "edge store unreachable")


def test_a_report_needs_an_edge_token_and_an_edge_id(tmp_path):
    publisher = control_client(tmp_path)
    assert publisher.post("/v1/fleet/report", json={"edge_id": "x"}).status_code == 403
    edge = control_client(tmp_path, token=EDGE_TOKEN)
    assert edge.post("/v1/fleet/report", json={"revision": "1"}).status_code == 400


def test_a_token_after_a_tab_is_a_token(tmp_path):
    from tests.servers import PUBLISHER_TOKEN

    client = control_client(tmp_path, token=None)
    assert client.post("/v1/snapshots/rollback", json={"revision": 1},
                       headers={"Authorization": f"Bearer\t{PUBLISHER_TOKEN}"}).status_code != 401


@pytest.mark.parametrize(("body", "content_type", "status", "code", "says"), [
    (b'{"edge_id": "e", "decisions": ' + b"7" * 5000 + b"}", "application/json", 400,
     "invalid_json", "digits"),  # an object: it was refused as "body must be object"
    (b'{"edge_id": "e",', "application/json", 400, "invalid_json", "line 1 column 17"),
    (b"\xff\xfe{", "application/json", 400, "invalid_json", "not JSON"),
    (b'{"edge_id": "e"}', "application/x-www-form-urlencoded", 415,
     "unsupported_media_type", "Content-Type: application/json"),  # curl -d's default
])
def test_a_body_that_is_not_json_is_told_why(tmp_path, body, content_type, status, code,
                                             says):
    client = control_client(tmp_path, token=EDGE_TOKEN)
    resp = client.post("/v1/fleet/report", data=body, content_type=content_type)
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["code"] == code and says in resp.json["error"]["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_report_with_a_number_json_has_not_is_refused_and_the_fleet_stays_json(tmp_path,
                                                                               constant):
    """`{"channels": {"x": Infinity}}` was kept, and `GET /v1/fleet` then served it: no
    browser or strict client could read the fleet view at all."""
    client = control_client(tmp_path, token=EDGE_TOKEN)
    body = '{"edge_id": "e", "channels": {"x": %s}}' % constant
    resp = client.post("/v1/fleet/report", data=body, content_type="application/json")
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_json"
    assert constant.lstrip("-") in resp.json["error"]["message"]
    fleet = control_client(tmp_path, app=client.application).get("/v1/fleet")
    assert json.loads(fleet.get_data(as_text=True), parse_constant=lambda c: 1 / 0) == \
        fleet.json and fleet.json["edges"] == []
