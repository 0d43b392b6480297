"""Reading rule-pack YAML into a small tree that remembers where every value was written.

`yaml.safe_load` forgets positions and silently keeps the last of two equal keys, so the
node tree from `yaml.compose` is walked instead. Keys keep their text as written: YAML 1.1
would read the key `on` as the boolean true.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import yaml
from yaml.composer import Composer
from yaml.resolver import Resolver

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python reader alone
    CParser = None

from .pack_limits import PackLimitError, PackLimits, pack_limits
from .problems import Problem, RulePackError

_STANDARD_TAG = "tag:yaml.org,2002:"
_MAX_DEPTH = 64  # rule packs are a few levels deep; deeper input is a mistake or an attack


@dataclass(frozen=True)
class Scalar:
    value: Any  # as YAML resolves it (str, int, float, bool, None, date...); keys: their text
    text: str  # as written, without quotes
    line: int
    column: int


@dataclass(frozen=True)
class MapNode:
    entries: tuple[tuple[Scalar, Node], ...]  # in file order, duplicate keys dropped
    line: int
    column: int

    def get(self, key: str) -> Node | None:
        for k, v in self.entries:
            if k.text == key:
                return v
        return None

    def key(self, key: str) -> Scalar | None:
        for k, _ in self.entries:
            if k.text == key:
                return k
        return None


@dataclass(frozen=True)
class ListNode:
    items: tuple[Node, ...]
    line: int
    column: int


Node: TypeAlias = Scalar | MapNode | ListNode


def read_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of a file; unreadable or non-UTF-8 files raise `RulePackError`."""
    name = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RulePackError([Problem(name, 1, 1, f"cannot read the file: {reason}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise RulePackError(
            [Problem(name, line, column, "the file is not UTF-8 text", expected="UTF-8")]
        ) from None


def parse_yaml(text: str, filename: str) -> tuple[Node | None, list[Problem]]:
    """The document's tree (None if there is none) and the problems found reading it;
    `PackLimitError` if it is over the current `pack_limits()`."""
    limits = pack_limits()
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.bytes:
        raise PackLimitError([Problem(filename, 1, 1, f"the file is {size} bytes long",
                                      expected=f"at most {limits.bytes} bytes")])
    try:
        root = _compose(text, limits)
    except _OverBudget as exc:
        raise PackLimitError([Problem(filename, exc.line, exc.column, exc.message,
                                      expected=exc.expected)]) from None
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(exc, filename, text)]
    except yaml.reader.ReaderError as exc:
        line, column = _position(text, exc.position)
        return None, [Problem(filename, line, column, f"invalid character in YAML: {exc.reason}")]
    except yaml.YAMLError as exc:
        return None, [Problem(filename, 1, 1, f"invalid YAML: {exc}")]
    except RecursionError:
        line, column = _position(text, _deepest(text))
        return None, [Problem(filename, line, column, "the YAML nests too deeply from here",
                              expected=f"at most {_MAX_DEPTH} levels (rule packs need a few)")]
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _STANDARD_TAG + "null"):
        empty = Problem(filename, 1, 1, "the file is empty",
                        expected="a rule pack with the keys pack and triggers")
        return None, [empty]
    builder = _Builder(filename)
    tree = builder.build(root, 0)
    over = _shape_problems(tree, filename, limits)
    if over:
        raise PackLimitError(over)
    return tree, builder.problems


class _OverBudget(Exception):
    def __init__(self, mark: yaml.Mark, message: str, expected: str) -> None:
        super().__init__(message)
        self.line, self.column = mark.line + 1, mark.column + 1
        self.message, self.expected = message, expected


