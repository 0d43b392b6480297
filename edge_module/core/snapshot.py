"""Loading a compiled snapshot into the structures the decision core evaluates.

The compiler (control plane) writes the snapshot as JSON; this module trusts its shape only
as far as it checks it, so a snapshot that is not what it claims is refused with a
`SnapshotError` instead of failing later in `decide`.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable

from .catalog import (
    DEFAULT_MAX_ACTIONS,
    DEFAULT_MAX_EVENTS,
    DEFAULT_VELOCITY_WINDOW_MS,
    MAX_WINDOW_MS,
    OPERATORS,
    SIGNALS,
    SNAPSHOT_FORMAT,
    TIERS,
)
from .errors import SnapshotError

OP_FUNCS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

# Signal codes: small ints make the evaluator's dispatch cheap.
DWELL, SCROLL_DEPTH, SCROLL_VELOCITY, HOVER = range(4)
_SIGNAL_CODES = {"dwell": DWELL, "scroll_depth": SCROLL_DEPTH,
                 "scroll_velocity": SCROLL_VELOCITY, "hover": HOVER}


@dataclass(frozen=True, slots=True)
class Condition:
    signal: int
    op: str
    test: Callable[[Any, Any], bool]
    value: float
    window_ms: int
    target: str | None

    @property
    def can_become_true(self) -> bool:
        """Whether time alone (no new events) can turn this condition from false to true.

        Dwell only grows, so `>=`, `>` and `==` can start to hold; scroll velocity only
        falls as samples leave its window, so `<` and `<=` can. Nothing else moves.
        """
        if self.signal == DWELL:
            return self.op in (">=", ">", "==")
        if self.signal == SCROLL_VELOCITY:
            return self.op in ("<", "<=", "!=")
        return False


@dataclass(frozen=True, slots=True)
class Trigger:
    index: int
    id: str
    pack: str
    on_key: str | None  # event key ("custom:cart_abandon", "click") or None for state triggers
    on_target: str | None
    conditions: tuple[Condition, ...]
    # Conditions time alone can make true (they name the moments to re-check), and the
    # rest: if one of those is false now, the trigger cannot fire before new events.
    rising: tuple[Condition, ...]
    steady: tuple[Condition, ...]
    content: str
    tier: str
    delay_ms: int
    priority: int
    per_session: int | None
    per_page: int | None
    cooldown_ms: int


@dataclass(frozen=True, slots=True)
class PageScope:
    """The triggers that can match on one URL path, split the way `decide` needs them."""

    state_triggers: tuple[Trigger, ...]
    timed_triggers: tuple[Trigger, ...]  # state triggers time alone may make fire
    on_event: dict[str, tuple[Trigger, ...]]
    members: frozenset[int]


@dataclass(slots=True)
class Snapshot:
    revision: str
    triggers: tuple[Trigger, ...]
    by_id: dict[str, Trigger]
    exact: dict[str, tuple[int, ...]]
    prefixes: tuple[tuple[str, tuple[int, ...]], ...]
    patterns: tuple[tuple[re.Pattern[str], tuple[int, ...]], ...]
    any_page: tuple[int, ...]
    max_events: int
    max_actions: int
    keep_ms: int  # how long scroll samples must be kept for the widest window
    _scopes: dict[str, PageScope]

    def scope(self, path: str) -> PageScope:
        """Triggers that can match `path` (cached: a site has few distinct paths)."""
        scope = self._scopes.get(path)
        if scope is None:
            scope = self._build_scope(path)
            if len(self._scopes) >= 4096:
                self._scopes.clear()
            self._scopes[path] = scope
        return scope

    def _build_scope(self, path: str) -> PageScope:
        members = set(self.any_page)
        members.update(self.exact.get(path, ()))
        for prefix, ids in self.prefixes:
            if path.startswith(prefix):
                members.update(ids)
        for pattern, ids in self.patterns:
            if pattern.match(path):
                members.update(ids)
        ordered = [self.triggers[i] for i in sorted(members)]
        on_event: dict[str, list[Trigger]] = {}
        for trig in ordered:
            if trig.on_key is not None:
                on_event.setdefault(trig.on_key, []).append(trig)
        return PageScope(
            state_triggers=tuple(t for t in ordered if t.on_key is None),
            timed_triggers=tuple(t for t in ordered
                                 if t.on_key is None and (t.rising or t.cooldown_ms)),
            on_event={k: tuple(v) for k, v in on_event.items()},
            members=frozenset(members),
        )


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise SnapshotError("invalid_snapshot", message)


def _int(value: Any, where: str, minimum: int = 0) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
          f"{where}: expected an integer >= {minimum}")
    return int(value)


def _load_condition(raw: Any, where: str) -> Condition:
    _need(isinstance(raw, dict), f"{where}: expected an object")
    name = raw.get("signal")
    _need(name in SIGNALS, f"{where}.signal: unknown signal {name!r}")
    op = raw.get("op")
    _need(op in OPERATORS, f"{where}.op: unknown operator {op!r}")
    value = raw.get("value")
    _need(isinstance(value, (int, float)) and not isinstance(value, bool),
          f"{where}.value: expected a number")
    window = raw.get("window_ms") or (DEFAULT_VELOCITY_WINDOW_MS if name == "scroll_velocity" else 0)
    _int(window, f"{where}.window_ms")
    _need(window <= MAX_WINDOW_MS, f"{where}.window_ms: at most {MAX_WINDOW_MS}")
    target = raw.get("target")
    _need(target is None or isinstance(target, str), f"{where}.target: expected a string")
    return Condition(_SIGNAL_CODES[name], op, OP_FUNCS[op], value, window, target)


def _load_trigger(index: int, raw: Any) -> Trigger:
    where = f"triggers[{index}]"
    _need(isinstance(raw, dict), f"{where}: expected an object")
    tid = raw.get("id")
    _need(isinstance(tid, str) and tid != "", f"{where}.id: expected a non-empty string")
    on = raw.get("on")
    on_key = on_target = None
    if on is not None:
        _need(isinstance(on, dict) and isinstance(on.get("type"), str),
              f"{where}.on: expected an object with a type")
        on_key = on["type"] if on.get("name") is None else f"{on['type']}:{on['name']}"
        on_target = on.get("target")
    raw_conds = raw.get("when", [])
    _need(isinstance(raw_conds, list), f"{where}.when: expected a list")
    conditions = tuple(_load_condition(c, f"{where}.when[{i}]") for i, c in enumerate(raw_conds))
    action = raw.get("action")
    _need(isinstance(action, dict), f"{where}.action: expected an object")
    _need(isinstance(action.get("content"), str), f"{where}.action.content: expected a string")
    _need(action.get("tier") in TIERS, f"{where}.action.tier: expected one of {TIERS}")
    cap = raw.get("cap") or {}
    _need(isinstance(cap, dict), f"{where}.cap: expected an object")
    per_session = cap.get("per_session")
    per_page = cap.get("per_page")
    return Trigger(
        index=index,
        id=tid,
        pack=str(raw.get("pack", "")),
        on_key=on_key,
        on_target=on_target,
        conditions=conditions,
        rising=tuple(c for c in conditions if c.can_become_true),
        steady=tuple(c for c in conditions if not c.can_become_true),
        content=action["content"],
        tier=action["tier"],
        delay_ms=_int(action.get("delay_ms", 0), f"{where}.action.delay_ms"),
        priority=_int(action.get("priority", 0), f"{where}.action.priority", minimum=-(10**6)),
        per_session=None if per_session is None else _int(per_session, f"{where}.cap.per_session"),
        per_page=None if per_page is None else _int(per_page, f"{where}.cap.per_page"),
        cooldown_ms=_int(cap.get("cooldown_ms", 0), f"{where}.cap.cooldown_ms"),
    )


def _id_list(raw: Any, where: str, count: int) -> tuple[int, ...]:
    _need(isinstance(raw, list) and all(isinstance(i, int) and 0 <= i < count for i in raw),
          f"{where}: expected a list of trigger indexes")
    return tuple(raw)


def load_snapshot(text: str) -> Snapshot:
    """Parse, check and index a snapshot's JSON text."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SnapshotError("invalid_snapshot", f"snapshot is not JSON: {exc}") from None
    _need(isinstance(doc, dict), "snapshot: expected a JSON object")
    _need(doc.get("format") == SNAPSHOT_FORMAT,
          f"format: expected {SNAPSHOT_FORMAT!r}, got {doc.get('format')!r}")
    revision = doc.get("revision")
    _need(isinstance(revision, str) and revision != "", "revision: expected a non-empty string")
    raw_triggers = doc.get("triggers")
    _need(isinstance(raw_triggers, list), "triggers: expected a list")
    triggers = tuple(_load_trigger(i, t) for i, t in enumerate(raw_triggers))
    by_id = {t.id: t for t in triggers}
    _need(len(by_id) == len(triggers), "triggers: ids must be unique")
    n = len(triggers)

    index = doc.get("index")
    _need(isinstance(index, dict), "index: expected an object")
    exact_raw = index.get("exact", {})
    _need(isinstance(exact_raw, dict), "index.exact: expected an object")
    exact = {k: _id_list(v, f"index.exact[{k!r}]", n) for k, v in exact_raw.items()}
    prefixes = []
    for i, entry in enumerate(index.get("prefix", [])):
        _need(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str),
              f"index.prefix[{i}]: expected [prefix, ids]")
        prefixes.append((entry[0], _id_list(entry[1], f"index.prefix[{i}]", n)))
    patterns = []
    for i, entry in enumerate(index.get("pattern", [])):
        _need(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str),
              f"index.pattern[{i}]: expected [regex, ids]")
        try:
            compiled = re.compile(entry[0])
        except re.error as exc:
            raise SnapshotError("invalid_snapshot", f"index.pattern[{i}]: bad regex: {exc}") from None
        patterns.append((compiled, _id_list(entry[1], f"index.pattern[{i}]", n)))
    any_page = _id_list(index.get("any", []), "index.any", n)

    limits = doc.get("limits") or {}
    _need(isinstance(limits, dict), "limits: expected an object")
    windows = [c.window_ms for t in triggers for c in t.conditions if c.signal == SCROLL_VELOCITY]
    return Snapshot(
        revision=revision,
        triggers=triggers,
        by_id=by_id,
        exact=exact,
        prefixes=tuple(prefixes),
        patterns=tuple(patterns),
        any_page=any_page,
        max_events=_int(limits.get("max_events", DEFAULT_MAX_EVENTS), "limits.max_events", 1),
        max_actions=_int(limits.get("max_actions", DEFAULT_MAX_ACTIONS), "limits.max_actions", 1),
        keep_ms=max(windows, default=0),
        _scopes={},
    )
