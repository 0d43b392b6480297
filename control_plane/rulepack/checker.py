"""The checker's toolbox: shapes, names and plain values, each mistake recorded as a `Problem`.

Every check records its problems and returns a stand-in (usually None), so one mistake
never hides the next. The pack, condition and model checks build on `Checker`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from edge_module.core.catalog import OPERATOR_WORDS, OPERATORS

from .problems import Problem
from .source import ListNode, MapNode, Node, Scalar
from .validated import Located
from .values import (
    DURATION_EXPECTED,
    MAX_NUMBER,
    PERCENT_EXPECTED,
    ValueProblem,
    as_written,
    is_number,
    number_value,
    parse_duration,
    parse_percent,
)

_Value = TypeVar("_Value")

NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # trigger, sequence, step, segment and group names
NAME_RULE = "lowercase letters, digits, '-' and '_', starting with a letter or digit"
_OPERATOR_ALIASES = {"=>": ">=", "=<": "<=", "=": "==", "===": "==", "<>": "!=", "=!": "!=",
                     "!==": "!=", "≥": ">=", "≤": "<=", "≠": "!="}
_WORD_FOR_OPERATOR = {op: word for word, op in OPERATOR_WORDS.items()}
SHORTHAND_EXPECTED = '"<operator> <value>" such as ">= 3s"'
# The operator is either symbols (">=3s" needs no space) or a word followed by a space.
_SHORTHAND = re.compile(r"\s*([<>=!≥≤≠]+|[A-Za-z_]+(?=\s))\s*(.*?)\s*", re.DOTALL)


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option `word` was most likely meant to be, if any is close."""
    options = list(options)
    if word in _WORD_FOR_OPERATOR and _WORD_FOR_OPERATOR[word] in options:
        return _WORD_FOR_OPERATOR[word]  # `>=: 3s` in a mapping means `gte: 3s`
    if word.lower() in options:
        return word.lower()
    matches = difflib.get_close_matches(word, options, n=1)
    return matches[0] if matches else None


def closest_operator(op: str) -> str | None:
    """The operator `op` was meant to be: "=>" -> ">=", "gte" -> ">="."""
    if op.lower() in OPERATOR_WORDS:
        return OPERATOR_WORDS[op.lower()]
    if op in _OPERATOR_ALIASES:
        return _OPERATOR_ALIASES[op]
    matches = difflib.get_close_matches(op, OPERATORS, n=1, cutoff=0.5)
    return matches[0] if matches else None


def describe(node: Node) -> str:
    """What a node is, for "x is a list (expected a mapping)"."""
    if isinstance(node, MapNode):
        return "a mapping"
    if isinstance(node, ListNode):
        return "a list"
    value = node.value
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"a boolean ({node.text})"
    if isinstance(value, int):
        return f"a number ({node.text})"
    if isinstance(value, float):
        return f"a decimal number ({node.text})"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__} ({node.text})"


def slug(value: str, pattern: re.Pattern[str]) -> str | None:
    """`value` made to fit `pattern` (a name rule), if that is possible."""
    allowed = r"[^a-z0-9_-]+" if "_" in pattern.pattern else r"[^a-z0-9-]+"
    fixed = re.sub(allowed, "-", value.strip().lower()).strip("-_")
    return fixed if fixed and pattern.fullmatch(fixed) else None


