"""Rule-pack tests: `*.test.yaml` files beside the packs, read into cases with positions.

    cases:
      - name: fires for an engaged reader of the pricing page
        context: {url: /pricing, device: desktop}    # the request's context (optional)
        events:                                      # at: time since the session started
          - {at: 0s, type: page_view, url: /pricing}
          - {at: 1s, type: scroll, depth: 0.8, y: 1400}
        until: 1m                                    # optional; default: 1m after the last event
        expect:                                      # [] (or none) when nothing may be shown
          - {at: 3s, trigger: pricing-discount, content: discount-nudge-10}

Events are wire-contract events, with `at` in place of `ts_ms`. In `expect`, `trigger` is
required; `at` and `content` are checked when given. Problems are reported like a pack's:
file:line:column, what was expected, and a suggestion for near-miss names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_module.core.catalog import EVENT_TYPES

from .checker import Checker, closest, describe
from .problems import Problem, RulePackError, sort_problems
from .source import ListNode, MapNode, Node, Scalar, parse_yaml, plain, read_text

TEST_SUFFIXES = (".test.yaml", ".test.yml")
FILE_KEYS = ("cases",)
CASE_KEYS = ("name", "context", "events", "until", "expect")
# Wire-contract event fields (besides type and ts_ms, which `at` stands for).
EVENT_KEYS = ("at", "type", "url", "depth", "x", "y", "target", "duration_ms", "name",
              "trigger")  # trigger: which nudge a dismiss event dismisses
EXPECT_KEYS = ("at", "trigger", "content")
_EVENT_EXPECTED = "an event such as {at: 1s, type: scroll, depth: 0.8}"
_EXPECT_EXPECTED = "an action such as {at: 3s, trigger: pricing-discount}"


@dataclass(frozen=True)
class CaseEvent:
    at_ms: int
    fields: Mapping[str, Any]  # the wire event without ts_ms
    line: int
    column: int


@dataclass(frozen=True)
class ExpectedAction:
    trigger: str
    at_ms: int | None = None
    content: str | None = None
    line: int = field(default=1, compare=False)
    column: int = field(default=1, compare=False)


@dataclass(frozen=True)
class PackCase:
    file: str
    name: str
    context: Mapping[str, Any]
    events: tuple[CaseEvent, ...]
    expect: tuple[ExpectedAction, ...]
    until_ms: int | None = None
    line: int = 1  # where the name is written
    column: int = 1


def is_test_file(name: str) -> bool:
    return name.endswith(TEST_SUFFIXES)


def find_test_files(path: str | os.PathLike[str]) -> list[str]:
    """The test file itself, or every test file directly in a folder, by name."""
    name = os.fspath(path)
    if not os.path.isdir(name):
        return [name]
    return sorted(os.path.join(name, e.name) for e in os.scandir(name)
                  if e.is_file() and is_test_file(e.name))


def load_cases_file(path: str | os.PathLike[str]) -> tuple[PackCase, ...]:
    """The cases of one test file; `RulePackError` lists every problem in it."""
    name = os.fspath(path)
    return parse_cases(read_text(path), name)


def parse_cases(text: str, filename: str) -> tuple[PackCase, ...]:
    root, problems = parse_yaml(text, filename)
    if root is None:
        raise RulePackError(problems)
    if isinstance(root, MapNode) and "pack" in {key.text for key, _ in root.entries} \
            and "cases" not in {key.text for key, _ in root.entries}:
        # a rule pack given where a test file goes: one problem saying so, not one per key
        raise RulePackError([Problem(filename, root.line, root.column,
                                     "this is a rule pack, not a test file",
                                     expected="a test file (`<pack>.test.yaml`, with "
                                              "`cases:`); trigger-engine test finds the "
                                              "test files beside the packs in a folder")])
    reader = _CaseReader(filename)
    cases = reader.file(root)
    problems = sort_problems(problems + reader.problems)
    if problems:
        raise RulePackError(problems)
    return cases


class _CaseReader(Checker):
    """The pack checker's helpers, on a test file; `trigger` scopes problems to a case."""

    def file(self, root: Node) -> tuple[PackCase, ...]:
        found = self.mapping_keys(root, "the test file", "a mapping with the key cases",
                                  FILE_KEYS, FILE_KEYS)
        if found is None:
            return ()
        node = found.get("cases")
        if node is None:
            return ()
        if not isinstance(node, ListNode) or not node.items:
            what = "empty" if isinstance(node, ListNode) else describe(node)
            self.report(node, f"cases is {what}", "a list of cases, each starting with '- name: ...'")
            return ()
        cases = []
        seen: dict[str, int] = {}
        for item in node.items:
            case = self.case(item)
            if case is None:
                continue
            if case.name and case.name in seen:
                self.report(item, f"duplicate case name {case.name!r} (first at line "
                                  f"{seen[case.name]})", "case names unique within the file")
            seen.setdefault(case.name, case.line)
            cases.append(case)
        return tuple(cases)

    def case(self, item: Node) -> PackCase | None:
        self.trigger = None
        node = self.mapping(item, "a case", "a mapping starting with 'name: ...'")
        if node is None:
            return None
        name_node = node.get("name")
        if isinstance(name_node, Scalar) and isinstance(name_node.value, str):
            self.trigger = name_node.value  # problems inside the case say which case
        found, _ = self.keys(node, CASE_KEYS, ("name", "events", "expect"), "the case")
        name = self.text(name_node, "name") if name_node is not None else None
        context: dict[str, Any] = {}
        if "context" in found:
            ctx = self.mapping(found["context"], "context",
                               "a mapping such as {url: /pricing, device: desktop}")
            context = plain(ctx) if ctx is not None else {}
        events = self.events(found["events"]) if "events" in found else ()
        until = self.duration(found["until"], "until") if "until" in found else None
        expect = self.expect(found["expect"]) if "expect" in found else ()
        if until is not None and events and until < events[-1].at_ms:
            self.report(found["until"], "until is before the last event",
                        "a time at or after the last event's at")
        where = name_node or node
        self.trigger = None
        return PackCase(self.filename, name or "", context, events, expect, until,
                        where.line, where.column)

    def events(self, node: Node) -> tuple[CaseEvent, ...]:
        if not isinstance(node, ListNode):
            self.report(node, f"events is {describe(node)}", f"a list, each {_EVENT_EXPECTED}")
            return ()
        out = []
        for event, found in self.mappings(node.items, "an event", _EVENT_EXPECTED, EVENT_KEYS,
                                          ("at", "type"), "the event"):
            at = self.duration(found["at"], "at") if "at" in found else None
            etype = self.text(found["type"], "the event type") if "type" in found else None
            if etype is not None and etype not in EVENT_TYPES:
                self.report(found["type"], f"unknown event type {etype!r}",
                            "one of " + ", ".join(EVENT_TYPES), closest(etype, EVENT_TYPES))
                etype = None
            if at is None or etype is None:
                continue
            fields = {k: plain(v) for k, v in found.items() if k != "at"}
            out.append(CaseEvent(at, fields, event.line, event.column))
        times = [e.at_ms for e in out]
        if times != sorted(times):
            self.report(node, "events are not in time order", "each event's at >= the one before")
        return tuple(out)

    def expect(self, node: Node) -> tuple[ExpectedAction, ...]:
        if isinstance(node, Scalar) and node.value in (None, "none"):
            return ()
        if not isinstance(node, ListNode):
            self.report(node, f"expect is {describe(node)}",
                        f"a list, each {_EXPECT_EXPECTED}; [] or none for no action")
            return ()
        out = []
        for action, found in self.mappings(node.items, "an expected action", _EXPECT_EXPECTED,
                                           EXPECT_KEYS, ("trigger",), "the expected action"):
            trigger = self.text(found["trigger"], "trigger") if "trigger" in found else None
            at = self.duration(found["at"], "at") if "at" in found else None
            content = self.text(found["content"], "content") if "content" in found else None
            if trigger is not None:
                out.append(ExpectedAction(trigger, at, content, action.line, action.column))
        return tuple(out)
