"""From a rule pack's YAML to the model, reporting every problem found, not just the first.

Each check records its problems and returns a stand-in value, so one mistake never hides
the next; the model leaves this module only when no problem was found.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from edge_module.core.catalog import (
    DEFAULT_VELOCITY_WINDOW_MS,
    EVENT_TYPES,
    MAX_WINDOW_MS,
    OPERATOR_WORDS,
    OPERATORS,
    SIGNALS,
    TIERS,
    SignalSpec,
)

from .model import ActionSpec, CapSpec, ConditionSpec, EventFilter, Pack, TriggerSpec
from .problems import Problem, RulePackError, sort_problems
from .source import ListNode, MapNode, Node, Scalar, parse_yaml, read_text
from .values import (
    DURATION_EXPECTED,
    ValueProblem,
    is_number,
    parse_duration,
    parse_number,
    parse_ratio,
)

PACK_KEYS = ("pack", "description", "triggers")
TRIGGER_KEYS = ("id", "description", "page", "on", "when", "action", "cap")
ON_KEYS = ("type", "name", "target")
ACTION_KEYS = ("content", "tier", "delay", "priority")
CAP_KEYS = ("per_session", "per_page", "cooldown")
TARGETED_EVENTS = ("click", "focus", "input", "submit", "blur", "hover")
PACK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
TRIGGER_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
CATALOG_FILES = ("catalog.yaml", "catalog.yml")  # the content catalog, beside the packs

_PACK_NAME_RULE = "lowercase letters, digits and '-', starting with a letter or digit"
_TRIGGER_ID_RULE = "lowercase letters, digits, '-' and '_', starting with a letter or digit"
_PAGE_EXPECTED = "a path glob such as /pricing or /blog/*, or \"*\" for any page"
_TARGET_EXPECTED = 'a CSS selector in quotes, such as "#cta"'
_ON_EXPECTED = ("an event type such as page_view, "
                "or a mapping such as {type: custom, name: cart_abandon}")
_CONDITION_EXPECTED = 'a signal and its test, such as - dwell: ">= 3s"'
_SHORTHAND_EXPECTED = '"<operator> <value>" such as ">= 3s"'
_OPERATOR_ALIASES = {"=>": ">=", "=<": "<=", "=": "==", "===": "==", "<>": "!=", "=!": "!=",
                     "!==": "!=", "≥": ">=", "≤": "<=", "≠": "!="}
_WORD_FOR_OPERATOR = {op: word for word, op in OPERATOR_WORDS.items()}
# The operator is either symbols (">=3s" needs no space) or a word followed by a space.
_SHORTHAND = re.compile(r"\s*([<>=!≥≤≠]+|[A-Za-z_]+(?=\s))\s*(.*?)\s*", re.DOTALL)
_EXAMPLE_VALUE = {"duration": "3s", "ratio": "78%", "number": "800"}
_EXAMPLE_PARAM = {"target": '"#cta"', "window": "2s"}
_VALUE_PARSERS = {"duration": parse_duration, "ratio": parse_ratio, "number": parse_number}


def load_pack(text: str, filename: str) -> Pack:
    """Validate one rule pack's YAML text; `RulePackError` lists every problem found."""
    return _guarded(filename, lambda: _load(text, filename))


def load_pack_file(path: str | os.PathLike[str]) -> Pack:
    """`load_pack` on a file; problems name the file by `path` as given."""
    name = os.fspath(path)
    return _guarded(name, lambda: _load(read_text(path), name))


def load_pack_dir(path: str | os.PathLike[str]) -> list[Pack]:
    """Every pack file directly in a folder, by name; one `RulePackError` for all their problems."""
    folder = os.fspath(path)
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_file() and is_pack_file(e.name))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RulePackError([Problem(folder, 1, 1, f"cannot list the folder: {reason}")]) from None
    packs: list[Pack] = []
    problems: list[Problem] = []
    for name in names:
        try:
            packs.append(load_pack_file(os.path.join(folder, name)))
        except RulePackError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RulePackError(problems)
    return packs