class Checker:
    """Checks one file; problems found inside a trigger carry its id (`self.trigger`)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []
        self.trigger: str | None = None
        self.segment_uses: list[Located] = []

    def report(self, node: Node, message: str, expected: str | None = None,
               suggestion: str | None = None) -> None:
        self.problems.append(Problem(self.filename, node.line, node.column, message,
                                     self.trigger, expected, suggestion))

    # Shapes

    def mapping(self, node: Node, what: str, expected: str = "a mapping") -> MapNode | None:
        if isinstance(node, MapNode):
            return node
        self.report(node, f"{what} is {describe(node)}", expected)
        return None

    def mapping_keys(self, node: Node, what: str, expected: str, allowed: Sequence[str],
                     required: Sequence[str] = ()) -> dict[str, Node] | None:
        """A mapping's allowed keys' values (`keys`); None, reported, when it is no mapping."""
        body = self.mapping(node, what, expected)
        return None if body is None else self.keys(body, allowed, required, what)[0]

    def mappings(self, items: Iterable[Node], what: str, expected: str, allowed: Sequence[str],
                 required: Sequence[str], where: str) -> Iterator[tuple[MapNode, dict[str, Node]]]:
        """The items that are mappings, each with its allowed keys' values (`keys`); the
        others are reported."""
        for item in items:
            body = self.mapping(item, what, expected)
            if body is not None:
                yield body, self.keys(body, allowed, required, where)[0]

    def keys(self, node: MapNode, allowed: Sequence[str], required: Sequence[str],
             what: str) -> tuple[dict[str, Node], set[str]]:
        """The allowed keys' values, and the keys suggested for misspelt ones."""
        found: dict[str, Node] = {}
        guessed: set[str] = set()
        for key, value in node.entries:
            if key.text in allowed:
                found[key.text] = value
                continue
            guess = closest(key.text, allowed)
            if guess:
                guessed.add(guess)
            self.report(key, f"unknown key {key.text!r} in {what}",
                        "one of " + ", ".join(allowed), guess)
        for name in required:
            # A misspelt required key is one mistake: "unknown key 'actoin'" says it all.
            if name not in found and name not in guessed:
                self.report(node, f"{what} is missing the required key {name!r}")
        return found, guessed

    def items(self, node: Node, what: str, expected: str) -> tuple[Node, ...]:
        """A non-empty list's items; one value stands for a list of one."""
        if isinstance(node, ListNode):
            if not node.items:
                self.report(node, f"{what} is an empty list", expected)
            return node.items
        return (node,)

    # Plain values

    def text(self, node: Node, what: str, expected: str = "a non-empty string") -> str | None:
        if isinstance(node, Scalar) and isinstance(node.value, str):
            if node.value.strip():
                return node.value
            self.report(node, f"{what} is empty", expected)
            return None
        if isinstance(node, Scalar) and node.value is not None:
            expected = f'{expected}; put it in quotes: "{node.text}"'
        self.report(node, f"{what} is {describe(node)}", expected)
        return None

    def description(self, node: Node | None) -> str | None:
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return None
        return self.text(node, "description", "text")

    def name(self, node: Node, what: str, pattern: re.Pattern[str] = NAME,
             rule: str = NAME_RULE) -> str:
        value = self.text(node, what, rule)
        if value is None:
            return ""
        if not pattern.fullmatch(value):
            self.report(node, f"{what} {value!r} is not allowed", rule, slug(value, pattern))
        return value

    def choice(self, node: Node, what: str, options: Sequence[str]) -> str | None:
        expected = "one of " + ", ".join(options)
        value = self.text(node, what, expected)
        if value is None:
            return None
        if value not in options:
            self.report(node, f"unknown {what} {value!r}", expected, closest(value, options))
            return None
        return value

    def integer(self, node: Node, what: str, low: int, high: int | None,
                expected: str | None = None) -> int | None:
        if expected is None:
            expected = (f"an integer >= {low}" if high is None
                        else f"an integer from {low} to {high}")
        if not (isinstance(node, Scalar) and type(node.value) is int):
            self.report(node, f"{what} is {describe(node)}", expected)
            return None
        value: int = node.value
        if high is None and value > MAX_NUMBER:  # a count in the snapshot: exact in JSON
            self.report(node, f"{what} {as_written(value)} is too large",
                        f"{expected}, at most {MAX_NUMBER} (2^53 - 1)")
            return None
        if value < low or (high is not None and value > high):
            self.report(node, f"{what} {value} is out of range", expected)
            return None
        return value

    def number(self, node: Node, what: str, low: float | None = None,
               expected: str = "a number") -> float | None:
        """Any finite number (`low`: the smallest allowed, exclusive)."""
        # as a threshold's value is read: 1e-9 (a string to YAML 1.1) is a number too
        value = number_value(node.value) if isinstance(node, Scalar) else None
        if value is None:
            self.report(node, f"{what} is {describe(node)}", expected)
            return None
        if low is not None and value <= low:
            self.report(node, f"{what} {node.text} is out of range", expected)
            return None
        if not -MAX_NUMBER <= value <= MAX_NUMBER:  # the snapshot's bound (exact in JSON)
            self.report(node, f"{what} {as_written(node.text)} is too large",
                        f"{expected}, within +-{MAX_NUMBER} (2^53 - 1)")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        if isinstance(node, Scalar) and isinstance(node.value, bool):
            return node.value
        self.report(node, f"{what} is {describe(node)}", "true or false")
        return None

    def duration(self, node: Node, what: str, positive: bool = False) -> int | None:
        if not isinstance(node, Scalar) or not (isinstance(node.value, str)
                                                 or is_number(node.value)):
            self.report(node, f"{what} is {describe(node)}", DURATION_EXPECTED)
            return None
        ms = self.parsed(node, what, lambda: parse_duration(node.value))
        if ms is None:
            return None
        if positive and ms == 0:
            self.report(node, f"{what} is 0", "a duration above 0 such as 3s")
            return None
        return ms

    def percent(self, node: Node, what: str) -> int | float | None:
        if not isinstance(node, Scalar):
            self.report(node, f"{what} is {describe(node)}", PERCENT_EXPECTED)
            return None
        return self.parsed(node, what, lambda: parse_percent(node.value))

    def parsed(self, node: Node, what: str, parse: Callable[[], _Value]) -> _Value | None:
        """`parse()`, or None with the `ValueProblem` it raised reported at `node`."""
        try:
            return parse()
        except ValueProblem as exc:
            self.report(node, f"{what}: {exc.message}", exc.expected, exc.suggestion)
            return None

    # Operators, shared by signal conditions and context tests

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

    # Segment names: defined in any pack, so only their spelling is checked here

    def segment_name(self, node: Node, what: str = "segment") -> str | None:
        """A segment name used here; whether some pack defines it is checked across packs."""
        value = self.text(node, what, "the name of a segment defined under segments:")
        if value is None:
            return None
        self.segment_uses.append(Located(value, node.line, node.column, self.trigger))
        return value
