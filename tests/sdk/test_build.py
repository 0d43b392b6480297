"""The SDK build (sdk/build.py): two minified files named by their content, a manifest the
edge host serves them by, and the size budget the issue sets (under 8 KB min+gzip)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from sdk.build import SOURCE, build, builds

API = ("init", "track", "convert", "on", "consent", "shutdown")


def test_files_are_named_by_the_hash_of_their_bytes(tmp_path: Path) -> None:
    manifest = build(tmp_path)
    assert set(manifest["files"]) == {"nudge.js", "nudge.mjs"}
    for alias, name in manifest["files"].items():
        data = (tmp_path / name).read_bytes()
        stem, ext = alias.rsplit(".", 1)
        assert name == f"{stem}.{hashlib.sha256(data).hexdigest()[:8]}.{ext}"
        assert manifest["sizes"][alias]["min"] == len(data)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_a_rebuild_is_identical_and_a_changed_source_replaces_the_old_files(
        tmp_path: Path) -> None:
    first = build(tmp_path / "out")
    assert build(tmp_path / "out") == first
    changed = tmp_path / "nudge.js"
    changed.write_text(SOURCE.read_text() + "\n// changed\nexport function extra() {}\n")
    second = build(tmp_path / "out", changed)
    assert second["files"]["nudge.mjs"] != first["files"]["nudge.mjs"]
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == sorted([*second["files"].values(), "manifest.json"])


def test_the_module_exports_the_api_and_the_classic_script_installs_it() -> None:
    out = builds(SOURCE.read_text())
    for name in API:
        assert re.search(rf"export function {name}\(", out["nudge.mjs"]), name
        assert re.search(rf"\b{name}:{name}\b", out["nudge.js"]), name
    assert not re.search(r"^export\b|[;}\s]export\s", out["nudge.js"], re.MULTILINE)
    assert out["nudge.js"].startswith("/*!") or out["nudge.js"].startswith("(function(){")
    assert "w.nudge=f" in out["nudge.js"] and "w.nudge.q" in out["nudge.js"]


def test_both_builds_stay_within_the_size_budget(tmp_path: Path) -> None:
    sizes = build(tmp_path)["sizes"]
    assert all(s["gzip"] < 8 * 1024 for s in sizes.values()), sizes
