"""The packs one command works on: files and folders, checked alone, together and against
the content catalog that applies to them, every problem at once: a pack with problems of
its own is still checked with the others and against the catalog, as far as it was
understood (`validate.PackCheck`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .compiler import compile_snapshot, cross_pack_problems
from .content_catalog import ContentCatalog, find_catalog, load_catalog, unknown_content
from .problems import Problem, RulePackError, problems_by_file
from .validate import PackCheck, check_pack, check_pack_dir, check_pack_file
from .validated import Pack

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PackSet:
    packs: tuple[Pack, ...]
    catalog: ContentCatalog | None


def resolve_catalog(paths: Sequence[PathLike], catalog: PathLike | None = None) -> Path | None:
    """`catalog` if given, else the catalog.yaml beside the first pack or folder that has one."""
    if catalog is not None:
        return Path(catalog)
    for path in paths:
        found = find_catalog(path)
        if found is not None:
            return found
    return None


def load_pack_set(paths: Sequence[PathLike], catalog: PathLike | None = None,
                  check_content: bool = True) -> PackSet:
    """Every pack under `paths`; one `RulePackError` for every problem in any of them.

    With `check_content`, an action whose content the catalog does not list is a problem;
    the linter turns that off to report it as a finding instead.
    """
    checks: list[PackCheck] = []
    for path in paths:
        try:
            checks.extend(check_pack_dir(path) if Path(path).is_dir() else [check_pack_file(path)])
        except RulePackError as exc:  # a folder or file that cannot be read, a file too large
            checks.append(PackCheck(os.fspath(path), None, tuple(exc.problems)))
    content_catalog = None
    catalog_problems: list[Problem] = []
    catalog_path = resolve_catalog(paths, catalog)
    if catalog_path is not None:
        try:
            content_catalog = load_catalog(catalog_path)
        except RulePackError as exc:
            catalog_problems = exc.problems
    packs = [c.pack for c in checks if c.pack is not None]
    problems = set_problems(checks, catalog_problems)
    if check_content and content_catalog is not None:
        problems += unknown_content(packs, content_catalog)
    if problems:
        raise RulePackError(problems_by_file(problems, [c.file for c in checks]))
    return PackSet(tuple(packs), content_catalog)


def set_problems(checks: Sequence[PackCheck], catalog_problems: Sequence[Problem] = ()
                 ) -> list[Problem]:
    """Each file's own problems, the catalog's, then those of the packs together (of all
    the packs understood, names only while some file has problems)."""
    complete = not any(c.problems or c.pack is None for c in checks)
    packs = [c.pack for c in checks if c.pack is not None]
    return [*(p for c in checks for p in c.problems), *catalog_problems,
            *cross_pack_problems(packs, complete=complete)]


def check_joining(text: str, filename: str, others: Sequence[Pack],
                  catalog: Callable[[], ContentCatalog | None]) -> Pack:
    """`text` as a pack joining `others` (replacing the one of its name), checked alone, with
    them, compiled with them, and its content ids against `catalog()` (`RulePackError` if
    malformed): one `RulePackError` with every problem, the joining file's first."""
    check = check_pack(text, filename)
    name = check.pack.name if check.pack is not None else None
    kept = [p for p in others if p.name != name]
    catalog_problems: list[Problem] = []
    content_catalog = None
    try:
        content_catalog = catalog()
    except RulePackError as exc:
        catalog_problems = exc.problems
    # the joining pack last, as it will be compiled: a clash is reported at its id
    problems = set_problems([*(PackCheck(p.file, p) for p in kept), check], catalog_problems)
    if content_catalog is not None and check.pack is not None:
        problems += unknown_content([check.pack], content_catalog)
    if problems or check.pack is None:
        raise RulePackError(problems_by_file(problems, [filename, *(p.file for p in kept)]))
    compile_snapshot([*kept, check.pack], "check", 0)
    return check.pack
