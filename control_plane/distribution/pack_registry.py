"""The control plane's rule packs: one YAML file per pack in a folder.

Submitting a pack validates it (alone, with the packs already there, and against the
content catalog if the folder has one) before it is stored; publishing compiles whatever
the registry holds, checked again, since the catalog may have changed since.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from edge_module.distribution.atomic_file import write_atomic

from ..rulepack import (
    ContentCatalog,
    Pack,
    RulePackError,
    compile_snapshot,
    is_pack_file,
    load_pack,
    unknown_content,
)
from ..rulepack.content_catalog import parse_catalog
from ..rulepack.source import read_text
from ..rulepack.validate import PACK_NAME


class PackNameMismatch(Exception):
    """The pack's file declares another name than the one it is submitted under."""

    def __init__(self, declared: str) -> None:
        super().__init__(declared)
        self.declared = declared


class PackRegistry:
    def __init__(self, root: str | Path, catalog_path: str | Path | None = None) -> None:
        self.root = Path(root)
        # The content catalog: beside the packs unless configured elsewhere.
        self.catalog_path = Path(catalog_path) if catalog_path else self.root / "catalog.yaml"
        # Each stored pack as last parsed, by name, with the text it was parsed from: a
        # submission, its answer's lint and the console read every pack again (a 500-trigger
        # registry took 0.37 s to parse at each read).
        self._parsed: dict[str, tuple[str, Pack]] = {}

    def path(self, name: str) -> Path:
        if not PACK_NAME.fullmatch(name):  # also its file's name: within 255 bytes
            raise ValueError(f"pack name {name[:120]!r}: use lowercase letters, digits and "
                             f"'-', at most 100 characters")
        if not is_pack_file(f"{name}.yaml"):
            raise ValueError(f"pack name {name!r} is reserved for the content catalog")
        return self.root / f"{name}.yaml"

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.stem for p in self.root.glob("*.yaml") if is_pack_file(p.name))

    def packs(self) -> list[Pack]:
        out, parsed = [], {}
        for name in self.names():
            text = read_text(self.path(name))
            known = self._parsed.get(name)
            # named by file name: a problem's location does not show the server's folders
            pack = known[1] if known is not None and known[0] == text else \
                load_pack(text, f"{name}.yaml")
            parsed[name] = (text, pack)
            out.append(pack)
        self._parsed = parsed
        return out

    def source(self, name: str) -> str | None:
        path = self.path(name)
        return path.read_text() if path.exists() else None

    def catalog(self) -> ContentCatalog | None:
        """The content catalog, if there is one (`RulePackError` if it is malformed)."""
        if not self.catalog_path.is_file():
            return None
        # named by file name, as the packs are: an answer does not show the server's folders
        return parse_catalog(read_text(self.catalog_path), self.catalog_path.name)

    def check_content(self, packs: list[Pack]) -> None:
        """`RulePackError` for content ids the catalog (if any) does not list."""
        catalog = self.catalog()
        problems = unknown_content(packs, catalog) if catalog is not None else []
        if problems:
            raise RulePackError(problems)

    def check(self, text: str, filename: str) -> Pack:
        """Validate `text` as a pack, against the others it would join and against the
        content catalog (RulePackError)."""
        pack = load_pack(text, filename)
        self.check_content([pack])
        others = [p for p in self.packs() if p.name != pack.name]
        compile_snapshot([*others, pack], "check", 0)
        return pack

    def save(self, name: str, text: str) -> None:
        path = self.path(name)
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())

    def submit(self, name: str, text: str, filename: str) -> tuple[Pack, bool]:
        """`check`, then `save` if the pack is named `name` (else PackNameMismatch), as one
        step: two packs checked at once, each against the folder without the other, could
        both be stored and then never compile together (two triggers with one id). A file
        lock, so every server thread and worker process takes its turn (`trigger-engine
        publish` copies the set it published in without it). Returns the pack and whether
        it replaced one."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".submit.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pack = self.check(text, filename)
            if pack.name != name:
                raise PackNameMismatch(pack.name)
            existed = self.path(name).exists()
            self.save(name, text)
            return pack, existed

    def delete(self, name: str) -> bool:
        path = self.path(name)
        if not path.exists():
            return False
        path.unlink()
        return True
