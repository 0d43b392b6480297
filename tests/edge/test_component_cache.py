"""The precompiled-component cache is keyed so a mismatched cache is never loaded."""

from __future__ import annotations

from pathlib import Path

from edge_module.runtime import component


def test_the_cache_key_changes_with_the_wasm_bytes(tmp_path: Path):
    a, b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    a.write_bytes(b"\0asm one")
    b.write_bytes(b"\0asm two")
    assert component.cache_key(a) != component.cache_key(b)


def test_the_cache_key_changes_with_the_engine_settings(tmp_path: Path, monkeypatch):
    wasm = tmp_path / "a.wasm"
    wasm.write_bytes(b"\0asm")
    before = component.cache_key(wasm)
    monkeypatch.setitem(component.ENGINE_SETTINGS, "consume_fuel", True)
    assert component.cache_key(wasm) != before


def test_the_cache_key_changes_with_the_wasmtime_version(tmp_path: Path, monkeypatch):
    wasm = tmp_path / "a.wasm"
    wasm.write_bytes(b"\0asm")
    before = component.cache_key(wasm)
    monkeypatch.setattr(component, "WASMTIME_VERSION", "0.0.1")
    assert component.cache_key(wasm) != before


def test_the_built_cache_file_is_named_by_its_key(wasm_runtime):
    build = Path(__file__).resolve().parents[2] / "build"
    key = component.cache_key(build / "decision-engine.wasm")
    assert (build / "cache" / f"decision-engine-{key}.cwasm").exists()


def test_a_damaged_cache_file_is_rebuilt_not_trusted(wasm_runtime, tmp_path: Path):
    build = Path(__file__).resolve().parents[2] / "build"
    wasm = build / "decision-engine.wasm"
    cache = tmp_path / "cache"
    cache.mkdir()
    damaged = cache / f"decision-engine-{component.cache_key(wasm)}.cwasm"
    damaged.write_bytes(b"not a precompiled component")
    engine = component.make_engine()
    loaded = component.load_component(engine, wasm, cache)
    assert loaded is not None and damaged.stat().st_size > 1_000_000


def test_a_build_holds_its_folder_for_itself_until_done(tmp_path: Path, monkeypatch):
    """Test workers building into one folder wait for each other (they used to stage into
    the same guest-src at once and fail with "No module named 'app'")."""
    import fcntl

    import pytest

    from edge_module import build as builder

    def try_lock() -> None:
        with open(tmp_path / ".build.lock", "w") as other:  # another open file: another lock
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)

    during = []

    def building(out: Path, force: bool) -> Path:
        with pytest.raises(BlockingIOError):
            try_lock()
        during.append(out)
        return out / "decision-engine.wasm"

    monkeypatch.setattr(builder, "_build", building)
    assert builder.build(tmp_path) == tmp_path / "decision-engine.wasm"
    assert during == [tmp_path]
    try_lock()  # released once the build is over
