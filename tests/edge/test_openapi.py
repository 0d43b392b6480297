"""The control plane's OpenAPI 3.1 document describes every route it serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from control_plane import create_app


@pytest.fixture
def app(tmp_path: Path):
    return create_app({"DATA_DIR": str(tmp_path / "control"), "STORE_DIR": str(tmp_path / "s")})


@pytest.fixture
def document(app) -> dict[str, Any]:
    resp = app.test_client().get("/openapi.json")
    assert resp.status_code == 200
    return resp.json


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_the_document_is_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"


def test_every_registered_route_and_method_is_described(app, document):
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("console."):
            continue  # the console's HTML pages are not part of the API
        described = document["paths"].get(openapi_path(rule.rule), {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if method.lower() not in described:
                missing.append(f"{method} {rule.rule}")
    assert missing == []


def test_every_described_route_is_registered(app, document):
    registered = {openapi_path(r.rule) for r in app.url_map.iter_rules()}
    assert set(document["paths"]) <= registered


def test_every_reference_resolves_within_the_document(document):
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + [
                r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(document):
        node = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, ref
            node = node[part]
