"""Build the browser SDK: a minified ES module and a classic script, content-hashed.

    python -m sdk.build --out build/sdk

writes nudge.<hash>.mjs (the ES module), nudge.<hash>.js (a classic script that installs
window.nudge and runs the calls the snippet queued before it loaded) and manifest.json
(the aliases nudge.js / nudge.mjs -> hashed names, and each file's raw, minified and
gzip size). The hash is the first 8 hex digits of the file's SHA-256, so a changed SDK
gets a new name and the old one can be cached for a year.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
from pathlib import Path

import rjsmin

SOURCE = Path(__file__).parent / "browser" / "src" / "nudge.js"

# The classic build wraps the module: its exports become window.nudge's methods, and the
# calls queued by the snippet (window.nudge.q) are replayed in order.
CLASSIC_HEAD = "(function(){"
CLASSIC_TAIL = """
var w=window;if(w.nudge&&w.nudge.init)return;
var api={init:init,track:track,convert:convert,on:on,consent:consent,shutdown:shutdown};
var q=(w.nudge&&w.nudge.q)||[];
var f=function(m){var a=[].slice.call(arguments,1);return Object.prototype.hasOwnProperty.call(api,m)?api[m].apply(null,a):undefined;};
for(var k in api)f[k]=api[k];
w.nudge=f;
for(var i=0;i<q.length;i++){try{f.apply(null,q[i]);}catch(e){}}
})();
"""

_EXPORT = re.compile(r"^export\s+(?=(?:async\s+)?function|const|let)", re.MULTILINE)


def minify(source: str) -> str:
    return rjsmin.jsmin(source, keep_bang_comments=True)


def builds(source: str) -> dict[str, str]:
    """The two builds of the SDK source, minified: {"nudge.mjs": ..., "nudge.js": ...}."""
    classic = CLASSIC_HEAD + _EXPORT.sub("", source) + CLASSIC_TAIL
    return {"nudge.mjs": minify(source), "nudge.js": minify(classic)}


def build(out: Path, source: Path = SOURCE) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    text = source.read_text(encoding="utf-8")
    manifest: dict = {"files": {}, "sizes": {}}
    for alias, body in builds(text).items():
        data = body.encode("utf-8")
        stem, ext = alias.rsplit(".", 1)
        name = f"{stem}.{hashlib.sha256(data).hexdigest()[:8]}.{ext}"
        (out / name).write_bytes(data)
        manifest["files"][alias] = name
        manifest["sizes"][alias] = {"raw": len(text.encode("utf-8")), "min": len(data),
                                    "gzip": len(gzip.compress(data, 9))}
    keep = set(manifest["files"].values()) | {"manifest.json"}
    for old in out.glob("nudge.*"):
        if old.name not in keep:
            old.unlink()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/sdk"))
    args = parser.parse_args(argv)
    manifest = build(args.out)
    for alias, size in manifest["sizes"].items():
        print(f"{manifest['files'][alias]}: {size['min']:,} bytes minified, "
              f"{size['gzip']:,} gzipped")


if __name__ == "__main__":
    main()
