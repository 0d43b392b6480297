"""The content catalog: the content ids the site can show, each with a short description
and, for the browser SDK's renderers, the fields to show and their variants.

It lives beside the packs as `catalog.yaml`:

    content:
      newsletter-signup: Newsletter sign-up form in a modal
      discount-nudge-10:
        description: 10 % discount offer shown as a slide-in
        fields: {title: 10 % off today, cta_url: /checkout, style: toast}
        variants:
          - name: mobile-de
            when: {device: mobile, locale: de}
            fields: {title: Heute 10 % Rabatt}

When a catalog is there, an `action.content` it does not list is a problem (with the
nearest id as a suggestion): a typo in a content id would otherwise ship a nudge that
shows nothing. The fields and variants are compiled into the snapshot, where the decision
core chooses a variant per visitor (`edge_module.core.content`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_module.core.catalog import (
    CONTENT_FIELDS,
    CONTENT_REQUIRED,
    CONTENT_URL_FIELDS,
    DEFAULT_VARIANT,
    MAX_FIELD_BYTES,
    MAX_VARIANTS,
    VARIANT_ARMS,
    VARIANT_WHEN,
)
from edge_module.core.content import locale_parts

from .problems import Problem, RulePackError, sort_problems
from .source import ListNode, MapNode, Node, Scalar, parse_yaml, read_text
from .validate import CATALOG_FILES, closest, describe
from .validated import ActionSpec, Pack
from .vocabulary import DEVICES

CATALOG_KEYS = ("content",)
ENTRY_KEYS = ("description", "fields", "variants")
VARIANT_KEYS = ("name", "when", "fields")
_EXPECTED = "a mapping of content ids to a short description, under the key content"
_ENTRY = "a short description, or a mapping of description, fields and variants"
_SHOWN_IDS = 8  # list the ids in a message only while the list stays readable


@dataclass(frozen=True)
class Variant:
    name: str
    when: Mapping[str, str]  # device, locale, arm
    fields: Mapping[str, str]  # as written: merged over the id's fields when compiled


@dataclass(frozen=True)
class Rendering:
    """What a renderer shows for one content id: its fields and their variants."""

    fields: Mapping[str, str]
    variants: tuple[Variant, ...] = ()


@dataclass(frozen=True)
class ContentCatalog:
    file: str
    content: Mapping[str, str]  # content id -> description, in file order
    renderings: Mapping[str, Rendering] = field(default_factory=dict)  # ids with fields

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
    checker = _CatalogChecker(filename, problems)
    if not isinstance(root, MapNode):
        checker.report(root, f"the content catalog is {describe(root)}", _EXPECTED)
        raise RulePackError(problems)
    guessed = set()
    for key, _ in root.entries:
        if key.text not in CATALOG_KEYS:
            guess = closest(key.text, CATALOG_KEYS)
            guessed.add(guess)
            checker.report(key, f"unknown key {key.text!r} in the content catalog",
                           "one of " + ", ".join(CATALOG_KEYS), guess)
    entries = root.get("content")
    if entries is None:
        if "content" not in guessed:  # a misspelt key is one mistake, already reported
            checker.report(root, "the content catalog is missing the required key 'content'",
                           _EXPECTED)
    elif not isinstance(entries, MapNode):
        checker.report(entries, f"content is {describe(entries)}", _EXPECTED)
    else:
        for key, value in entries.entries:
            if not key.text.strip():
                checker.report(key, "a content id is empty",
                               "a content id such as discount-nudge-10")
            else:
                checker.entry(key.text, value)
    if problems:
        raise RulePackError(sort_problems(problems))
    return ContentCatalog(filename, checker.content, checker.renderings)


class _CatalogChecker:
    """Checks the catalog's entries one by one, collecting every problem."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.problems = problems
        self.content: dict[str, str] = {}
        self.renderings: dict[str, Rendering] = {}

    def report(self, node: Node, message: str, expected: str | None = None,
               suggestion: str | None = None) -> None:
        self.problems.append(Problem(self.filename, node.line, node.column, message, None,
                                     expected, suggestion))

    def entry(self, cid: str, value: Node) -> None:
        node = value
        if isinstance(node, MapNode):
            self._unknown_keys(node, ENTRY_KEYS, f"content {cid!r}")
            value = node.get("description") or node
        if not (isinstance(value, Scalar) and isinstance(value.value, str)
                and value.value.strip()):
            self.report(value, f"content {cid!r} has no description",
                        "a short description of what the visitor sees, as text")
            return
        self.content[cid] = value.value.strip()
        if isinstance(node, MapNode) and (node.get("fields") or node.get("variants")):
            self._rendering(cid, node)

    def _rendering(self, cid: str, node: MapNode) -> None:
        where = f"content {cid!r}"
        fields_node = node.get("fields")
        fields = self._fields(fields_node, where) if fields_node is not None else {}
        written = {k.text for k, _ in _mapping(fields_node).entries} if fields_node else set()
        missing = [f for f in CONTENT_REQUIRED if f not in written]  # a bad one: reported
        if missing:
            # the default is shown whenever no variant matches (no locale sent, say)
            self.report(fields_node or node, f"{where} has no {' or '.join(missing)} in its "
                        "fields: shown when no variant matches, it would render empty",
                        f"fields with at least {', '.join(CONTENT_REQUIRED)}")
        variants: list[Variant] = []
        raw = node.get("variants")
        if raw is not None and not isinstance(raw, ListNode):
            self.report(raw, f"variants of {where} is {describe(raw)}",
                        "a list of variants, each with name, when and fields")
        elif raw is not None:
            if len(raw.items) > MAX_VARIANTS:
                self.report(raw.items[MAX_VARIANTS], f"{where} has {len(raw.items)} variants",
                            f"at most {MAX_VARIANTS}")
            seen_names: set[str] = set()
            seen_when: dict[tuple[tuple[str, str], ...], str] = {}
            for item in raw.items[:MAX_VARIANTS]:
                variant = self._variant(item, where)
                if variant is None:
                    continue
                key = tuple(sorted(variant.when.items()))
                if variant.name in seen_names:
                    self.report(_mapping(item).get("name") or item,
                                f"variant name {variant.name!r} is used twice in {where}",
                                "a name per variant (reports count per name)")
                elif key in seen_when:
                    self.report(_mapping(item).get("when") or item,
                                f"variant {variant.name!r} of {where} tests what variant "
                                f"{seen_when[key]!r} tests: it would never be chosen",
                                "a different when, or one variant")
                else:
                    variants.append(variant)
                seen_names.add(variant.name)
                seen_when.setdefault(key, variant.name)
        self.renderings[cid] = Rendering(fields, tuple(variants))

    def _variant(self, node: Node, where: str) -> Variant | None:
        if not isinstance(node, MapNode):
            self.report(node, f"a variant of {where} is {describe(node)}",
                        "a mapping of name, when and fields")
            return None
        self._unknown_keys(node, VARIANT_KEYS, f"a variant of {where}")
        name_node = node.get("name")
        name = name_node.value if isinstance(name_node, Scalar) else None
        ok = True
        if not isinstance(name, str) or not _token(name) or name == DEFAULT_VARIANT:
            self.report(name_node or node, f"a variant of {where} has no usable name",
                        "a name of letters, digits and - _ . such as mobile-de, not "
                        f"{DEFAULT_VARIANT!r} (the name of the id's own fields)")
            ok = False
        when = self._when(node.get("when"), node, where)
        fields_node = node.get("fields")
        fields = self._fields(fields_node, where) if fields_node is not None else {}
        if fields_node is None:
            self.report(node, f"variant {name!r} of {where} has no fields",
                        "fields merged over the default fields, such as {title: ...}")
        if not ok or when is None or fields_node is None:
            return None
        return Variant(str(name), when, fields)

    def _when(self, node: Node | None, variant: MapNode, where: str) -> dict[str, str] | None:
        expected = "a mapping of " + ", ".join(VARIANT_WHEN) + ", such as {device: mobile}"
        if not isinstance(node, MapNode) or not node.entries:
            self.report(node or variant, f"a variant of {where} has no when", expected)
            return None
        when: dict[str, str] = {}
        ok = True
        for key, value in node.entries:
            text = value.text if isinstance(value, Scalar) else None
            if key.text not in VARIANT_WHEN:
                self.report(key, f"unknown key {key.text!r} in when", expected,
                            closest(key.text, VARIANT_WHEN))
                ok = False
            elif key.text == "device" and text not in DEVICES:
                self.report(value, f"unknown device {text!r}", "one of " + ", ".join(DEVICES),
                            closest(text or "", DEVICES))
                ok = False
            elif key.text == "arm" and text not in VARIANT_ARMS:
                self.report(value, f"unknown arm {text!r}", "one of " + ", ".join(VARIANT_ARMS),
                            closest(text or "", VARIANT_ARMS))
                ok = False
            elif key.text == "locale" and locale_parts(text) is None:
                self.report(value, f"locale {text!r} is not a language tag",
                            "a BCP 47 tag such as de or de-AT")
                ok = False
            else:
                when[key.text] = str(text)
        return when if ok else None

    def _fields(self, node: Node, where: str) -> dict[str, str]:
        if not isinstance(node, MapNode):
            self.report(node, f"fields of {where} is {describe(node)}",
                        "a mapping of " + ", ".join(CONTENT_FIELDS))
            return {}
        fields: dict[str, str] = {}
        for key, value in node.entries:
            if key.text not in CONTENT_FIELDS:
                self.report(key, f"unknown field {key.text!r} in {where}",
                            "one of " + ", ".join(CONTENT_FIELDS),
                            closest(key.text, CONTENT_FIELDS))
                continue
            text = value.value if isinstance(value, Scalar) else None
            if not isinstance(text, str) or not text.strip():
                self.report(value, f"field {key.text!r} of {where} is {describe(value)}",
                            "text")
            elif len(text.encode("utf-8", "surrogatepass")) > MAX_FIELD_BYTES:
                self.report(value, f"field {key.text!r} of {where} is "
                            f"{len(text.encode('utf-8', 'surrogatepass'))} bytes long",
                            f"at most {MAX_FIELD_BYTES} bytes")
            elif key.text in CONTENT_URL_FIELDS and not _safe_url(text):
                self.report(value, f"field {key.text!r} of {where} is not an http(s) or "
                            "relative URL", "https://... or a path such as /checkout")
            else:
                fields[key.text] = text
        return fields

    def _unknown_keys(self, node: MapNode, known: tuple[str, ...], where: str) -> None:
        for key, _ in node.entries:
            if key.text not in known:
                self.report(key, f"unknown key {key.text!r} in {where}",
                            "one of " + ", ".join(known), closest(key.text, known))


