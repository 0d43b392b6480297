"""From a rule pack's YAML to the model, reporting every problem found, not just the first.

Each check records its problems and returns a stand-in value, so one mistake never hides
the next; the model leaves this module as a valid `Pack` only when no problem was found,
and as a `PackCheck` (the problems, with the pack as far as they leave it known) for the
checks across packs to go on with. Conditions are
checked in `validate_conditions` (context tests and segments in `validate_context`), models
in `validate_models`, settings in `validate_settings`, actions and caps in
`validate_actions`; what needs every pack
(ids, segment names, thresholds) is checked by `compiler.cross_pack_problems`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from edge_module.core.catalog import MAX_CONSECUTIVE
from edge_module.core.urls import url_path

from .checker import NAME, closest, closest_operator, describe
from .cross_pack import keyed_conditions
from .problems import Problem, RulePackError, sort_problems
from .source import ListNode, MapNode, Node, Scalar, parse_yaml, read_text
from .validate_actions import ActionChecker
from .validate_conditions import FILTER_KEYS, ConditionChecker
from .validate_models import ModelChecker
from .validate_settings import SettingsChecker
from .validated import (
    ActionSpec,
    CapSpec,
    Condition,
    EventFilter,
    JourneySpec,
    Pack,
    SequenceSpec,
    StepSpec,
    TriggerSpec,
)
from .values import parse_share
from .vocabulary import DEFAULT_EXPLORE, MAX_EXPLORE

__all__ = ["PackCheck", "check_pack", "check_pack_dir", "check_pack_file", "closest",
           "closest_operator", "describe", "is_pack_file", "load_pack", "load_pack_dir",
           "load_pack_file"]

_Checked = TypeVar("_Checked")

CONTENT_KEYS = ("triggers", "sequences", "segments", "models", "settings")
PACK_KEYS = ("pack", "description", "settings", "segments", "models", "triggers", "sequences")
TRIGGER_KEYS = ("id", "description", "page", "on", "segment", "when", "consecutive", "group",
                "journey", "rollout", "holdout", "explore", "salt", "action", "cap")
ON_KEYS = FILTER_KEYS
JOURNEY_KEYS = ("within", "by_segment")
SEQUENCE_KEYS = ("id", "description", "start", "exit", "steps")
STEP_KEYS = ("id", "description", "after", "timeout", "when", "action")
PACK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
TRIGGER_ID = NAME
CATALOG_FILES = ("catalog.yaml", "catalog.yml")  # the content catalog, beside the packs

_PACK_NAME_RULE = ("lowercase letters, digits and '-', starting with a letter or digit, at "
                   "most 100 characters")
_PAGE_EXPECTED = "a path glob such as /pricing or /blog/*, or \"*\" for any page"
_JOURNEY_EXPECTED = "a duration such as 120s, or a mapping such as {within: 120s, by_segment: {mobile: 60s}}"
EXPLORE_EXPECTED = f"a percentage from 0% to {MAX_EXPLORE}% such as {DEFAULT_EXPLORE}%"


@dataclass(frozen=True)
class PackCheck:
    """One pack file checked by itself: its problems, and its pack as far as they leave it
    known (a mistaken part is missing or a stand-in; None when the file is no YAML), which
    the checks across packs and against the catalog go on with."""

    file: str
    pack: Pack | None
    problems: tuple[Problem, ...] = ()


def check_pack(text: str, filename: str) -> PackCheck:
    """Check one rule pack's YAML text, finding every problem; `RulePackError` only for a
    file over its `PackLimits` (`PackLimitError`) or a failure of the checker itself."""
    return _guarded(filename, lambda: _check(text, filename))


def check_pack_file(path: str | os.PathLike[str]) -> PackCheck:
    """`check_pack` on a file (`RulePackError` if it cannot be read); problems name the file
    by `path` as given."""
    name = os.fspath(path)
    return _guarded(name, lambda: _check(read_text(path), name))


def check_pack_dir(path: str | os.PathLike[str]) -> list[PackCheck]:
    """`check_pack_file` on every pack file directly in a folder, by name; a file that cannot
    be read or is over a limit is a check with no pack. `RulePackError` if the folder cannot
    be listed."""
    folder = os.fspath(path)
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file() and is_pack_file(e.name))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RulePackError([Problem(folder, 1, 1, f"cannot list the folder: {reason}")]) from None
    checks: list[PackCheck] = []
    for name in names:
        file = os.path.join(folder, name)
        try:
            checks.append(check_pack_file(file))
        except RulePackError as exc:
            checks.append(PackCheck(file, None, tuple(exc.problems)))
    return checks


def load_pack(text: str, filename: str) -> Pack:
    """Validate one rule pack's YAML text; `RulePackError` lists every problem found."""
    return _valid(check_pack(text, filename))


