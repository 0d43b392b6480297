"""Checking a `when` list: signal conditions, segments and `sustained`; context tests are
checked in `validate_context`.

Every item is one mapping with one key: a signal (`dwell: ">= 3s"`), a context field
(`device: mobile`), `segment: gold`, or `sustained: {for: 5s, when: [...]}`.
"""

from __future__ import annotations

import re

from edge_module.core.catalog import (
    AGGREGATE_FIELDS,
    CONTEXT_FIELDS,
    EVENT_TYPES,
    MAX_WINDOW_MS,
    OPERATOR_WORDS,
    SIGNALS,
)

from .checker import SHORTHAND_EXPECTED, closest, describe
from .source import ListNode, MapNode, Node, Scalar
from .validate_context import ContextChecker
from .validated import Condition, ConditionSpec, EventFilter, SegmentRef, SustainedSpec
from .values import RECALL_EXPECTED, is_number, parse_recall
from .vocabulary import (
    BASELINES,
    DEFAULT_RECALL,
    DEFAULT_Z,
    EXAMPLE_PARAM,
    EXAMPLE_VALUE,
    MODES,
    PARSERS,
    RECALL_TARGET_KEYS,
    THRESHOLD_KEYS,
    expected_value,
    value_kind,
)

FILTER_KEYS = ("type", "name", "target")
TARGETED_EVENTS = ("click", "focus", "input", "submit", "blur", "hover")
SUSTAINED_KEYS = ("for", "when")
CONDITION_WORDS = (*SIGNALS, *CONTEXT_FIELDS, "segment", "sustained")

CONDITION_EXPECTED = 'a signal and its test, such as - dwell: ">= 3s"'
TARGET_EXPECTED = 'a CSS selector in quotes, such as "#cta"'
RECALL_TARGET_EXPECTED = "a recall target such as {recall: 95%}"
FILTER_EXPECTED = ("an event type such as page_view, "
                   "or a mapping such as {type: custom, name: cart_abandon}")
_UNKNOWN_EXPECTED = ("a signal (" + ", ".join(SIGNALS) + "), a context field ("
                     + ", ".join(CONTEXT_FIELDS) + "), segment or sustained")
_EVENT_NAME = re.compile(r"[A-Za-z][\w.-]*")


def mapping_example(signal: str) -> str:
    parts = [f"{p}: {EXAMPLE_PARAM.get(p, '...')}" for p in SIGNALS[signal].required]
    kind = value_kind(signal, "hover.duration_ms") or "number"
    parts.append(f"gte: {EXAMPLE_VALUE[kind]}")
    return "{" + ", ".join(parts) + "}"


