"""Issue #14: the edge host serves the browser SDK's build (`GET /sdk/<file>`, from
`$EDGE_SDK_DIR/manifest.json`): hashed names cached for a year, aliases for five minutes,
revalidated by ETag, loadable from any page; nothing else under /sdk/. Against a real host,
on both servers; the manifest is built here, not by the SDK's build."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_module.http.sdk_files import IMMUTABLE, SdkFiles, etag_matches
from loadtest.stack import EdgeStack, edge_stack
from tests.edge.raw_http import HOSTILE, request
from tests.servers import BUILD

pytestmark = pytest.mark.skipif(not (BUILD / "decision-engine.wasm").exists(),
                                reason="needs the component: python -m edge_module.build")
SERVERS = ("loop", "granian", "waitress")
SCRIPT = b"(function(){window.nudge=window.nudge||function(){};})();\n"
MODULE = b"export function init(){}\n"


def hashed_name(stem: str, body: bytes, ext: str) -> str:
    return f"{stem}.{hashlib.sha256(body).hexdigest()[:8]}.{ext}"


def sdk_build(folder: Path, files: dict[str, bytes] | None = None,
              manifest: object = None) -> dict[str, str]:
    """An SDK build as `sdk.build` writes it (or with the given manifest); its file map."""
    folder.mkdir(parents=True, exist_ok=True)
    listed = {}
    for alias, body in (files or {"nudge.js": SCRIPT, "nudge.mjs": MODULE}).items():
        stem, ext = alias.split(".")
        listed[alias] = hashed_name(stem, body, ext)
        (folder / listed[alias]).write_bytes(body)
    (folder / "manifest.json").write_text(json.dumps(
        {"files": listed, "sizes": {}} if manifest is None else manifest))
    return listed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("sdk")
    return folder, sdk_build(folder)


@pytest.fixture(scope="module", params=SERVERS)
def stack(request: pytest.FixtureRequest, built) -> Iterator[EdgeStack]:
    with edge_stack("shipped", env_overrides={"EDGE_SERVER": request.param,
                                              "EDGE_SDK_DIR": str(built[0])}) as running:
        yield running


# -- serving --------------------------------------------------------------------------------

def test_a_hashed_file_is_served_immutable_for_a_year(stack, built):
    answer = request(stack.url, "GET", f"/sdk/{built[1]['nudge.js']}")
    assert answer.status == 200 and answer.body == SCRIPT
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.headers["etag"].startswith('"')


def test_an_alias_serves_the_hashed_files_bytes_for_five_minutes(stack, built):
    for alias, body in (("nudge.js", SCRIPT), ("nudge.mjs", MODULE)):
        answer = request(stack.url, "GET", f"/sdk/{alias}")
        hashed = request(stack.url, "GET", f"/sdk/{built[1][alias]}")
        assert answer.status == 200 and answer.body == body == hashed.body
        assert answer.headers["cache-control"] == "public, max-age=300"
        assert answer.headers["etag"] == hashed.headers["etag"]


def test_any_page_may_load_the_files_as_modules(stack, built):
    answer = request(stack.url, "GET", f"/sdk/{built[1]['nudge.mjs']}", headers={
        "Origin": HOSTILE})  # the Origin rule is for the decision API, not for the SDK
    assert answer.status == 200 and answer.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_a_current_copy_is_answered_304_without_its_bytes(stack, if_none_match):
    etag = request(stack.url, "GET", "/sdk/nudge.js").headers["etag"]
    answer = request(stack.url, "GET", "/sdk/nudge.js",
                     headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert answer.status == 304 and answer.body == b""
    assert answer.headers["etag"] == etag
    assert answer.headers["cache-control"] == "public, max-age=300"


def test_a_stale_copy_gets_the_file(stack):
    answer = request(stack.url, "GET", "/sdk/nudge.js", headers={"If-None-Match": '"stale"'})
    assert answer.status == 200 and answer.body == SCRIPT


@pytest.mark.parametrize("path", [
    "/sdk/", "/sdk", "/sdk/nudge.css", "/sdk/nudge.js/x",
    "/sdk/../manifest.json", "/sdk/%2e%2e/manifest.json", "/sdk/..%2fmanifest.json",
    "/sdk//nudge.js", "/sdk/NUDGE.JS"])
def test_anything_else_under_sdk_is_a_json_404(stack, path):
    answer = request(stack.url, "GET", path)
    assert answer.status == 404 and answer.json()["error"]["code"] == "not_found"


def test_the_manifest_names_each_hashed_file_with_its_integrity(stack, built):
    """docs/sdk.md sends sites to /sdk/manifest.json to pin a hashed name with subresource
    integrity; it answered 404."""
    import base64

    answer = request(stack.url, "GET", "/sdk/manifest.json")
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "public, max-age=300"
    listing = answer.json()
    assert listing["files"] == built[1]
    for alias, hashed in built[1].items():
        body = request(stack.url, "GET", f"/sdk/{hashed}").body
        assert listing["integrity"][hashed] == \
            "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


def test_healthz_names_the_files_served(stack, built):
    health = request(stack.url, "GET", "/healthz").json()
    assert health["sdk"] == {"available": True, "files": built[1], "error": None}


@pytest.mark.parametrize("server", SERVERS)
def test_without_a_build_the_host_starts_and_says_the_sdk_is_unavailable(tmp_path, server):
    with edge_stack("shipped", env_overrides={"EDGE_SERVER": server,
                                              "EDGE_SDK_DIR": str(tmp_path)}) as running:
        health = request(running.url, "GET", "/healthz")
        assert health.status == 200
        assert health.json()["sdk"]["available"] is False
        assert "manifest.json not found" in health.json()["sdk"]["error"]
        answer = request(running.url, "GET", "/sdk/nudge.js")
        assert answer.status == 404 and answer.json()["error"]["code"] == "not_found"


# -- reading the build ----------------------------------------------------------------------

def test_files_are_read_once_at_start_up(tmp_path):
    sdk_build(tmp_path)
    files = SdkFiles.load(tmp_path)
    for path in tmp_path.iterdir():
        path.unlink()
    assert files.files["nudge.js"].body == SCRIPT
    assert files.files["nudge.js"].cache_control == "public, max-age=300"


def test_a_file_whose_bytes_do_not_match_its_name_is_not_served(tmp_path):
    listed = sdk_build(tmp_path)
    (tmp_path / listed["nudge.js"]).write_bytes(SCRIPT + b"// changed after the build\n")
    files = SdkFiles.load(tmp_path)
    assert files.files == {} and "rebuild the SDK" in (files.error or "")


@pytest.mark.parametrize("manifest, error", [
    ({"files": {"nudge.js": "../secret.12345678.js"}}, "not a content-hashed file name"),
    ({"files": {"../nudge.js": "nudge.12345678.js"}}, "not an SDK file name"),
    ({"files": {"nudge.js": "nudge.js"}}, "not a content-hashed file name"),
    ({"files": {"nudge.js": "nudge.12345678.js"}}, "unreadable"),
    ({"files": {}}, "expected"),
    ([], "expected"),
])
def test_a_manifest_naming_anything_but_built_files_is_refused(tmp_path, manifest, error):
    sdk_build(tmp_path, manifest=manifest)
    files = SdkFiles.load(tmp_path)
    assert files.files == {} and error in (files.error or "")
    assert files.status()["available"] is False


def test_hashed_names_are_the_immutable_ones(tmp_path):
    listed = sdk_build(tmp_path)
    files = SdkFiles.load(tmp_path).files
    assert {name for name, f in files.items() if f.cache_control == IMMUTABLE} == set(
        listed.values())


def test_if_none_match_compares_weakly():
    assert etag_matches('W/"a1"', '"a1"') and etag_matches('"b2", "a1"', '"a1"')
    assert etag_matches("*", '"a1"') and not etag_matches('"a2"', '"a1"')
