"""Builds the Wasm component with componentize-py, then its precompiled host cache.

`python -m edge_module.build [--out build]`. Offline. Only the decision core and the guest
entry are staged into the component: componentize-py bundles every file on its path.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
WORLD = "decision-engine"


def _sources() -> list[Path]:
    files = [PACKAGE / "__init__.py", PACKAGE / "guest" / "app.py"]
    files += sorted((PACKAGE / "core").glob("*.py"))
    files += sorted((PACKAGE / "wit").glob("*.wit"))
    return files


def source_digest() -> str:
    """Hash of everything that goes into the component: unchanged sources skip the build."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stage(dest: Path) -> None:
    """Lay out the guest's Python path: `app.py` and the `edge_module.core` package."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "edge_module" / "core").mkdir(parents=True)
    shutil.copy(PACKAGE / "__init__.py", dest / "edge_module" / "__init__.py")
    for src in (PACKAGE / "core").glob("*.py"):
        shutil.copy(src, dest / "edge_module" / "core" / src.name)
    shutil.copy(PACKAGE / "guest" / "app.py", dest / "app.py")


def _componentize_py() -> str:
    """The componentize-py executable beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    found = str(beside) if beside.exists() else shutil.which("componentize-py")
    if found is None:
        raise SystemExit("componentize-py not found: install the project (pip install -e .)")
    return found


@contextmanager
def _one_build_at_a_time(out: Path) -> Iterator[None]:
    """An exclusive lock on `out`: test workers (pytest-xdist), or a test run beside
    `./build.sh build`, would otherwise stage into the same `guest-src` at once and build
    from each other's half-copied files."""
    try:
        import fcntl
    except ImportError:  # not POSIX: builds are not serialised
        yield
        return
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(out: Path, force: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with _one_build_at_a_time(out):
        return _build(out, force)


def _build(out: Path, force: bool) -> Path:
    wasm = out / "decision-engine.wasm"
    stamp = out / "decision-engine.sha256"
    digest = source_digest()
    if not force and wasm.exists() and stamp.exists() and stamp.read_text() == digest:
        print(f"component up to date: {wasm}")
    else:
        staging = out / "guest-src"
        stage(staging)
        started = time.monotonic()
        tmp = out / "decision-engine.wasm.tmp"
        cmd = [_componentize_py(),
               "-d", str(PACKAGE / "wit"), "-w", WORLD,
               "componentize", "app", "-p", str(staging), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"componentize-py failed (exit {proc.returncode})")
        tmp.replace(wasm)
        stamp.write_text(digest)
        print(f"built {wasm} ({wasm.stat().st_size / 1e6:.1f} MB) "
              f"in {time.monotonic() - started:.1f} s")
    # The precompiled cache: the host deserializes it in milliseconds instead of compiling.
    from edge_module.runtime.component import load_component, make_engine

    started = time.monotonic()
    load_component(make_engine(), wasm, out / "cache")
    print(f"precompiled cache ready in {out / 'cache'} ({time.monotonic() - started:.1f} s)")
    return wasm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("build"))
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args()
    build(args.out, args.force)


if __name__ == "__main__":
    main()