class _Budgeted(Composer):
    """Composes nodes while counting them as if every alias were written out, and stops at
    the budget: a few kilobytes of anchors and aliases cannot stand for millions of nodes
    that validation, compilation and the answer would each walk."""

    def start_budget(self, limits: PackLimits) -> None:
        self._limits = limits
        self._nodes = 0
        self._chars = 0
        self._weight: dict[int, tuple[int, int]] = {}  # id(node) -> its expanded (nodes, chars)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        mark = self.peek_event().start_mark  # type: ignore[attr-defined]
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            node = super().compose_node(parent, index)
            # A node still being composed (an alias inside its own anchor) counts once; the
            # tree builder reports the cycle.
            self._spend(*self._weight.get(id(node), (1, 0)), mark)
            return node
        nodes_before, chars_before = self._nodes, self._chars
        node = super().compose_node(parent, index)
        self._spend(1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0, mark)
        self._weight[id(node)] = (self._nodes - nodes_before, self._chars - chars_before)
        return node

    def _spend(self, nodes: int, chars: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        self._chars += chars
        if self._nodes > self._limits.nodes:
            raise _OverBudget(mark, f"the YAML grows past {self._limits.nodes} values here "
                              "(an alias counts every value of what it refers to)",
                              f"at most {self._limits.nodes} values with every alias "
                              "written out: fewer triggers, or fewer anchored lists reused")
        if self._chars > self._limits.bytes:
            raise _OverBudget(mark, f"the YAML's text grows past {self._limits.bytes} bytes "
                              "here (an alias repeats the text of what it refers to)",
                              f"at most {self._limits.bytes} bytes of text with every alias "
                              "written out")


class _PythonLoader(_Budgeted, yaml.SafeLoader):
    def __init__(self, text: str, limits: PackLimits) -> None:
        yaml.SafeLoader.__init__(self, text)
        self.start_budget(limits)


_FastLoader: Any = None
if CParser is not None:
    class _FastLoader(_Budgeted, CParser, Resolver):  # type: ignore[no-redef]
        """libyaml scans, this module composes: several times faster than pure Python."""

        def __init__(self, text: str, limits: PackLimits) -> None:
            CParser.__init__(self, text)
            Composer.__init__(self)
            Resolver.__init__(self)
            self.start_budget(limits)


def _compose(text: str, limits: PackLimits) -> yaml.Node | None:
    """The document's node graph, within `limits` (`_OverBudget` past them)."""
    if _FastLoader is not None:
        try:
            return _FastLoader(text, limits).get_single_node()
        except yaml.YAMLError:
            pass  # read it again in Python for the messages and positions users know
    loader = _PythonLoader(text, limits)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _shape_problems(root: Node, filename: str, limits: PackLimits) -> list[Problem]:
    """The pack's trigger and condition counts against `limits` (no problems for files
    without triggers, such as the catalog)."""
    if not isinstance(root, MapNode):
        return []
    units: list[Node] = []  # triggers, and sequence steps, which fire as triggers
    triggers = root.get("triggers")
    if isinstance(triggers, ListNode):
        units.extend(triggers.items)
    sequences = root.get("sequences")
    if isinstance(sequences, ListNode):
        for sequence in sequences.items:
            steps = sequence.get("steps") if isinstance(sequence, MapNode) else None
            if isinstance(steps, ListNode):
                units.extend(steps.items)
    if len(units) > limits.triggers:
        where = triggers if isinstance(triggers, ListNode) else root
        return [Problem(filename, where.line, where.column,
                        f"the pack has {len(units)} triggers and sequence steps",
                        expected=f"at most {limits.triggers} per pack: split it into packs")]
    problems: list[Problem] = []
    total = 0
    for unit in units:
        count = _conditions(unit)
        total += count
        if count > limits.conditions_per_trigger:
            ident = unit.get("id") if isinstance(unit, MapNode) else None
            problems.append(Problem(
                filename, unit.line, unit.column, f"the trigger has {count} conditions",
                trigger=ident.text if isinstance(ident, Scalar) else None,
                expected=f"at most {limits.conditions_per_trigger} conditions per trigger"))
    if total > limits.conditions:
        problems.append(Problem(filename, root.line, root.column,
                                f"the pack has {total} conditions",
                                expected=f"at most {limits.conditions} conditions per pack: "
                                         "split it into packs"))
    return problems


def _conditions(node: Node) -> int:
    """Items of the `when` lists in `node`, nested ones (`sustained`) included."""
    if isinstance(node, ListNode):
        return sum(_conditions(item) for item in node.items)
    if not isinstance(node, MapNode):
        return 0
    count = 0
    for key, value in node.entries:
        if key.text == "when" and isinstance(value, ListNode):
            count += len(value.items)
        count += _conditions(value)
    return count


def _position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _deepest(text: str) -> int:
    """Where flow brackets ([ and {, outside quotes) first open more than _MAX_DEPTH deep,
    else where the deepest-indented line starts: the place to look at in a file that nests
    too deeply for the reader."""
    depth, quote = 0, ""
    for k, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return k
        elif c in "]}":
            depth -= 1
    offset, deepest, at = 0, -1, 0
    for row in text.splitlines(keepends=True):
        indent = len(row) - len(row.lstrip(" "))
        if row.strip() and indent > deepest:
            deepest, at = indent, offset + indent
        offset += len(row)
    return at


def _syntax_problem(exc: yaml.MarkedYAMLError, filename: str, text: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context and exc.context_mark:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    # The usual causes, in the words of a rule pack rather than of the YAML spec.
    context = f"{exc.context} {exc.problem}"
    expected = None
    row = text.splitlines()[line - 1] if mark and line <= len(text.splitlines()) else ""
    key = row.lstrip(" -").split(":", 1)[0]
    if ":" in row and len(key) > 1024:  # the reader takes plain keys of 1,024 characters
        message = f"invalid YAML: a key of {len(key)} characters"
        expected = "a key of at most 1,024 characters (rule pack keys are short names)"
        column = row.index(key[0]) + 1
    elif "mapping values are not allowed" in context:
        expected = 'quotes around a value that holds ": ", e.g. description: "Sale: 10 % off"'
    elif "block scalar" in context:
        expected = 'quotes around a value that starts with ">", e.g. dwell: ">= 3s"'
    elif "alias" in context:
        expected = "quotes around a value that starts with \"*\", e.g. page: \"*\""
    elif "'\\t'" in context:
        expected = "indentation with spaces, not tabs"
    return Problem(filename, line, column, message, expected=expected)


def _lone_surrogate(text: str) -> str | None:
    """The first half of a UTF-16 surrogate pair in `text` that is not in a pair."""
    k = 0
    while k < len(text):
        c = text[k]
        if "\ud800" <= c <= "\udbff" and k + 1 < len(text) and "\udc00" <= text[k + 1] <= "\udfff":
            k += 2
            continue
        if "\ud800" <= c <= "\udfff":
            return c
        k += 1
    return None


class _Builder:
    """Turns yaml nodes into `Node`s, noting duplicate keys and unsupported constructs."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []
        self._built: dict[int, Node] = {}  # aliases reuse the node they point at: no blow-up
        self._open: set[int] = set()
        self._constructor = yaml.SafeLoader("")

    def _report(self, line: int, column: int, message: str, expected: str | None = None) -> None:
        self.problems.append(Problem(self.filename, line, column, message, expected=expected))

    def build(self, node: yaml.Node, depth: int) -> Node:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        key = id(node)
        if key in self._built:
            return self._built[key]
        if key in self._open or depth > _MAX_DEPTH:
            self._report(line, column, "the YAML nests too deeply (or an alias refers to itself)")
            return Scalar(None, "", line, column)
        self._open.add(key)
        try:
            if isinstance(node, yaml.ScalarNode):
                built: Node = self._scalar(node, line, column)
            else:
                self._check_collection_tag(node, line, column)
                if isinstance(node, yaml.SequenceNode):
                    items = tuple(self.build(item, depth + 1) for item in node.value)
                    built = ListNode(items, line, column)
                elif isinstance(node, yaml.MappingNode):
                    built = self._mapping(node, depth, line, column)
                else:  # the composer makes no other kind of node
                    raise TypeError(f"unexpected YAML node {type(node).__name__}")
        finally:
            self._open.discard(key)
        self._built[key] = built
        return built

    def _scalar(self, node: yaml.ScalarNode, line: int, column: int) -> Scalar:
        if not node.tag.startswith(_STANDARD_TAG):
            # Mostly an unquoted "!= 3": keep what was meant so the tag is the only problem.
            meant = f"{node.tag} {node.value}".strip()
            self._report(line, column, f"unsupported YAML tag {node.tag!r}",
                         expected=f'the value in quotes, e.g. "{meant}"')
            return Scalar(meant, meant, line, column)
        try:
            value = self._constructor.construct_object(node)
        except yaml.YAMLError:
            value = node.value  # e.g. a lone "=" that YAML 1.1 calls a "value" tag
        except ValueError as exc:
            if node.tag.endswith(":int"):  # thousands of digits: past Python's int() limit
                self._report(line, column, "this number has too many digits",
                             expected="a number of at most a few dozen digits")
            else:  # a date that is not one (2024-13-45), and the like
                self._report(line, column, f"not a valid {node.tag.rpartition(':')[2]}: "
                             f"{exc}", expected="a quoted string, or a valid value")
            value = node.value
        raw = self._text(node.value, line, column)
        if type(value) is str:
            value = self._text(value, line, column, report=False)
        return Scalar(value, raw, line, column)

    def _text(self, text: str, line: int, column: int, report: bool = True) -> str:
        """`text` with JSON-style surrogate pairs ("\\ud83d\\ude00", which YAML reads as
        two halves) joined into their character; a half left alone is reported: no page,
        file or terminal can show it, so the console and the CLI failed on the pack."""
        try:
            text.encode()
            return text
        except UnicodeEncodeError:
            pass
        lone = _lone_surrogate(text)
        if report and lone is not None:
            self._report(line, column, f"\\u{ord(lone):04x} is half of a character (a lone "
                         "UTF-16 surrogate)", expected="the character itself, or both halves "
                         "together (e.g. \\ud83d\\ude00), or \\U0001F600")
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    def _check_collection_tag(self, node: yaml.Node, line: int, column: int) -> None:
        if node.tag not in (_STANDARD_TAG + "map", _STANDARD_TAG + "seq"):
            self._report(line, column, f"unsupported YAML tag {node.tag!r}",
                         expected="a plain mapping or list")

    def _mapping(self, node: yaml.MappingNode, depth: int, line: int, column: int) -> MapNode:
        entries: list[tuple[Scalar, Node]] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            k_line, k_col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self._report(k_line, k_col, "a key must be a plain name, not a list or mapping")
                continue
            text = self._text(key_node.value, k_line, k_col)
            if text == "<<" and key_node.tag == _STANDARD_TAG + "merge":
                self._report(k_line, k_col, "YAML merge keys (<<) are not supported",
                             expected="the keys written out")
                continue
            if text in first_line:
                self._report(k_line, k_col,
                             f"duplicate key {text!r} (first at line {first_line[text]})",
                             expected="each key once per mapping")
                continue
            first_line[text] = k_line
            entries.append((Scalar(text, text, k_line, k_col), self.build(value_node, depth + 1)))
        return MapNode(tuple(entries), line, column)


def plain(node: Node) -> Any:
    """The tree as plain Python values, keys as written (so `on` stays "on", as in YAML 1.2
    which editors use); for checking a pack against its JSON Schema."""
    if isinstance(node, MapNode):
        return {k.text: plain(v) for k, v in node.entries}
    if isinstance(node, ListNode):
        return [plain(item) for item in node.items]
    return node.value