def load_pack_file(path: str | os.PathLike[str]) -> Pack:
    """`load_pack` on a file; problems name the file by `path` as given."""
    return _valid(check_pack_file(path))


def load_pack_dir(path: str | os.PathLike[str]) -> list[Pack]:
    """Every pack file directly in a folder, by name; one `RulePackError` for all their problems."""
    checks = check_pack_dir(path)
    problems = [p for check in checks for p in check.problems]
    if problems:
        raise RulePackError(problems)
    return [_valid(check) for check in checks]


def _valid(check: PackCheck) -> Pack:
    if check.problems or check.pack is None:
        raise RulePackError(check.problems)
    return check.pack


def is_pack_file(name: str) -> bool:
    """A rule pack by its name: YAML, and neither a test file nor the content catalog."""
    return (name.endswith((".yaml", ".yml"))
            and not name.endswith((".test.yaml", ".test.yml"))
            and name not in CATALOG_FILES)


def _guarded(filename: str, load: Callable[[], _Checked]) -> _Checked:
    try:
        return load()
    except RulePackError:
        raise
    except Exception as exc:  # callers are promised a Problem, never a traceback
        problem = Problem(filename, 1, 1, f"internal error while reading the pack: "
                                          f"{type(exc).__name__}: {exc}")
        raise RulePackError([problem]) from exc


def _check(text: str, filename: str) -> PackCheck:
    root, problems = parse_yaml(text, filename)
    if root is None:
        return PackCheck(filename, None, tuple(problems))
    checker = _Checker(filename)
    pack = checker.pack(root, hashlib.sha256(text.encode("utf-8")).hexdigest())
    return PackCheck(filename, pack, tuple(sort_problems(problems + checker.problems)))