def _mapping(node: Node) -> MapNode:
    return node if isinstance(node, MapNode) else MapNode((), node.line, node.column)


def _token(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_.")
                                       for c in name)


def _safe_url(value: str) -> bool:
    """http(s), or relative: a browser SDK puts it in an href or src, so `javascript:`,
    `data:` and other schemes (and a host taken from the page's scheme, `//`) are out.
    Browsers read a backslash as a slash in a web URL (`/\\evil.example` is
    `//evil.example`), so none is let through."""
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in value) or value.startswith("//"):
        return False
    scheme, colon, _ = value.partition(":")
    if colon and "/" not in scheme and "?" not in scheme and "#" not in scheme:
        return scheme.lower() in ("http", "https") and value.lower().startswith(
            scheme.lower() + "://")
    return True


def compiled_content(catalog: ContentCatalog) -> dict[str, Any]:
    """The snapshot's `content`: per id its fields and its variants, each variant's fields
    merged over the id's (docs/snapshot-format.md)."""
    out: dict[str, Any] = {}
    for cid, rendering in catalog.renderings.items():
        base = dict(rendering.fields)
        out[cid] = {"fields": base,
                    "variants": [{"name": v.name, "when": dict(v.when),
                                  "fields": {**base, **v.fields}} for v in rendering.variants]}
    return out


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