def is_pack_file(name: str) -> bool:
    """A rule pack by its name: YAML, and neither a test file nor the content catalog."""
    return (name.endswith((".yaml", ".yml"))
            and not name.endswith((".test.yaml", ".test.yml"))
            and name not in CATALOG_FILES)


def _guarded(filename: str, load: Callable[[], Pack]) -> Pack:
    try:
        return load()
    except RulePackError:
        raise
    except Exception as exc:  # callers are promised a Problem, never a traceback
        problem = Problem(filename, 1, 1, f"internal error while reading the pack: "
                                          f"{type(exc).__name__}: {exc}")
        raise RulePackError([problem]) from exc


def _load(text: str, filename: str) -> Pack:
    root, problems = parse_yaml(text, filename)
    if root is None:
        raise RulePackError(problems)
    checker = _Checker(filename)
    pack = checker.pack(root, hashlib.sha256(text.encode("utf-8")).hexdigest())
    problems = sort_problems(problems + checker.problems)
    if problems:
        raise RulePackError(problems)
    return pack


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


def _slug(value: str, pattern: re.Pattern[str]) -> str | None:
    allowed = r"[^a-z0-9_-]+" if pattern is TRIGGER_ID else r"[^a-z0-9-]+"
    slug = re.sub(allowed, "-", value.strip().lower()).strip("-_")
    return slug if slug and pattern.fullmatch(slug) else None


def _mapping_example(signal: SignalSpec) -> str:
    parts = [f"{p}: {_EXAMPLE_PARAM.get(p, '...')}" for p in signal.required]
    parts.append(f"gte: {_EXAMPLE_VALUE[signal.kind]}")
    return "{" + ", ".join(parts) + "}"