class _Checker(ConditionChecker, ModelChecker, SettingsChecker, ActionChecker):
    """Checks one pack file; problems inside a trigger or sequence carry its id."""

    # The pack

    def pack(self, root: Node, sha256: str) -> Pack:
        top = self.mapping(root, "the rule pack", "a mapping with the keys pack and triggers")
        if top is None:
            return Pack("", self.filename, sha256, ())
        found, guessed = self.keys(top, PACK_KEYS, ("pack",), "the rule pack")
        if not (set(CONTENT_KEYS) & (set(found) | guessed)):
            self.report(top, "the rule pack is missing the required key 'triggers'",
                        "triggers, or a pack of only sequences, segments, models or settings")
        name_node = found.get("pack")
        name = "" if name_node is None else self.name(name_node, "pack", PACK_NAME,
                                                       _PACK_NAME_RULE)
        if name_node is not None and f"{name}.yaml" in CATALOG_FILES:
            # The registry stores a pack as <name>.yaml, beside the content catalog.
            self.report(name_node, f"pack name {name!r} is reserved for the content catalog",
                        "another pack name")
        description = self.description(found.get("description"))
        settings = self.settings(found["settings"]) if "settings" in found else None
        segments = self.segments(found["segments"]) if "segments" in found else ()
        models = self.models(found["models"]) if "models" in found else None
        ids: dict[str, tuple[str, Node]] = {}
        triggers = self.triggers(found["triggers"], ids) if "triggers" in found else ()
        sequences = self.sequences(found["sequences"], ids) if "sequences" in found else ()
        where = top if name_node is None else name_node
        return Pack(name, self.filename, sha256, triggers, description, settings, segments, models,
                    sequences, tuple(self.segment_uses), line=where.line, column=where.column)

    def listed(self, node: Node, what: str, item: str) -> tuple[MapNode, ...]:
        """The mappings of a non-empty list (triggers, sequences, steps)."""
        if not isinstance(node, ListNode):
            self.report(node, f"{what} is {describe(node)}",
                        f"a list of {what}, each starting with '- id: ...'")
            return ()
        if not node.items:
            self.report(node, f"{what} is empty", f"at least one {item}")
            return ()
        out = []
        for entry in node.items:
            self.trigger = None
            body = self.mapping(entry, f"a {item}", "a mapping starting with 'id: ...'")
            if body is not None:
                out.append(body)
        return tuple(out)

    def unique_id(self, kind: str, id_node: Node | None, value: str,
                  ids: dict[str, tuple[str, Node]]) -> None:
        """Trigger and sequence ids share one namespace (a sequence's steps fire as triggers)."""
        if id_node is None or not value:
            return
        if value in ids:
            first_kind, first = ids[value]
            message = (f"duplicate {kind} id {value!r} (first defined at line {first.line})"
                       if first_kind == kind else
                       f"{kind} id {value!r} is also the id of the {first_kind} at line "
                       f"{first.line}")
            self.report(id_node, message,
                        "ids unique within the pack (triggers and sequences share them)")
        else:
            ids[value] = (kind, id_node)

    def scope_of(self, body: MapNode) -> None:
        id_node = body.get("id")
        self.trigger = None
        if isinstance(id_node, Scalar) and id_node.value is not None and id_node.text:
            self.trigger = id_node.text

    # Triggers

    def triggers(self, node: Node, ids: dict[str, tuple[str, Node]]) -> tuple[TriggerSpec, ...]:
        specs: list[TriggerSpec] = []
        for body in self.listed(node, "triggers", "trigger"):
            self.scope_of(body)
            spec = self.trigger_spec(body)
            self.unique_id("trigger", body.get("id"), spec.id, ids)
            specs.append(spec)
        self.trigger = None
        return tuple(specs)

    def trigger_spec(self, node: MapNode) -> TriggerSpec:
        found, _ = self.keys(node, TRIGGER_KEYS, ("id", "action"), "the trigger")
        id_node = found.get("id")
        tid = "" if id_node is None else self.name(id_node, "trigger id")
        where = node if id_node is None else id_node
        pages = self.pages(found.get("page"))
        on = self.event_filter(found["on"], "on") if "on" in found else None
        known = len(self.problems)
        when = self.conditions(found["when"]) if "when" in found else ()
        # A condition with a mistake is missing from `when`: whether it was adaptive is unknown.
        explore = self.explore(node, found.get("explore"), when, len(self.problems) == known)
        return TriggerSpec(
            id=tid,
            pages=pages,
            on=on,
            when=when,
            action=self.action(found["action"]) if "action" in found else ActionSpec(""),
            cap=self.cap(found["cap"]) if "cap" in found else CapSpec(),
            description=self.description(found.get("description")),
            line=where.line,
            column=where.column,
            segment=self.segment_name(found["segment"]) if "segment" in found else None,
            consecutive=(self.integer(found["consecutive"], "consecutive", 1, MAX_CONSECUTIVE)
                         or 1) if "consecutive" in found else 1,
            group=self.name(found["group"], "group") or None if "group" in found else None,
            journey=self.journey(found["journey"]) if "journey" in found else None,
            rollout=self.share(found, "rollout", 100),
            holdout=self.share(found, "holdout", 0),
            salt=self.text(found["salt"], "salt", "a text such as q4") if "salt" in found
            else None,
            explore=explore,
        )

    def explore(self, trigger: MapNode, node: Node | None, when: tuple[Condition, ...],
                when_ok: bool) -> int | float | None:
        """The exploration slice (percent) of a trigger with a mode: adaptive condition."""
        adaptive = any(c.mode == "adaptive" for _, c in keyed_conditions("", when))
        if node is None:
            return DEFAULT_EXPLORE if adaptive else None
        if not adaptive:
            if when_ok:
                self.report(trigger.key("explore") or node,
                            "explore is only used by a trigger with a mode: adaptive condition "
                            "(the share of sessions where those conditions keep their static "
                            "value), and no condition of this trigger has one",
                            "mode: adaptive on a condition, or no explore")
            return None
        if not isinstance(node, Scalar):
            self.report(node, f"explore is {describe(node)}", EXPLORE_EXPECTED)
            return DEFAULT_EXPLORE
        share = self.parsed(node, "explore",
                            lambda: parse_share(node.value, MAX_EXPLORE, EXPLORE_EXPECTED))
        return DEFAULT_EXPLORE if share is None else share

    def share(self, found: dict[str, Node], key: str, default: int) -> int | float:
        if key not in found:
            return default
        value = self.percent(found[key], key)
        return default if value is None else value

    def journey(self, node: Node) -> JourneySpec | None:
        if isinstance(node, Scalar):
            within = self.duration(node, "journey", positive=True)
            return None if within is None else JourneySpec(within)
        found = self.mapping_keys(node, "journey", _JOURNEY_EXPECTED, JOURNEY_KEYS, ("within",))
        if found is None:
            return None
        within = self.duration(found["within"], "within", positive=True) \
            if "within" in found else None
        by_segment: list[tuple[str, int]] = []
        if "by_segment" in found:
            table = self.mapping(found["by_segment"], "by_segment",
                                 "a mapping of segment names to durations, such as {mobile: 60s}")
            for key, value_node in table.entries if table is not None else ():
                name = self.segment_name(key)
                ms = self.duration(value_node, f"by_segment {key.text}", positive=True)
                if name is not None and ms is not None:
                    by_segment.append((name, ms))
        return None if within is None else JourneySpec(within, tuple(by_segment))

    def pages(self, node: Node | None) -> tuple[str, ...]:
        if node is None:
            return ("*",)
        if isinstance(node, ListNode):
            if not node.items:
                self.report(node, "page is an empty list",
                            f"{_PAGE_EXPECTED}; leave page out for any page")
            globs: tuple[Node, ...] = node.items
        else:
            globs = (node,)
        pages: list[str] = []
        for glob_node in globs:
            glob = self.text(glob_node, "page", _PAGE_EXPECTED)
            if glob is not None and self.page_glob_ok(glob_node, glob) and glob not in pages:
                pages.append(glob)
        return tuple(pages) or ("*",)

    def page_glob_ok(self, node: Node, glob: str) -> bool:
        if glob != "*" and not glob.startswith("/"):
            fix = url_path(glob) if "://" in glob else "/" + glob.lstrip()
            self.report(node, f"page {glob!r} must start with '/' (or be \"*\" for any page)",
                        _PAGE_EXPECTED, fix)
            return False
        if "?" in glob or "#" in glob:
            path_only = re.split(r"[?#]", glob)[0]
            self.report(node, f"page {glob!r} contains '?' or '#': pages match the URL path only",
                        _PAGE_EXPECTED, path_only or None)
            return False
        return True

    # Sequences

    def sequences(self, node: Node,
                  ids: dict[str, tuple[str, Node]]) -> tuple[SequenceSpec, ...]:
        specs: list[SequenceSpec] = []
        for body in self.listed(node, "sequences", "sequence"):
            self.scope_of(body)
            spec = self.sequence(body)
            self.unique_id("sequence", body.get("id"), spec.id if spec else "", ids)
            if spec is not None:
                specs.append(spec)
        self.trigger = None
        return tuple(specs)

    def sequence(self, node: MapNode) -> SequenceSpec | None:
        found, _ = self.keys(node, SEQUENCE_KEYS, ("id", "start", "steps"), "the sequence")
        id_node = found.get("id")
        sid = "" if id_node is None else self.name(id_node, "sequence id")
        description = self.description(found.get("description"))
        start = self.event_filter(found["start"], "start") if "start" in found else None
        exits: list[EventFilter] = []
        if "exit" in found:
            for item in self.items(found["exit"], "exit", "an event, or a list of events"):
                flt = self.event_filter(item, "exit")
                if flt is not None and flt not in exits:
                    exits.append(flt)
        steps = self.steps(found["steps"], sid) if "steps" in found else ()
        self.trigger = sid or None
        where = node if id_node is None else id_node
        if start is None or not steps:
            return None
        return SequenceSpec(sid, start, tuple(exits), steps, description,
                            line=where.line, column=where.column)

    def steps(self, node: Node, sid: str) -> tuple[StepSpec, ...]:
        steps: list[StepSpec] = []
        first: dict[str, Node] = {}
        for body in self.listed(node, "steps", "step"):
            self.scope_of(body)
            if self.trigger is not None:
                self.trigger = f"{sid}/{self.trigger}"  # the name the step fires under
            found, _ = self.keys(body, STEP_KEYS, ("id", "action"), "the step")
            id_node = found.get("id")
            step_id = "" if id_node is None else self.name(id_node, "step id")
            if id_node is not None and step_id:
                if step_id in first:
                    self.report(id_node, f"duplicate step id {step_id!r} (first defined at line "
                                         f"{first[step_id].line})",
                                "step ids unique within the sequence")
                else:
                    first[step_id] = id_node
            where = body if id_node is None else id_node
            steps.append(StepSpec(
                id=step_id,
                action=self.action(found["action"]) if "action" in found else ActionSpec(""),
                after_ms=(self.duration(found["after"], "after") or 0) if "after" in found else 0,
                when=self.conditions(found["when"]) if "when" in found else (),
                timeout_ms=self.duration(found["timeout"], "timeout", positive=True)
                if "timeout" in found else None,
                description=self.description(found.get("description")),
                line=where.line,
                column=where.column,
            ))
        return tuple(steps)
