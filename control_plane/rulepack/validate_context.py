"""Checking context tests: `device: mobile`, `local_hour: ">= 18"`,
`attribute: {name: crm_tier, in: [gold]}`, the values each context field accepts, and the
segments a pack defines as named sets of them.
"""

from __future__ import annotations

import re

from edge_module.core.catalog import CONTEXT_FIELDS, WEEKDAYS

from .checker import Checker, closest, describe
from .source import ListNode, MapNode, Node, Scalar
from .validated import ContextSpec, SegmentSpec
from .values import is_number
from .vocabulary import ANY_SEGMENT, CONTEXT_OPERATOR_WORDS, DEVICES, ORDERED_OPERATORS

ATTRIBUTE_KEYS = ("name", *CONTEXT_OPERATOR_WORDS)
# Which operators each context field can be compared with (besides `in`, `==` and `!=`).
CONTEXT_EXTRA_OPERATORS = {"local_hour": ORDERED_OPERATORS, "referrer": ("glob",),
                           "attribute": (*ORDERED_OPERATORS, "glob")}
_CONTEXT_EXPECTED = {
    "device": "one of " + ", ".join(DEVICES) + ", or a list of them",
    "country": "a two-letter country code such as DE, or a list of them",
    "local_hour": 'an hour from 0 to 23, a list of hours, or a comparison such as ">= 18"',
    "weekday": "one of " + ", ".join(WEEKDAYS) + ", or a list of them",
    "referrer": 'a referrer URL, or a glob with * such as "*google.*"',
    "returning": "true or false",
    "attribute": "a mapping such as {name: crm_tier, in: [gold, platinum]}",
}
_SEGMENTS_EXPECTED = "a mapping of segment names to context tests, such as {mobile: {device: mobile}}"
_COMPARISON = re.compile(r"\s*[<>=!≥≤≠]")
_COUNTRY = re.compile(r"[A-Z]{2}")

ContextValue = str | int | float | bool
_WORD_OF = {op: word for word, op in CONTEXT_OPERATOR_WORDS.items()}


class ContextChecker(Checker):
    """The checks of context tests, used by conditions and segment definitions."""

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
        if isinstance(node, Scalar) and is_number(node.value):
            # within +-(2^53 - 1), as every number in a snapshot (the loader refuses more)
            return self.number(node, "the attribute value")
        if isinstance(node, Scalar) and isinstance(node.value, (str, bool)):
            return node.value  # type: ignore[no-any-return]
        self.report(node, f"the attribute value is {describe(node)}",
                    "a text, a number or true/false")
        return None

    # Segment definitions: named sets of context tests

    def segments(self, node: Node) -> tuple[SegmentSpec, ...]:
        table = self.mapping(node, "segments", _SEGMENTS_EXPECTED)
        if table is None:
            return ()
        if not table.entries:
            self.report(table, "segments is empty", _SEGMENTS_EXPECTED)
        specs = []
        for key, value in table.entries:
            if key.text == ANY_SEGMENT:
                self.report(key, 'segment name "*" is reserved: it stands for every session '
                                 "in models.thresholds", "another segment name")
                continue
            name = self.name(key, "segment name")
            known = len(self.problems)
            tests = self.segment_tests(value, name)
            # A definition with a mistake (reported) keeps its name as a stand-in, so the
            # checks across packs do not call its uses unknown too.
            if name and (tests or len(self.problems) > known):
                specs.append(SegmentSpec(name, tests, line=key.line, column=key.column))
        return tuple(specs)

    def segment_tests(self, node: Node, name: str) -> tuple[ContextSpec, ...]:
        expected = ("a mapping of context tests that must all hold, such as "
                    "{device: mobile, country: [DE, AT]}")
        body = self.mapping(node, f"segment {name}", expected)
        if body is None:
            return ()
        if not body.entries:
            self.report(body, f"segment {name} is empty", expected)
        tests: list[ContextSpec | None] = []
        for key, value in body.entries:
            if key.text not in CONTEXT_FIELDS:
                self.report(key, f"unknown context field {key.text!r} in segment {name}",
                            "one of " + ", ".join(CONTEXT_FIELDS),
                            closest(key.text, CONTEXT_FIELDS))
                tests.append(None)
            elif key.text == "attribute" and isinstance(value, ListNode):
                # Several attributes, all of which must hold.
                tests.extend(self.attribute_test(key, item) for item in
                             self.items(value, "attribute", "a list of attribute tests"))
            else:
                tests.append(self.context_test(key, value))
        return tuple(t for t in tests if t is not None) if all(tests) else ()