class _Checker:
    """Checks one file; problems found inside a trigger carry its id (`self.trigger`)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []
        self.trigger: str | None = None

    def report(self, node: Node, message: str, expected: str | None = None,
               suggestion: str | None = None) -> None:
        self.problems.append(Problem(self.filename, node.line, node.column, message,
                                     self.trigger, expected, suggestion))

    # Shapes and plain values

    def mapping(self, node: Node, what: str, expected: str = "a mapping") -> MapNode | None:
        if isinstance(node, MapNode):
            return node
        self.report(node, f"{what} is {describe(node)}", expected)
        return None

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

    def name(self, node: Node, what: str, pattern: re.Pattern[str], rule: str) -> str:
        value = self.text(node, what, rule)
        if value is None:
            return ""
        if not pattern.fullmatch(value):
            self.report(node, f"{what} {value!r} is not allowed", rule, _slug(value, pattern))
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
        if value < low or (high is not None and value > high):
            self.report(node, f"{what} {value} is out of range", expected)
            return None
        return value

    def duration(self, node: Node, what: str) -> int | None:
        if not isinstance(node, Scalar) or not (isinstance(node.value, str)
                                                 or is_number(node.value)):
            self.report(node, f"{what} is {describe(node)}", DURATION_EXPECTED)
            return None
        try:
            return parse_duration(node.value)
        except ValueProblem as exc:
            self.report(node, f"{what}: {exc.message}", exc.expected, exc.suggestion)
            return None

    # The pack and its triggers

    def pack(self, root: Node, sha256: str) -> Pack:
        top = self.mapping(root, "the rule pack", "a mapping with the keys pack and triggers")
        if top is None:
            return Pack("", self.filename, sha256, ())
        found, _ = self.keys(top, PACK_KEYS, ("pack", "triggers"), "the rule pack")
        name_node = found.get("pack")
        name = "" if name_node is None else self.name(name_node, "pack", PACK_NAME,
                                                       _PACK_NAME_RULE)
        if name_node is not None and f"{name}.yaml" in CATALOG_FILES:
            # The registry stores a pack as <name>.yaml, beside the content catalog.
            self.report(name_node, f"pack name {name!r} is reserved for the content catalog",
                        "another pack name")
        description = self.description(found.get("description"))
        triggers = self.triggers(found["triggers"]) if "triggers" in found else ()
        where = top if name_node is None else name_node
        return Pack(name, self.filename, sha256, triggers, description, where.line, where.column)

    def triggers(self, node: Node) -> tuple[TriggerSpec, ...]:
        if not isinstance(node, ListNode):
            self.report(node, f"triggers is {describe(node)}",
                        "a list of triggers, each starting with '- id: ...'")
            return ()
        if not node.items:
            self.report(node, "triggers is empty", "at least one trigger")
            return ()
        specs: list[TriggerSpec] = []
        first: dict[str, Node] = {}
        for item in node.items:
            self.trigger = None
            trigger = self.mapping(item, "a trigger", "a mapping starting with 'id: ...'")
            if trigger is None:
                continue
            id_node = trigger.get("id")
            if isinstance(id_node, Scalar) and id_node.value is not None and id_node.text:
                self.trigger = id_node.text
            spec = self.trigger_spec(trigger)
            if id_node is not None and spec.id:
                if spec.id in first:
                    self.report(id_node, f"duplicate trigger id {spec.id!r} (first defined at "
                                         f"line {first[spec.id].line})",
                                "trigger ids unique within the pack")
                else:
                    first[spec.id] = id_node
            specs.append(spec)
        self.trigger = None
        return tuple(specs)

    def trigger_spec(self, node: MapNode) -> TriggerSpec:
        found, _ = self.keys(node, TRIGGER_KEYS, ("id", "action"), "the trigger")
        id_node = found.get("id")
        tid = "" if id_node is None else self.name(id_node, "trigger id", TRIGGER_ID,
                                                   _TRIGGER_ID_RULE)
        where = node if id_node is None else id_node
        return TriggerSpec(
            id=tid,
            pages=self.pages(found.get("page")),
            on=self.on(found["on"]) if "on" in found else None,
            when=self.conditions(found["when"]) if "when" in found else (),
            action=self.action(found["action"]) if "action" in found else ActionSpec(""),
            cap=self.cap(found["cap"]) if "cap" in found else CapSpec(),
            description=self.description(found.get("description")),
            line=where.line,
            column=where.column,
        )

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
            fix = (urlsplit(glob).path or "/") if "://" in glob else "/" + glob.lstrip()
            self.report(node, f"page {glob!r} must start with '/' (or be \"*\" for any page)",
                        _PAGE_EXPECTED, fix)
            return False
        if "?" in glob or "#" in glob:
            path_only = re.split(r"[?#]", glob)[0]
            self.report(node, f"page {glob!r} contains '?' or '#': pages match the URL path only",
                        _PAGE_EXPECTED, path_only or None)
            return False
        return True

    def on(self, node: Node) -> EventFilter | None:
        if isinstance(node, Scalar) and isinstance(node.value, str):
            event_type = self.event_type(node)
            if event_type == "custom":
                self.report(node, "a custom event needs a name",
                            "on: {type: custom, name: cart_abandon}")
            return EventFilter(event_type)
        if not isinstance(node, MapNode):
            self.report(node, f"on is {describe(node)}", _ON_EXPECTED)
            return None
        found, _ = self.keys(node, ON_KEYS, ("type",), "on")
        event_type = self.event_type(found["type"]) if "type" in found else ""
        name: str | None = None
        target: str | None = None
        if event_type == "custom" and "name" not in found:
            self.report(node, "on is missing the required key 'name' (custom events are "
                              "matched by name)", "{type: custom, name: cart_abandon}")
        if "name" in found:
            if event_type == "custom":
                name = self.text(found["name"], "name")
            elif event_type:
                self.report(node.key("name") or node,
                            f"name is only allowed for custom events, not {event_type}")
        if "target" in found:
            if event_type in TARGETED_EVENTS:
                target = self.text(found["target"], "target", _TARGET_EXPECTED)
            elif event_type:
                self.report(node.key("target") or node,
                            f"target is not allowed for {event_type} events",
                            f"target only with {', '.join(TARGETED_EVENTS)}")
        return EventFilter(event_type, name, target)

    def event_type(self, node: Node) -> str:
        expected = "one of " + ", ".join(EVENT_TYPES)
        value = self.text(node, "the event type", expected)
        if value is None:
            return ""
        if value not in EVENT_TYPES:
            self.report(node, f"unknown event type {value!r}", expected,
                        closest(value, EVENT_TYPES))
            return ""
        return value

    # Conditions

    def conditions(self, node: Node) -> tuple[ConditionSpec, ...]:
        if not isinstance(node, ListNode):
            self.report(node, f"when is {describe(node)}", f"a list of conditions, each "
                                                            f"{_CONDITION_EXPECTED}")
            return ()
        specs: list[ConditionSpec] = []
        for item in node.items:
            cond = self.mapping(item, "a condition", _CONDITION_EXPECTED)
            if cond is None:
                continue
            if len(cond.entries) != 1:
                names = ", ".join(k.text for k, _ in cond.entries)
                message = (f"a condition names exactly one signal; this one has "
                           f"{len(cond.entries)}: {names}" if cond.entries
                           else "a condition is empty")
                self.report(cond, message, "one signal per list item, each starting with '- '")
            for key, value in cond.entries:
                spec = self.condition(key, value)
                if spec is not None:
                    specs.append(spec)
        return tuple(specs)

    def condition(self, key: Scalar, node: Node) -> ConditionSpec | None:
        signal = SIGNALS.get(key.text)
        if signal is None:
            self.report(key, f"unknown signal {key.text!r}", "one of " + ", ".join(SIGNALS),
                        closest(key.text, SIGNALS))
            return None
        what = f"the {signal.name} condition"
        params: dict[str, Node] = {}
        op: str | None = None
        value_node: Node | None = None
        if isinstance(node, Scalar) and isinstance(node.value, str):
            if signal.required:
                self.report(node, f"{signal.name} needs {' and '.join(signal.required)}: "
                                  "write the condition as a mapping", _mapping_example(signal))
                return None
            parsed = self.shorthand(node, what)
            if parsed is None:
                return None
            op, raw = parsed
            value = self.signal_value(node, raw, signal, what)
        elif isinstance(node, MapNode):
            op, value_node, params = self.mapping_form(node, signal, what)
            value = None if value_node is None else self.mapping_value(value_node, signal, what)
        else:
            self.report(node, f"{what} is {describe(node)}",
                        f"{_SHORTHAND_EXPECTED}, or a mapping such as {_mapping_example(signal)}")
            return None
        window = self.window(params.get("window")) if "window" in signal.params else None
        target = self.text(params["target"], "target", _TARGET_EXPECTED) if "target" in params \
            else None
        if op is None or value is None:
            return None
        return ConditionSpec(signal.name, op, value, window, target, key.line, key.column)

    def shorthand(self, node: Scalar, what: str) -> tuple[str, str] | None:
        text: str = node.value
        match = _SHORTHAND.fullmatch(text)
        if match is None:
            self.report(node, f"{what}: {text!r} is not a comparison", _SHORTHAND_EXPECTED,
                        f">= {text.strip()}" if text.strip() else None)
            return None
        op, raw = match.group(1), match.group(2)
        if op not in OPERATORS:
            self.report(node, f"unknown operator {op!r}", "one of " + " ".join(OPERATORS),
                        closest_operator(op))
            return None
        if not raw:
            self.report(node, f"{what}: no value after {op!r}", _SHORTHAND_EXPECTED)
            return None
        return op, raw

    def mapping_form(self, node: MapNode, signal: SignalSpec,
                     what: str) -> tuple[str | None, Node | None, dict[str, Node]]:
        """The operator, the node holding the value, and the signal's parameters."""
        found, guessed = self.keys(node, tuple(OPERATOR_WORDS) + signal.params, signal.required,
                                   what)
        params = {p: found[p] for p in signal.params if p in found}
        ops = [k for k, _ in node.entries if k.text in OPERATOR_WORDS]
        if not ops:
            if not guessed & set(OPERATOR_WORDS):  # else a misspelt operator was reported
                self.report(node, f"{what} has no operator",
                            f"one of {', '.join(OPERATOR_WORDS)}, as in {_mapping_example(signal)}")
            return None, None, params
        if len(ops) > 1:
            self.report(ops[1], f"{what} has more than one operator "
                                f"({', '.join(k.text for k in ops)})",
                        "one operator per condition; write another condition for the other bound")
            return None, None, params
        return OPERATOR_WORDS[ops[0].text], found[ops[0].text], params

    def mapping_value(self, node: Node, signal: SignalSpec, what: str) -> int | float | None:
        if isinstance(node, Scalar) and (isinstance(node.value, str) or is_number(node.value)):
            return self.signal_value(node, node.value, signal, what)
        self.report(node, f"{what}: the value is {describe(node)}",
                    f"a {signal.kind} such as {_EXAMPLE_VALUE[signal.kind]}")
        return None

    def signal_value(self, node: Node, raw: object, signal: SignalSpec,
                     what: str) -> int | float | None:
        try:
            return _VALUE_PARSERS[signal.kind](raw)
        except ValueProblem as exc:
            self.report(node, f"{what}: {exc.message}", exc.expected, exc.suggestion)
            return None

    def window(self, node: Node | None) -> int:
        if node is None:
            return DEFAULT_VELOCITY_WINDOW_MS
        ms = self.duration(node, "window")
        if ms is not None and not 0 < ms <= MAX_WINDOW_MS:
            self.report(node, f"window {ms}ms is out of range",
                        f"a duration above 0 and at most {MAX_WINDOW_MS // 60_000}m")
        return DEFAULT_VELOCITY_WINDOW_MS if ms is None else ms

    # Action and cap

    def action(self, node: Node) -> ActionSpec:
        action = self.mapping(node, "action",
                              "a mapping with content (and optionally tier, delay, priority)")
        if action is None:
            return ActionSpec("")
        found, _ = self.keys(action, ACTION_KEYS, ("content",), "action")
        content = (self.text(found["content"], "content", "a content id such as discount-nudge-10")
                   if "content" in found else None)
        tier = self.choice(found["tier"], "tier", TIERS) if "tier" in found else "immediate"
        delay = self.duration(found["delay"], "delay") if "delay" in found else 0
        priority = (self.integer(found["priority"], "priority", MIN_PRIORITY, MAX_PRIORITY)
                    if "priority" in found else 0)
        if tier == "queued" and delay == 0:
            where = found.get("delay") or found["tier"]
            self.report(where, "a queued action needs a delay greater than 0",
                        "a delay such as 3s, or tier: immediate")
        where = found.get("content", action)
        return ActionSpec(content or "", tier or "immediate", delay or 0, priority or 0,
                          where.line, where.column)

    def cap(self, node: Node) -> CapSpec:
        cap = self.mapping(node, "cap", "a mapping with per_session, per_page and/or cooldown")
        if cap is None:
            return CapSpec()
        found, _ = self.keys(cap, CAP_KEYS, (), "cap")
        per_session = (self.integer(found["per_session"], "per_session", 1, None,
                                    "an integer >= 1; leave per_session out for no limit")
                       if "per_session" in found else None)
        per_page: int | None = 1
        if "per_page" in found:
            per_page = self.per_page(found["per_page"])
        cooldown = self.duration(found["cooldown"], "cooldown") if "cooldown" in found else 0
        return CapSpec(per_session, per_page, cooldown or 0)

    def per_page(self, node: Node) -> int | None:
        expected = 'an integer >= 1, or "unlimited"'
        if isinstance(node, Scalar) and isinstance(node.value, str):
            if node.value != "unlimited":
                self.report(node, f"per_page {node.value!r} is not allowed", expected,
                            closest(node.value, ["unlimited"]))
            return None
        return self.integer(node, "per_page", 1, None, expected)
