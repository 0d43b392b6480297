"""What `./build.sh edge-function` bakes in from the edge store: only a snapshot an edge host
would serve (signed by a trusted key, the object its signed entry names). It baked in
whatever the manifest pointed at, so anyone able to write to the store shipped content
nobody signed."""

from __future__ import annotations

import json

import pytest

from control_plane.distribution.keys import KeyRing
from control_plane.rulepack import compile_snapshot, load_pack_set
from edge_module.edge_function.build import RULES, snapshot_text
from tests.servers import TRUSTED_KEYS, put_snapshot


@pytest.fixture(scope="module")
def snapshot() -> str:
    packs = load_pack_set(RULES, check_content=False).packs
    return json.dumps(compile_snapshot(packs, "7", 0), separators=(",", ":"))


def test_a_snapshot_signed_by_a_trusted_key_is_baked_in(tmp_path, snapshot):
    put_snapshot(tmp_path / "store", snapshot, 7)
    text, where = snapshot_text(None, str(tmp_path / "store"), str(TRUSTED_KEYS))
    assert json.loads(text) == json.loads(snapshot)
    assert where.startswith("revision 7 published in") and "signed by a trusted key" in where


@pytest.mark.parametrize("how, says", [
    ({"key": None}, "is not signed"),
    ({"sign_entry": False}, "manifest entry is not signed"),
    ({"sign_bytes": b"something else"}, "bad signature"),
    ({"object_bytes": b'{"revision": "666-unsigned"}'}, "does not match the manifest"),
])
def test_a_snapshot_an_edge_would_refuse_is_not_baked_in(tmp_path, snapshot, how, says):
    put_snapshot(tmp_path / "store", snapshot, 7, **how)
    with pytest.raises(SystemExit) as err:
        snapshot_text(None, str(tmp_path / "store"), str(TRUSTED_KEYS))
    assert "cannot be baked in" in str(err.value) and says in str(err.value)


def test_a_key_the_build_does_not_trust_is_refused(tmp_path, snapshot):
    other = KeyRing(tmp_path / "private", tmp_path / "trusted").ensure()
    put_snapshot(tmp_path / "store", snapshot, 7, key=other)
    with pytest.raises(SystemExit, match="which this edge does not trust"):
        snapshot_text(None, str(tmp_path / "store"), str(TRUSTED_KEYS))
    text, _ = snapshot_text(None, str(tmp_path / "store"), str(tmp_path / "trusted"))
    assert json.loads(text)["revision"] == "7"


def test_with_nothing_published_the_readme_packs_are_compiled(tmp_path):
    text, where = snapshot_text(None, str(tmp_path / "store"), str(TRUSTED_KEYS))
    assert "nothing published" in where
    assert {t["id"] for t in json.loads(text)["triggers"]} >= {"pricing-discount"}
