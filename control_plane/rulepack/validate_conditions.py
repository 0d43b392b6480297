"""Checking a `when` list: signal conditions, context tests, segments and `sustained`.

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
    OPERATORS,
    SIGNALS,
    WEEKDAYS,
)

from .checker import Checker, closest, closest_operator, describe
from .source import ListNode, MapNode, Node, Scalar
from .validated import Condition, ConditionSpec, ContextSpec, EventFilter, SegmentRef, SustainedSpec
from .values import RECALL_EXPECTED, is_number, parse_recall
from .vocabulary import (
    BASELINES,
    CONTEXT_OPERATOR_WORDS,
    DEFAULT_RECALL,
    DEFAULT_Z,
    DEVICES,
    EXAMPLE_PARAM,
    EXAMPLE_VALUE,
    MODES,
    ORDERED_OPERATORS,
    PARSERS,
    RECALL_TARGET_KEYS,
    THRESHOLD_KEYS,
    expected_value,
    value_kind,
)

FILTER_KEYS = ("type", "name", "target")
TARGETED_EVENTS = ("click", "focus", "input", "submit", "blur", "hover")
SUSTAINED_KEYS = ("for", "when")
ATTRIBUTE_KEYS = ("name", *CONTEXT_OPERATOR_WORDS)
CONDITION_WORDS = (*SIGNALS, *CONTEXT_FIELDS, "segment", "sustained")
# Which operators each context field can be compared with (besides `in`, `==` and `!=`).
CONTEXT_EXTRA_OPERATORS = {"local_hour": ORDERED_OPERATORS, "referrer": ("glob",),
                           "attribute": (*ORDERED_OPERATORS, "glob")}

CONDITION_EXPECTED = 'a signal and its test, such as - dwell: ">= 3s"'
SHORTHAND_EXPECTED = '"<operator> <value>" such as ">= 3s"'
TARGET_EXPECTED = 'a CSS selector in quotes, such as "#cta"'
RECALL_TARGET_EXPECTED = "a recall target such as {recall: 95%}"
FILTER_EXPECTED = ("an event type such as page_view, "
                   "or a mapping such as {type: custom, name: cart_abandon}")
_UNKNOWN_EXPECTED = ("a signal (" + ", ".join(SIGNALS) + "), a context field ("
                     + ", ".join(CONTEXT_FIELDS) + "), segment or sustained")
_CONTEXT_EXPECTED = {
    "device": "one of " + ", ".join(DEVICES) + ", or a list of them",
    "country": "a two-letter country code such as DE, or a list of them",
    "local_hour": 'an hour from 0 to 23, a list of hours, or a comparison such as ">= 18"',
    "weekday": "one of " + ", ".join(WEEKDAYS) + ", or a list of them",
    "referrer": 'a referrer URL, or a glob with * such as "*google.*"',
    "returning": "true or false",
    "attribute": "a mapping such as {name: crm_tier, in: [gold, platinum]}",
}
# The operator is either symbols (">=3s" needs no space) or a word followed by a space.
_SHORTHAND = re.compile(r"\s*([<>=!≥≤≠]+|[A-Za-z_]+(?=\s))\s*(.*?)\s*", re.DOTALL)
_COMPARISON = re.compile(r"\s*[<>=!≥≤≠]")
_COUNTRY = re.compile(r"[A-Z]{2}")
_EVENT_NAME = re.compile(r"[A-Za-z][\w.-]*")

ContextValue = str | int | float | bool
_WORD_OF = {op: word for word, op in CONTEXT_OPERATOR_WORDS.items()}


def mapping_example(signal: str) -> str:
    parts = [f"{p}: {EXAMPLE_PARAM.get(p, '...')}" for p in SIGNALS[signal].required]
    kind = value_kind(signal, "hover.duration_ms") or "number"
    parts.append(f"gte: {EXAMPLE_VALUE[kind]}")
    return "{" + ", ".join(parts) + "}"


class ConditionChecker(Checker):
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

    def shorthand(self, node: Scalar, what: str) -> tuple[str, str] | None:
        text: str = node.value
        match = _SHORTHAND.fullmatch(text)
        if match is None:
            self.report(node, f"{what}: {text!r} is not a comparison", SHORTHAND_EXPECTED,
                        f">= {text.strip()}" if text.strip() else None)
            return None
        op, raw = match.group(1), match.group(2)
        if op not in OPERATORS:
            self.report(node, f"unknown operator {op!r}", "one of " + " ".join(OPERATORS),
                        closest_operator(op))
            return None
        if not raw:
            self.report(node, f"{what}: no value after {op!r}", SHORTHAND_EXPECTED)
            return None
        return op, raw

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

    def one_operator(self, node: MapNode, ops: list[Scalar], words: dict[str, str],
                     found: dict[str, Node], what: str, missing: str | None,
                     one: str) -> tuple[str | None, Node | None]:
        """The operator of `ops` (its symbol in `words`) and its value's node, when there is
        exactly one; none is reported with `missing` as the fix (unless None), several with
        `one`."""
        if not ops:
            if missing is not None:
                self.report(node, f"{what} has no operator", missing)
            return None, None
        if len(ops) > 1:
            self.report(ops[1], f"{what} has more than one operator "
                                f"({', '.join(k.text for k in ops)})", one)
            return None, None
        return words[ops[0].text], found[ops[0].text]

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
        body = self.mapping(node, "sustained",
                            'a mapping such as {for: 5s, when: [{scroll_depth: ">= 80%"}]}')
        if body is None:
            return None
        found, _ = self.keys(body, SUSTAINED_KEYS, SUSTAINED_KEYS, "sustained")
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

    # Context

    def context_test(self, key: Scalar, node: Node) -> ContextSpec | None:
        """One test of the request's context: `device: mobile`, `local_hour: ">= 18"`."""
        field = key.text
        what = f"the {field} condition"
        if field == "attribute":
            return self.attribute_test(key, node)
        allowed = ("in", "==", "!=", *CONTEXT_EXTRA_OPERATORS.get(field, ()))
        if isinstance(node, ListNode):
            values = self.context_list(field, node, what)
            return None if values is None else ContextSpec(field, "in", values, None, key.line,
                                                           key.column)
        if isinstance(node, MapNode):
            return self.context_mapping(key, node, field, allowed, what)
        if not isinstance(node, Scalar) or node.value is None:
            self.report(node, f"{what} is {describe(node)}", _CONTEXT_EXPECTED[field])
            return None
        op = "=="
        raw: object = node.value
        if isinstance(node.value, str) and _COMPARISON.match(node.value):
            parsed = self.shorthand(node, what)
            if parsed is None:
                return None
            op, raw = parsed
            if op not in allowed:
                self.report(node, f"{field} cannot be compared with {op!r}",
                            _CONTEXT_EXPECTED[field])
                return None
        elif field == "referrer" and isinstance(node.value, str) and "*" in node.value:
            op = "glob"
        value = self.context_value(field, node, raw, what)
        return None if value is None else ContextSpec(field, op, value, None, key.line,
                                                      key.column)

    def context_list(self, field: str, node: ListNode,
                     what: str) -> tuple[ContextValue, ...] | None:
        items = self.items(node, field, _CONTEXT_EXPECTED[field])
        values: list[ContextValue] = []
        ok = bool(items)
        for item in items:
            if field == "referrer" and isinstance(item, Scalar) and "*" in str(item.value):
                self.report(item, "a list of referrers is matched exactly: * is not a wildcard "
                                  "there", "one glob per condition, such as referrer: "
                                           '"*google.*"')
                ok = False
                continue
            value = self.context_value(field, item, None if not isinstance(item, Scalar)
                                       else item.value, what)
            if value is None:
                ok = False
            elif value not in values:
                values.append(value)
        return tuple(values) if ok else None

    def context_mapping(self, key: Scalar, node: MapNode, field: str, allowed: tuple[str, ...],
                        what: str) -> ContextSpec | None:
        words = [w for w, op in CONTEXT_OPERATOR_WORDS.items() if op in allowed]
        found, guessed = self.keys(node, list(CONTEXT_OPERATOR_WORDS), (), what)
        op, value_node = self.context_operator(node, found, guessed, what, words)
        if op is None or value_node is None:
            return None
        if op not in allowed:
            self.report(node.key(_WORD_OF[op]) or node, f"{field} cannot be compared with "
                                                        f"{op!r}", "one of " + ", ".join(words))
            return None
        value: ContextValue | tuple[ContextValue, ...] | None
        if op == "in":
            if not isinstance(value_node, ListNode):
                self.report(value_node, f"in is {describe(value_node)}",
                            f"a list, such as in: [{'mobile, tablet' if field == 'device' else '...'}]")
                return None
            value = self.context_list(field, value_node, what)
        else:
            raw = value_node.value if isinstance(value_node, Scalar) else None
            value = self.context_value(field, value_node, raw, what)
        return None if value is None else ContextSpec(field, op, value, None, key.line,
                                                      key.column)

    def context_operator(self, node: MapNode, found: dict[str, Node], guessed: set[str],
                         what: str, words: list[str]) -> tuple[str | None, Node | None]:
        return self.one_operator(
            node, [k for k, _ in node.entries if k.text in found and k.text != "name"],
            CONTEXT_OPERATOR_WORDS, found, what,
            # a misspelt operator was reported already
            None if guessed - {"name"} else "one of " + ", ".join(words),
            "one operator per condition")

    def context_value(self, field: str, node: Node, raw: object,
                      what: str) -> ContextValue | None:
        """One value of a context field, from YAML (`raw` is node.value) or a shorthand."""
        expected = _CONTEXT_EXPECTED[field]
        if not isinstance(node, Scalar) or raw is None:
            self.report(node, f"{what}: the value is {describe(node)}", expected)
            return None
        if field == "local_hour":
            hour = raw
            if isinstance(raw, str) and raw.strip().isdigit():
                hour = int(raw.strip())
            if type(hour) is not int or not 0 <= hour <= 23:
                self.report(node, f"{what}: {raw!r} is not an hour from 0 to 23", expected)
                return None
            return hour
        if field == "returning":
            if isinstance(raw, str) and raw.strip() in ("true", "false"):
                return raw.strip() == "true"
            if not isinstance(raw, bool):
                self.report(node, f"{what}: {raw!r} is not true or false", expected)
                return None
            return raw
        if field == "country" and isinstance(raw, bool) and re.fullmatch("[A-Za-z]{2}",
                                                                          node.text):
            raw = node.text  # `NO` (Norway) is a boolean in YAML 1.1
        if not isinstance(raw, str) or not raw.strip():
            shown = describe(node) if raw is node.value else repr(raw)
            self.report(node, f"{what}: the value is {shown}", expected)
            return None
        text = raw.strip()
        if field == "device" and text not in DEVICES:
            self.report(node, f"unknown device {text!r}", expected, closest(text, DEVICES))
            return None
        if field == "weekday" and text not in WEEKDAYS:
            short = text[:3].lower()
            self.report(node, f"unknown weekday {text!r}", expected,
                        short if short in WEEKDAYS else closest(text, WEEKDAYS))
            return None
        if field == "country" and not _COUNTRY.fullmatch(text):
            fix = text.upper() if _COUNTRY.fullmatch(text.upper()) else None
            self.report(node, f"country {text!r} is not a two-letter code in capitals", expected,
                        fix)
            return None
        return text

    def attribute_test(self, key: Scalar, node: Node) -> ContextSpec | None:
        expected = _CONTEXT_EXPECTED["attribute"]
        body = self.mapping(node, "attribute", expected)
        if body is None:
            return None
        found, guessed = self.keys(body, ATTRIBUTE_KEYS, ("name",), "attribute")
        name = self.text(found["name"], "the attribute name", "the name of a CRM attribute, "
                                                              "such as crm_tier") \
            if "name" in found else None
        op, value_node = self.context_operator(body, found, guessed, "attribute",
                                               list(CONTEXT_OPERATOR_WORDS))
        if op is None or value_node is None:
            return None
        value: ContextValue | tuple[ContextValue, ...] | None = None
        if op == "in":
            items = (self.items(value_node, "in", "a list of values")
                     if isinstance(value_node, ListNode) else None)
            if items is None:
                self.report(value_node, f"in is {describe(value_node)}",
                            "a list of values, such as [gold, platinum]")
            else:
                values = [self.attribute_value(item) for item in items]
                if items and all(v is not None for v in values):
                    value = tuple(dict.fromkeys(v for v in values if v is not None))
        elif op in ORDERED_OPERATORS:
            value = self.number(value_node, f"the value of attribute {name or ''}".strip(),
                                expected="a number, such as gte: 100")
        elif op == "glob":
            value = self.text(value_node, "the glob", 'a text with * wildcards, such as "*@acme.com"')
        else:
            value = self.attribute_value(value_node)
        if name is None or value is None:
            return None
        return ContextSpec("attribute", op, value, name, key.line, key.column)

    def attribute_value(self, node: Node) -> ContextValue | None:
        if isinstance(node, Scalar) and (isinstance(node.value, (str, bool))
                                         or is_number(node.value)):
            return node.value  # type: ignore[no-any-return]
        self.report(node, f"the attribute value is {describe(node)}",
                    "a text, a number or true/false")
        return None
