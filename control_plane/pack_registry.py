"""The control plane's rule packs: one YAML file per pack in a folder.

Submitting a pack validates it (alone and with the packs already there) before it is
stored; publishing compiles whatever the registry holds.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .rulepack import Pack, compile_snapshot, load_pack, load_pack_file

PACK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class PackRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        if not PACK_NAME.match(name):
            raise ValueError(f"pack name {name!r}: use lowercase letters, digits and '-'")
        return self.root / f"{name}.yaml"

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.stem for p in self.root.glob("*.yaml"))

    def packs(self) -> list[Pack]:
        return [load_pack_file(self.path(name)) for name in self.names()]

    def source(self, name: str) -> str | None:
        path = self.path(name)
        return path.read_text() if path.exists() else None

    def check(self, text: str, filename: str) -> Pack:
        """Validate `text` as a pack and against the others it would join (RulePackError)."""
        pack = load_pack(text, filename)
        others = [p for p in self.packs() if p.name != pack.name]
        compile_snapshot([*others, pack], "check", 0)
        return pack

    def save(self, name: str, text: str) -> None:
        path = self.path(name)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def delete(self, name: str) -> bool:
        path = self.path(name)
        if not path.exists():
            return False
        path.unlink()
        return True
