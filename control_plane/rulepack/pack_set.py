"""The packs one command works on: files and folders, checked alone, together and against
the content catalog that applies to them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .compiler import cross_pack_problems
from .content_catalog import ContentCatalog, find_catalog, load_catalog, unknown_content
from .problems import Problem, RulePackError
from .validate import load_pack_dir, load_pack_file
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
    packs: list[Pack] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            packs.extend(load_pack_dir(path) if Path(path).is_dir() else [load_pack_file(path)])
        except RulePackError as exc:
            problems.extend(exc.problems)
    content_catalog = None
    catalog_path = resolve_catalog(paths, catalog)
    if catalog_path is not None:
        try:
            content_catalog = load_catalog(catalog_path)
        except RulePackError as exc:
            problems.extend(exc.problems)
    if not problems:
        problems.extend(cross_pack_problems(packs))
        if check_content and content_catalog is not None:
            problems.extend(unknown_content(packs, content_catalog))
    if problems:
        raise RulePackError(problems)
    return PackSet(tuple(packs), content_catalog)
