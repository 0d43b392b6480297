"""The content catalog: the content ids the site can show, each with a short description.

It lives beside the packs as `catalog.yaml`:

    content:
      discount-nudge-10: 10 % discount banner for the pricing page

When a catalog is there, an `action.content` it does not list is a problem (with the
nearest id as a suggestion): a typo in a content id would otherwise ship a nudge that
shows nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .problems import Problem, RulePackError, sort_problems
from .source import MapNode, Node, Scalar, parse_yaml, read_text
from .validate import CATALOG_FILES, closest, describe
from .validated import ActionSpec, Pack

CATALOG_KEYS = ("content",)
_EXPECTED = "a mapping of content ids to a short description, under the key content"
_SHOWN_IDS = 8  # list the ids in a message only while the list stays readable


@dataclass(frozen=True)
class ContentCatalog:
    file: str
    content: Mapping[str, str]  # content id -> description, in file order

    def __contains__(self, content_id: object) -> bool:
        return content_id in self.content


def find_catalog(path: str | os.PathLike[str]) -> Path | None:
    """The catalog that applies to a pack file or a folder of packs: the one beside them."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    for name in CATALOG_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def load_catalog(path: str | os.PathLike[str]) -> ContentCatalog:
    """Read and check a catalog file; `RulePackError` lists every problem in it."""
    name = os.fspath(path)
    return parse_catalog(read_text(path), name)


def parse_catalog(text: str, filename: str) -> ContentCatalog:
    root, problems = parse_yaml(text, filename)
    if root is None:
        raise RulePackError(problems)

    def report(node: Node, message: str, expected: str | None = None,
               suggestion: str | None = None) -> None:
        problems.append(Problem(filename, node.line, node.column, message, None, expected,
                                suggestion))

    content: dict[str, str] = {}
    if not isinstance(root, MapNode):
        report(root, f"the content catalog is {describe(root)}", _EXPECTED)
        raise RulePackError(problems)
    guessed = set()
    for key, _ in root.entries:
        if key.text not in CATALOG_KEYS:
            guess = closest(key.text, CATALOG_KEYS)
            guessed.add(guess)
            report(key, f"unknown key {key.text!r} in the content catalog",
                   "one of " + ", ".join(CATALOG_KEYS), guess)
    entries = root.get("content")
    if entries is None:
        if "content" not in guessed:  # a misspelt key is one mistake, already reported
            report(root, "the content catalog is missing the required key 'content'",
                   _EXPECTED)
    elif not isinstance(entries, MapNode):
        report(entries, f"content is {describe(entries)}", _EXPECTED)
    else:
        for key, value in entries.entries:
            if not key.text.strip():
                report(key, "a content id is empty", "a content id such as discount-nudge-10")
            elif not (isinstance(value, Scalar) and isinstance(value.value, str)
                      and value.value.strip()):
                report(value, f"content {key.text!r} has no description",
                       "a short description of what the visitor sees, as text")
            else:
                content[key.text] = value.value.strip()
    if problems:
        raise RulePackError(sort_problems(problems))
    return ContentCatalog(filename, content)


def unknown_content(packs: Iterable[Pack], catalog: ContentCatalog) -> list[Problem]:
    """A problem for every action whose content id the catalog does not list."""
    problems = []
    ids = list(catalog.content)
    expected = (f"one of {', '.join(ids)}" if len(ids) <= _SHOWN_IDS
                else f"a content id listed in {catalog.file}")
    for pack in packs:
        for scope, action in pack_actions(pack):
            content = action.content
            if not content or content in catalog:
                continue
            problems.append(Problem(
                pack.file, action.line, action.column,
                f"content {content!r} is not in the content catalog {catalog.file}",
                trigger=scope, expected=expected, suggestion=closest(content, ids)))
    return sort_problems(problems)


def pack_actions(pack: Pack) -> list[tuple[str, ActionSpec]]:
    """Every action in a pack, with the name it fires under: a trigger id, `sequence/step`."""
    actions = [(t.id, t.action) for t in pack.triggers]
    actions += [(f"{s.id}/{step.id}", step.action) for s in pack.sequences for step in s.steps]
    return actions