class ConditionChecker(ContextChecker):
    """The checks of conditions and event filters, shared by triggers and sequence steps."""

    def conditions(self, node: Node, nested: bool = False) -> tuple[Condition, ...]:
        if not isinstance(node, ListNode):
            self.report(node, f"when is {describe(node)}",
                        f"a list of conditions, each {CONDITION_EXPECTED}")
            return ()
        specs: list[Condition] = []
        for item in node.items:
            cond = self.mapping(item, "a condition", CONDITION_EXPECTED)
            if cond is None:
                continue
            if len(cond.entries) != 1:
                names = ", ".join(k.text for k, _ in cond.entries)
                message = (f"a condition names exactly one signal; this one has "
                           f"{len(cond.entries)}: {names}" if cond.entries
                           else "a condition is empty")
                self.report(cond, message, "one signal per list item, each starting with '- '")
            for key, value in cond.entries:
                spec = self.condition(key, value, nested)
                if spec is not None:
                    specs.append(spec)
        return tuple(specs)

    def condition(self, key: Scalar, node: Node, nested: bool) -> Condition | None:
        word = key.text
        if word in SIGNALS:
            return self.signal_condition(key, node)
        if word in CONTEXT_FIELDS:
            return self.context_test(key, node)
        if word == "segment":
            name = self.segment_name(node)
            return None if name is None else SegmentRef(name, key.line, key.column)
        if word == "sustained":
            if nested:
                self.report(key, "sustained cannot be nested inside sustained",
                            "the inner conditions directly under the outer sustained's when")
                return None
            return self.sustained(key, node)
        self.report(key, f"unknown signal {word!r}", _UNKNOWN_EXPECTED,
                    closest(word, CONDITION_WORDS))
        return None

    # Signals

    def signal_condition(self, key: Scalar, node: Node) -> ConditionSpec | None:
        signal = key.text
        spec = SIGNALS[signal]
        what = f"the {signal} condition"
        required = spec.required
        if isinstance(node, Scalar) and isinstance(node.value, str):
            if required:
                self.report(node, f"{signal} needs {' and '.join(required)}: "
                                  "write the condition as a mapping", mapping_example(signal))
                return None
            parsed = self.shorthand(node, what)
            if parsed is None:
                return None
            kind = value_kind(signal)
            value = None if kind is None else self.signal_value(node, parsed[1], kind, what)
            if value is None:
                return None
            return ConditionSpec(signal, parsed[0], value,
                                 window_ms=spec.default_window_ms,
                                 baseline="session" if "baseline" in spec.params else None,
                                 line=key.line, column=key.column)
        if not isinstance(node, MapNode):
            self.report(node, f"{what} is {describe(node)}",
                        f"{SHORTHAND_EXPECTED}, or a mapping such as {mapping_example(signal)}")
            return None
        allowed = tuple(dict.fromkeys((*OPERATOR_WORDS, *spec.params, *THRESHOLD_KEYS)))
        found, guessed = self.keys(node, allowed, required, what)
        op, value_node = self.operator(node, found, guessed, what, mapping_example(signal))
        window = self.window(found.get("window"), signal) if "window" in spec.params else None
        selects = "target" in spec.params  # its target is an element, not a recall target
        target = None
        if "target" in found and selects:
            target = self.selector(found["target"], signal)
        baseline = (self.choice(found["baseline"], "baseline", BASELINES)
                    if "baseline" in found else "session") if "baseline" in spec.params else None
        event = self.event_filter(found["event"], "event") if "event" in found else None
        after = self.event_filter(found["after"], "after") if "after" in found else None
        field = (self.choice(found["field"], "field", tuple(AGGREGATE_FIELDS))
                 if "field" in found else None)
        kind = value_kind(signal, field)
        value = None
        if value_node is not None and kind is not None:
            value = self.mapping_value(value_node, kind, what)
        by_segment = self.by_segment(found["by_segment"], kind) if "by_segment" in found else ()
        mode = self.choice(found["mode"], "mode", MODES) if "mode" in found else "static"
        z = self.z(found.get("z"), mode, node)
        recall: float | None = None
        if not selects:
            recall = self.recall_target(found.get("target"), mode, node, what)
        missing = [p for p in required if p not in found]
        if (op is None or value is None or by_segment is None or mode is None
                or any(found.get(p) is not None and v is None for p, v in (
                    ("event", event), ("after", after), ("field", field),
                    ("baseline", baseline), ("target", target if selects else recall)))
                or missing):
            return None
        return ConditionSpec(signal, op, value, window, target, baseline, event, after, field,
                             by_segment, mode, z, key.line, key.column, recall)

    def selector(self, node: Node, signal: str) -> str | None:
        """The element a hover or form signal watches; a recall target cannot go here."""
        if isinstance(node, MapNode):
            self.report(node, f"target is the element a {signal} condition watches, so it "
                              "cannot hold a recall target (the default "
                              f"{DEFAULT_RECALL:.0%} applies)", TARGET_EXPECTED)
            return None
        return self.text(node, "target", TARGET_EXPECTED)

    def recall_target(self, node: Node | None, mode: str | None, condition: MapNode,
                      what: str) -> float | None:
        """`target: {recall: 95%}` of an adaptive condition, as a fraction; default 95 %."""
        if node is None:
            return DEFAULT_RECALL if mode == "adaptive" else None
        if mode is None:  # an unknown mode was reported; what target means is unknown
            return None
        if mode != "adaptive":
            self.report(condition.key("target") or node,
                        "target is only used with mode: adaptive (the recall the learning "
                        "loop keeps while it tunes the threshold)", "mode: adaptive, or no target")
            return None
        if not isinstance(node, MapNode):
            # `target: 90%` means the recall target: say how to write it
            fix = (f"{{recall: {node.text}}}" if isinstance(node, Scalar)
                   and node.value is not None and not isinstance(node.value, bool) else None)
            self.report(node, f"the target of {what} is {describe(node)}",
                        RECALL_TARGET_EXPECTED, fix)
            return None
        body = node
        found, _ = self.keys(body, RECALL_TARGET_KEYS, RECALL_TARGET_KEYS, "target")
        if "recall" not in found:
            return None
        raw = found["recall"]
        if not (isinstance(raw, Scalar) and (isinstance(raw.value, str) or is_number(raw.value))):
            self.report(raw, f"recall is {describe(raw)}", RECALL_EXPECTED)
            return None
        return self.parsed(raw, "recall", lambda: parse_recall(raw.value))

    def operator(self, node: MapNode, found: dict[str, Node], guessed: set[str], what: str,
                 example: str) -> tuple[str | None, Node | None]:
        """The mapping form's one operator and the node holding its value."""
        return self.one_operator(
            node, [k for k, _ in node.entries if k.text in OPERATOR_WORDS], OPERATOR_WORDS,
            found, what,
            # a misspelt operator was reported already
            None if guessed & set(OPERATOR_WORDS)
            else f"one of {', '.join(OPERATOR_WORDS)}, as in {example}",
            "one operator per condition; write another condition for the other bound")

    def mapping_value(self, node: Node, kind: str, what: str) -> int | float | None:
        if isinstance(node, Scalar) and (isinstance(node.value, str) or is_number(node.value)):
            return self.signal_value(node, node.value, kind, what)
        self.report(node, f"{what}: the value is {describe(node)}",
                    f"{expected_value(kind)}, such as {EXAMPLE_VALUE[kind]}")
        return None

    def signal_value(self, node: Node, raw: object, kind: str, what: str) -> int | float | None:
        return self.parsed(node, what, lambda: PARSERS[kind](raw))

    def window(self, node: Node | None, signal: str) -> int | None:
        default = SIGNALS[signal].default_window_ms
        if node is None:
            return default
        ms = self.duration(node, "window")
        if ms is not None and not 0 < ms <= MAX_WINDOW_MS:
            self.report(node, f"window {ms}ms is out of range",
                        f"a duration above 0 and at most {MAX_WINDOW_MS // 60_000}m")
            return default
        return default if ms is None else ms

    def by_segment(self, node: Node, kind: str | None) -> tuple[tuple[str, int | float], ...] | None:
        """Per-segment thresholds, in the order written (the first segment that holds wins)."""
        table = self.mapping(node, "by_segment", "a mapping of segment names to values, "
                                                 "such as {mobile: 60%}")
        if table is None:
            return None
        if not table.entries:
            self.report(table, "by_segment is empty", "a mapping such as {mobile: 60%}")
            return None
        out: list[tuple[str, int | float]] = []
        ok = True
        for key, value_node in table.entries:
            name = self.segment_name(key)
            value = None if kind is None else self.mapping_value(value_node, kind,
                                                                 f"by_segment {key.text}")
            if name is None or value is None:
                ok = False
            else:
                out.append((name, value))
        return tuple(out) if ok else None

    def z(self, node: Node | None, mode: str | None, condition: MapNode) -> float | None:
        if node is None:
            return DEFAULT_Z if mode == "hybrid" else None
        if mode != "hybrid":
            self.report(condition.key("z") or node, "z is only used with mode: hybrid",
                        "mode: hybrid, or no z")
            return None
        value = self.number(node, "z", 0, "a number of standard deviations above 0, such as 2")
        return None if value is None else float(value)

    # Event filters (`on`, and the events count, since, absent and sequences match)

    def event_filter(self, node: Node, what: str) -> EventFilter | None:
        if isinstance(node, Scalar) and isinstance(node.value, str):
            event_type = self.event_type(node)
            if event_type == "custom":
                self.report(node, "a custom event needs a name",
                            f"{what}: {{type: custom, name: cart_abandon}}")
                return None
            return EventFilter(event_type) if event_type else None
        if not isinstance(node, MapNode):
            self.report(node, f"{what} is {describe(node)}", FILTER_EXPECTED)
            return None
        found, _ = self.keys(node, FILTER_KEYS, ("type",), what)
        event_type = self.event_type(found["type"]) if "type" in found else ""
        name: str | None = None
        target: str | None = None
        ok = bool(event_type)
        if event_type == "custom" and "name" not in found:
            self.report(node, f"{what} is missing the required key 'name' (custom events are "
                              "matched by name)", "{type: custom, name: cart_abandon}")
            ok = False
        if "name" in found:
            if event_type == "custom":
                name = self.text(found["name"], "name")
                ok = ok and name is not None
            elif event_type:
                self.report(node.key("name") or node,
                            f"name is only allowed for custom events, not {event_type}")
                ok = False
        if "target" in found:
            if event_type in TARGETED_EVENTS:
                target = self.text(found["target"], "target", TARGET_EXPECTED)
                ok = ok and target is not None
            elif event_type:
                self.report(node.key("target") or node,
                            f"target is not allowed for {event_type} events",
                            f"target only with {', '.join(TARGETED_EVENTS)}")
                ok = False
        return EventFilter(event_type, name, target) if ok else None

    def event_type(self, node: Node) -> str:
        expected = "one of " + ", ".join(EVENT_TYPES)
        value = self.text(node, "the event type", expected)
        if value is None:
            return ""
        if value not in EVENT_TYPES:
            guess = closest(value, EVENT_TYPES)
            if guess is None and _EVENT_NAME.fullmatch(value):
                guess = f"{{type: custom, name: {value}}}"  # the site's own event, by name
            self.report(node, f"unknown event type {value!r}", expected, guess)
            return ""
        return value

    # Sustained

    def sustained(self, key: Scalar, node: Node) -> SustainedSpec | None:
        found = self.mapping_keys(
            node, "sustained", 'a mapping such as {for: 5s, when: [{scroll_depth: ">= 80%"}]}',
            SUSTAINED_KEYS, SUSTAINED_KEYS)
        if found is None:
            return None
        for_ms = self.duration(found["for"], "for", positive=True) if "for" in found else None
        inner: tuple[Condition, ...] = ()
        if "when" in found:
            inner = self.conditions(found["when"], nested=True)
            if isinstance(found["when"], ListNode) and not found["when"].items:
                self.report(found["when"], "sustained's when is empty",
                            "at least one condition that must keep holding")
        if for_ms is None or not inner:
            return None
        return SustainedSpec(for_ms, inner, key.line, key.column)
