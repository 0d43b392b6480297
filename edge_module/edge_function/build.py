"""Builds build/edge-function.wasm: the wasi:http/proxy edge function, with a snapshot baked in.

`python -m edge_module.edge_function.build [--out build] [--snapshot FILE | --store DIR]
[--trusted-keys DIR]`. The snapshot is, in order of preference: --snapshot, the one
currently published in the edge store (TRIGGERS_STORE / --store; checked as an edge host
checks it: signed by a key in TRIGGERS_TRUSTED_KEYS / --trusted-keys, or the build stops
saying why), or, when nothing is published yet (a clean clone), the
README's packs under rules/ compiled here (said on stdout). The guest loads it at import, so
componentize-py's pre-initialisation bakes the loaded snapshot into the component.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edge_module.build import _componentize_py
from edge_module.host.config import EdgeConfig

PACKAGE = Path(__file__).resolve().parent
EDGE = PACKAGE.parent
ROOT = EDGE.parent
WORLD = "edge-function"
RULES = [ROOT / "rules" / "pricing-discount.yaml", ROOT / "rules" / "checkout-reminder.yaml"]
# the edge host's setting and default: a published snapshot is checked as a host checks it
DEFAULT_TRUSTED = os.environ.get("TRIGGERS_TRUSTED_KEYS", str(EdgeConfig.trusted_keys))


def snapshot_text(snapshot: Path | None, store: str,
                  trusted_keys: str = DEFAULT_TRUSTED) -> tuple[str, str]:
    """(snapshot JSON, where it came from). One taken from the store is checked as an edge
    host checks it (SystemExit saying why not): the manifest entry and the snapshot signed
    by a key in `trusted_keys`, the snapshot the object the entry names."""
    if snapshot is not None:
        return snapshot.read_text(), str(snapshot)
    from edge_module.distribution.edge_store import StoreError, open_store, read_manifest
    from edge_module.distribution.signing import SignatureError, TrustedKeys
    from edge_module.distribution.snapshot_sync import check_content, check_entry

    opened = open_store(store)
    try:
        found = read_manifest(opened)
        if found is not None:
            manifest, trusted = found[0], TrustedKeys(trusted_keys)
            check_entry(manifest, trusted)
            data = opened.get_object(manifest.object)
            check_content(manifest, data, trusted)
            doc = json.loads(data)
            where = f"revision {manifest.revision} published in {store}, signed by a trusted key"
            return json.dumps(doc, separators=(",", ":")), where
    except (StoreError, SignatureError, ValueError) as exc:
        raise SystemExit(f"edge function: the snapshot published in {store} cannot be baked "
                         f"in: {exc}") from None
    from control_plane.rulepack import compile_snapshot, load_pack

    packs = [load_pack(path.read_text(), path.name) for path in RULES]
    doc = compile_snapshot(packs, "local", int(time.time() * 1000))
    where = f"nothing published in {store}: compiled {', '.join(p.name for p in RULES)}"
    return json.dumps(doc, separators=(",", ":")), where


def stage(dest: Path, snapshot: str) -> None:
    """The guest's Python path: app.py, the snapshot, the core, the state token, setting
    bounds and CORS modules (an empty edge_module.http: its package imports the host's
    server code)."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "edge_module" / "core").mkdir(parents=True)
    (dest / "edge_module" / "http").mkdir()
    shutil.copy(EDGE / "__init__.py", dest / "edge_module" / "__init__.py")
    for src in (EDGE / "core").glob("*.py"):
        shutil.copy(src, dest / "edge_module" / "core" / src.name)
    for shared in ("state_token.py", "setting_bounds.py"):
        shutil.copy(EDGE / shared, dest / "edge_module" / shared)
    (dest / "edge_module" / "http" / "__init__.py").write_text("")
    shutil.copy(EDGE / "http" / "cors.py", dest / "edge_module" / "http" / "cors.py")
    shutil.copy(PACKAGE / "app.py", dest / "app.py")
    (dest / "snapshot.json").write_text(snapshot)


def build(out: Path, snapshot: Path | None, store: str,
          trusted_keys: str = DEFAULT_TRUSTED) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    text, source = snapshot_text(snapshot, store, trusted_keys)
    print(f"edge function snapshot: {source}")
    staging = out / "edge-function-src"
    stage(staging, text)
    wasm, tmp = out / "edge-function.wasm", out / "edge-function.wasm.tmp"
    started = time.monotonic()
    proc = subprocess.run([_componentize_py(), "-d", str(PACKAGE / "wit"), "-w", WORLD,
                           "componentize", "app", "-p", str(staging), "-o", str(tmp)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"componentize-py failed (exit {proc.returncode})")
    tmp.replace(wasm)
    print(f"built {wasm} ({wasm.stat().st_size / 1e6:.1f} MB) in "
          f"{time.monotonic() - started:.1f} s")
    return wasm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--snapshot", type=Path, help="a compiled snapshot JSON file")
    parser.add_argument("--store", default=os.environ.get("TRIGGERS_STORE", ".var/edge-store"))
    parser.add_argument("--trusted-keys", default=DEFAULT_TRUSTED, metavar="DIR",
                        help="the public keys (*.pub) a published snapshot must be signed "
                             "by, as for edge hosts (TRIGGERS_TRUSTED_KEYS; default "
                             "%(default)s)")
    args = parser.parse_args()
    build(args.out, args.snapshot, args.store, args.trusted_keys)


if __name__ == "__main__":
    main()
