"""Loading a compiled snapshot into the structures the decision core evaluates.

The compiler (control plane) writes the snapshot as JSON (docs/snapshot-format.md); this
module trusts its shape only as far as it checks it, so a snapshot that is not what it
claims is refused with a `SnapshotError` instead of failing later in `decide`.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

from .catalog import (
    AGGREGATE_FIELDS,
    CHANGING,
    CONTEXT_FIELDS,
    CONTEXT_OPERATORS,
    DEFAULT_ENTROPY_WINDOW_MS,
    DEFAULT_MAX_ACTIONS,
    DEFAULT_MAX_EVENTS,
    DEFAULT_VELOCITY_WINDOW_MS,
    EVENT_TYPES,
    FALLING,
    MAX_CONSECUTIVE,
    MAX_WINDOW_MS,
    OPERATORS,
    RISING,
    SIGNALS,
    SNAPSHOT_FORMAT,
    STEADY,
    TIERS,
)
from .errors import SnapshotError
from .features import SESSION_FEATURES, LearnedModel
from .globs import Glob, from_legacy_regex

OP_FUNCS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}

# Signal codes: small ints make the evaluator's dispatch cheap.
SIGNAL_CODES = {name: code for code, name in enumerate(SIGNALS)}
(DWELL, SCROLL_DEPTH, SCROLL_VELOCITY, HOVER, SESSION_TIME, SCROLL_POSITION, VELOCITY_SPIKE,
 MOUSE_ENTROPY, PAGES, FOCUS_TO_INPUT, INPUT_TO_SUBMIT, COUNT, MIN, MAX, AVG, SINCE, ABSENT,
 INTENT) = (SIGNAL_CODES[name] for name in (
    "dwell", "scroll_depth", "scroll_velocity", "hover", "session_time", "scroll_position",
    "velocity_spike", "mouse_entropy", "pages", "focus_to_input", "input_to_submit", "count",
    "min", "max", "avg", "since", "absent", "intent"))
# Signals whose value grows by 1 per ms while no event arrives (`first_true` solves for them).
RISING_SIGNALS = frozenset(SIGNAL_CODES[s.name] for s in SIGNALS.values() if s.drift == RISING)
DEFAULT_EXPLORE = 5.0  # percent: a trigger with adaptive conditions explores by default


def filter_key(flt: dict[str, Any]) -> str:
    """The tracking key of an event filter: `type|name|target` (blank parts match any)."""
    return f"{flt['type']}|{flt.get('name') or ''}|{flt.get('target') or ''}"


def event_keys(etype: str, name: Any, target: Any) -> tuple[str, ...]:
    """Every filter key an event matches."""
    n = name if type(name) is str else ""
    g = target if type(target) is str else ""
    keys = {f"{etype}||", f"{etype}|{n}|", f"{etype}||{g}", f"{etype}|{n}|{g}"}
    return tuple(keys)


@dataclass(slots=True, eq=False)
class Condition:
    """A signal compared with a threshold (static, per segment, adaptive or hybrid)."""

    key: str  # unique within the snapshot, names the condition's state
    signal: int
    name: str
    op: str
    test: Callable[[Any, Any], bool]
    value: float
    window_ms: int = 0
    target: str | None = None
    baseline: str = "session"
    event: str | None = None  # filter key (count, since, absent)
    after: str | None = None  # filter key (absent)
    field: str | None = None  # aggregate field
    by_segment: tuple[tuple[str, float], ...] = ()
    mode: str = "static"
    z: float = 0.0
    model_key: str | None = None
    motion: str = STEADY
    static: bool = True  # the threshold is `value` for every session
    hybrid: bool = False
    # adaptive conditions: the trigger's exploration slice (contract B), set by the loader
    explore: float = 0.0  # percent of sessions that use the static value instead
    slice_of: str = ""  # the trigger id the slice is drawn for
    slice_salt: str = ""


@dataclass(slots=True, eq=False)
class ContextCond:
    key: str
    field: str
    name: str | None
    op: str
    value: Any
    pattern: Glob | None = None
    motion: str = STEADY


@dataclass(slots=True, eq=False)
class SegmentCond:
    key: str
    segment: str
    motion: str = STEADY


@dataclass(slots=True, eq=False)
class Sustained:
    key: str
    for_ms: int
    inner: tuple[Any, ...]
    motion: str = RISING


@dataclass(frozen=True, slots=True)
class Trigger:
    index: int
    id: str
    pack: str
    on_key: str | None  # event key ("custom:cart_abandon", "click") or None for state triggers
    on_target: str | None
    conditions: tuple[Any, ...]
    sustained: tuple[Sustained, ...]  # observed at every event, wherever they are nested
    content: str
    tier: str
    delay_ms: int
    priority: int
    per_session: int | None
    per_page: int | None
    cooldown_ms: int
    segment: str | None = None
    consecutive: int = 1
    group: str | None = None
    journey_ms: int | None = None
    journey_by_segment: tuple[tuple[str, int], ...] = ()
    rollout: float = 100.0
    holdout: float = 0.0
    salt: str = ""
    timed: bool = False  # time alone may make it fire: next_check looks at it
    plain: bool = True  # no segment, journey or rollout: only caps decide if it may fire
    by_motion: tuple[Any, ...] = ()  # the conditions, steady ones first (next_check)
    explore: float = 0.0  # percent of sessions in the exploration slice (adaptive triggers)
    signals: tuple[Condition, ...] = ()  # every signal condition, nested ones too (report)
    has_intent: bool = False  # some condition reads the intent score (report)


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    trigger: Trigger  # the step as a trigger: conditions and action
    after_ms: int
    timeout_ms: int | None


@dataclass(frozen=True, slots=True)
class Sequence:
    id: str
    start: str  # filter key
    exits: tuple[str, ...]
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class PageScope:
    """The triggers that can match on one URL path, split the way `decide` needs them."""

    state_triggers: tuple[Trigger, ...]
    timed_triggers: tuple[Trigger, ...]  # state triggers time alone may make fire
    on_event: dict[str, tuple[Trigger, ...]]
    members: frozenset[int]
    sustained: tuple[Sustained, ...]  # to observe at every event on this page
    streaks: tuple[Trigger, ...]  # state triggers counting consecutive qualifying events


@dataclass(frozen=True, slots=True)
class Model:
    bias: float
    weights: tuple[tuple[str, float, float], ...]  # feature, weight, scale


@dataclass(slots=True)
class Snapshot:
    revision: str
    triggers: tuple[Trigger, ...]
    by_id: dict[str, Trigger]
    exact: dict[str, tuple[int, ...]]
    prefixes: tuple[tuple[str, tuple[int, ...]], ...]
    patterns: tuple[tuple[Glob, tuple[int, ...]], ...]  # page globs, matched in linear time
    any_page: tuple[int, ...]
    max_events: int
    max_actions: int
    keep_ms: int  # how long scroll samples must be kept for the widest window
    segments: dict[str, tuple[ContextCond, ...]] = field(default_factory=dict)
    sequences: tuple[Sequence, ...] = ()
    intent: Model | None = None
    intent_by_trigger: dict[str, Model] = field(default_factory=dict)
    baselines: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    thresholds: dict[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    fatigue_per_session: int | None = None
    fatigue_per_minute: int | None = None
    quiet_after_dismiss_ms: int = 0
    tracked: dict[str, int] = field(default_factory=dict)  # filter key -> window to keep
    tracked_types: frozenset[str] = frozenset()  # the event types those keys name
    agg_fields: dict[str, int] = field(default_factory=dict)  # field -> window to keep
    mouse_keep_ms: int = 0  # 0: mouse directions are not needed
    forms: bool = False
    # The adaptive-threshold experiment: salt and the arms' shares (percent) of sessions.
    experiment: tuple[str, float, float, float] | None = None
    # model key -> ((segment or "*", model), ...) in the snapshot's order
    learned: dict[str, tuple[tuple[str, LearnedModel], ...]] = field(default_factory=dict)
    report: bool = False  # decisions return what they saw (`report`, contract A)
    _scopes: dict[str, PageScope] = field(default_factory=dict)

    def scope(self, path: str) -> PageScope:
        """Triggers that can match `path` (cached: a site has few distinct paths)."""
        scope = self._scopes.get(path)
        if scope is None:
            scope = self._build_scope(path)
            if len(self._scopes) >= 1024:  # at most ~2 MB of paths (MAX_URL each)
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
        state = tuple(t for t in ordered if t.on_key is None)
        return PageScope(
            state_triggers=state,
            timed_triggers=tuple(t for t in state if t.timed or t.cooldown_ms),
            on_event={k: tuple(v) for k, v in on_event.items()},
            members=frozenset(members),
            sustained=tuple(s for t in ordered for s in t.sustained),
            streaks=tuple(t for t in state if t.consecutive > 1),
        )


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise SnapshotError("invalid_snapshot", message)


def _int(value: Any, where: str, minimum: int = 0) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
          f"{where}: expected an integer >= {minimum}")
    return int(value)


def _num(value: Any, where: str) -> float:
    _need(isinstance(value, (int, float)) and not isinstance(value, bool),
          f"{where}: expected a number")
    return value  # type: ignore[no-any-return]


def _opt_str(value: Any, where: str) -> str | None:
    _need(value is None or isinstance(value, str), f"{where}: expected a string")
    return value  # type: ignore[no-any-return]


def _filter(raw: Any, where: str) -> str:
    _need(isinstance(raw, dict) and raw.get("type") in EVENT_TYPES,
          f"{where}: expected an event filter with a known type")
    _opt_str(raw.get("name"), f"{where}.name")
    _opt_str(raw.get("target"), f"{where}.target")
    return filter_key(raw)


def _motion(drift: str, op: str) -> str:
    """How a condition on a signal that drifts so moves while no event arrives."""
    if drift == RISING:
        return RISING if op in (">=", ">") else (CHANGING if op == "==" else FALLING)
    if drift == FALLING:
        return RISING if op in ("<", "<=", "!=") else FALLING
    return drift  # changing or steady, whatever the comparison


class _Loader:
    """Builds the evaluator's structures, noting what the session must keep track of."""

    def __init__(self) -> None:
        self.tracked: dict[str, int] = {}
        self.agg_fields: dict[str, int] = {}
        self.mouse_keep = 0
        self.scroll_keep = 0
        self.forms = False
        self.segments_used: set[str] = set()
        self.next_index = 0

    def track(self, key: str, window: int) -> None:
        self.tracked[key] = max(self.tracked.get(key, 0), window)

    def conditions(self, raw: Any, where: str, prefix: str,
                   sustained: list[Sustained]) -> tuple[Any, ...]:
        _need(isinstance(raw, list), f"{where}: expected a list")
        return tuple(self.condition(c, f"{where}[{i}]", f"{prefix}#{i}", sustained)
                     for i, c in enumerate(raw))

    def condition(self, raw: Any, where: str, key: str, sustained: list[Sustained]) -> Any:
        _need(isinstance(raw, dict), f"{where}: expected an object")
        if "sustained" in raw:
            body = raw["sustained"]
            _need(isinstance(body, dict), f"{where}.sustained: expected an object")
            inner = self.conditions(body.get("when", []), f"{where}.sustained.when", key,
                                    sustained)
            cond = Sustained(key, _int(body.get("for_ms"), f"{where}.sustained.for_ms"), inner)
            sustained.append(cond)
            return cond
        if "context" in raw:
            return context_condition(raw, where, key)
        if "segment" in raw:
            name = raw["segment"]
            _need(isinstance(name, str), f"{where}.segment: expected a segment name")
            self.segments_used.add(name)
            return SegmentCond(key, name)
        return self.signal(raw, where, key)

    def signal(self, raw: dict[str, Any], where: str, key: str) -> Condition:
        name = raw.get("signal")
        _need(name in SIGNALS, f"{where}.signal: unknown signal {name!r}")
        spec, code = SIGNALS[name], SIGNAL_CODES[name]
        op = raw.get("op")
        _need(op in OPERATORS, f"{where}.op: unknown operator {op!r}")
        value = _num(raw.get("value"), f"{where}.value")
        window = raw.get("window_ms") or spec.default_window_ms or 0
        _int(window, f"{where}.window_ms")
        _need(window <= MAX_WINDOW_MS, f"{where}.window_ms: at most {MAX_WINDOW_MS}")
        _need("window" not in spec.required or window > 0,
              f"{where}.window_ms: {name} needs a window")
        target = raw.get("target")
        if isinstance(target, dict):  # a recall target (only the control plane reads it)
            target = None
        cond = Condition(key, code, name, op, OP_FUNCS[op], value, window,
                         _opt_str(target, f"{where}.target"))
        cond.motion = _motion(spec.drift, op)
        if code in (SCROLL_VELOCITY, VELOCITY_SPIKE):
            self.scroll_keep = max(self.scroll_keep, window)
        if code == VELOCITY_SPIKE:
            cond.baseline = raw.get("baseline", "session")
            _need(cond.baseline in ("session", "cohort"),
                  f"{where}.baseline: expected session or cohort")
        if code == MOUSE_ENTROPY:
            self.mouse_keep = max(self.mouse_keep, window)
        if code == INTENT:
            self.mouse_keep = max(self.mouse_keep, DEFAULT_ENTROPY_WINDOW_MS)
            self.scroll_keep = max(self.scroll_keep, DEFAULT_VELOCITY_WINDOW_MS)
        if code in (FOCUS_TO_INPUT, INPUT_TO_SUBMIT):
            self.forms = True
        if code in (COUNT, SINCE, ABSENT):
            cond.event = _filter(raw.get("event"), f"{where}.event")
            self.track(cond.event, window)
        if code == ABSENT:
            cond.after = _filter(raw.get("after"), f"{where}.after")
            self.track(cond.after, 0)
        if code in (MIN, MAX, AVG):
            cond.field = raw.get("field")
            _need(cond.field in AGGREGATE_FIELDS, f"{where}.field: unknown field {cond.field!r}")
            self.agg_fields[cond.field] = max(self.agg_fields.get(cond.field, 0), window)
        by_segment = raw.get("by_segment") or {}
        _need(isinstance(by_segment, dict), f"{where}.by_segment: expected an object")
        cond.by_segment = tuple((str(k), _num(v, f"{where}.by_segment.{k}"))
                                for k, v in by_segment.items())
        self.segments_used.update(k for k, _ in cond.by_segment)
        cond.mode = raw.get("mode") or "static"
        _need(cond.mode in ("static", "adaptive", "hybrid"), f"{where}.mode: unknown mode")
        if cond.mode == "hybrid":
            cond.z = _num(raw.get("z", 2.0), f"{where}.z")
        cond.model_key = _opt_str(raw.get("model_key"), f"{where}.model_key") or key
        cond.static = not cond.by_segment and cond.mode != "adaptive"
        cond.hybrid = cond.mode == "hybrid"
        return cond


def context_condition(raw: dict[str, Any], where: str, key: str) -> ContextCond:
    fld = raw.get("context")
    _need(fld in CONTEXT_FIELDS, f"{where}.context: unknown context field {fld!r}")
    op = raw.get("op")
    _need(op in CONTEXT_OPERATORS, f"{where}.op: unknown operator {op!r}")
    value = raw.get("value")
    if op == "in":
        _need(isinstance(value, list), f"{where}.value: `in` needs a list")
        value = frozenset(v for v in value if isinstance(v, (str, int, float, bool)))
    cond = ContextCond(key, fld, _opt_str(raw.get("name"), f"{where}.name"), op, value)
    if op == "glob":
        _need(isinstance(value, str), f"{where}.value: a glob is a string")
        cond.pattern = Glob(value, ignore_case=True)
    return cond


def _action(raw: Any, where: str) -> dict[str, Any]:
    _need(isinstance(raw, dict), f"{where}: expected an object")
    _need(isinstance(raw.get("content"), str), f"{where}.content: expected a string")
    _need(raw.get("tier", "immediate") in TIERS, f"{where}.tier: expected one of {TIERS}")
    return raw


def _load_trigger(loader: _Loader, index: int, raw: Any, where: str = "") -> Trigger:
    where = where or f"triggers[{index}]"
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
    sustained: list[Sustained] = []
    conditions = loader.conditions(raw.get("when", []), f"{where}.when", tid, sustained)
    action = _action(raw.get("action"), f"{where}.action")
    cap = raw.get("cap") or {}
    _need(isinstance(cap, dict), f"{where}.cap: expected an object")
    per_session = cap.get("per_session")
    per_page = cap.get("per_page")
    journey = raw.get("journey")
    _need(journey is None or isinstance(journey, dict), f"{where}.journey: expected an object")
    segment = _opt_str(raw.get("segment"), f"{where}.segment")
    if segment:
        loader.segments_used.add(segment)
    journey_by_segment = tuple((str(k), _int(v, f"{where}.journey.by_segment.{k}"))
                               for k, v in ((journey or {}).get("by_segment") or {}).items())
    loader.segments_used.update(k for k, _ in journey_by_segment)
    consecutive = _int(raw.get("consecutive", 1), f"{where}.consecutive", 1)
    _need(consecutive <= MAX_CONSECUTIVE, f"{where}.consecutive: at most {MAX_CONSECUTIVE}")
    signals = tuple(_signals(conditions))
    adaptive = [c for c in signals if c.mode == "adaptive"]
    explore = raw.get("explore")
    explore = (DEFAULT_EXPLORE if adaptive else 0.0) if explore is None else \
        _num(explore, f"{where}.explore")
    _need(0 <= explore <= 100, f"{where}.explore: expected a percentage from 0 to 100")
    salt = str(raw.get("salt") or tid)
    for c in adaptive:
        c.explore, c.slice_of, c.slice_salt = float(explore), tid, salt
    return Trigger(
        index=index,
        id=tid,
        pack=str(raw.get("pack", "")),
        on_key=on_key,
        on_target=on_target,
        conditions=conditions,
        sustained=tuple(sustained),
        content=action["content"],
        tier=action.get("tier", "immediate"),
        delay_ms=_int(action.get("delay_ms", 0), f"{where}.action.delay_ms"),
        priority=_int(action.get("priority", 0), f"{where}.action.priority", minimum=-(10**6)),
        per_session=None if per_session is None else _int(per_session, f"{where}.cap.per_session"),
        per_page=None if per_page is None else _int(per_page, f"{where}.cap.per_page"),
        cooldown_ms=_int(cap.get("cooldown_ms", 0), f"{where}.cap.cooldown_ms"),
        segment=segment,
        consecutive=consecutive,
        group=_opt_str(raw.get("group"), f"{where}.group"),
        journey_ms=None if journey is None else _int(journey.get("within_ms"),
                                                      f"{where}.journey.within_ms"),
        journey_by_segment=journey_by_segment,
        rollout=_num(raw.get("rollout", 100), f"{where}.rollout"),
        holdout=_num(raw.get("holdout", 0), f"{where}.holdout"),
        salt=salt,
        timed=any(c.motion in (RISING, CHANGING) for c in conditions),
        plain=segment is None and journey is None and raw.get("rollout", 100) >= 100,
        by_motion=tuple(sorted(conditions, key=lambda c: c.motion != STEADY)),
        explore=float(explore),
        signals=signals,
        has_intent=any(c.signal == INTENT for c in signals),
    )


def _signals(conds: tuple[Any, ...]) -> list[Condition]:
    """The signal conditions among `conds`, those nested in `sustained` included."""
    out: list[Condition] = []
    for c in conds:
        if type(c) is Condition:
            out.append(c)
        elif type(c) is Sustained:
            out.extend(_signals(c.inner))
    return out


def _model(raw: Any, where: str) -> Model | None:
    if raw is None:
        return None
    _need(isinstance(raw, dict), f"{where}: expected an object")
    weights = raw.get("weights") or {}
    scale = raw.get("scale") or {}
    _need(isinstance(weights, dict) and isinstance(scale, dict),
          f"{where}: weights and scale are objects")
    return Model(_num(raw.get("bias", 0.0), f"{where}.bias"),
                 tuple((str(f), _num(w, f"{where}.weights.{f}"),
                        _num(scale.get(f, 1), f"{where}.scale.{f}") or 1.0)
                       for f, w in weights.items()))


def _index_list(raw: Any, where: str, count: int) -> tuple[int, ...]:
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
    loader = _Loader()
    triggers = tuple(_load_trigger(loader, i, t) for i, t in enumerate(raw_triggers))
    by_id = {t.id: t for t in triggers}
    _need(len(by_id) == len(triggers), "triggers: ids must be unique")
    n = len(triggers)

    index = doc.get("index")
    _need(isinstance(index, dict), "index: expected an object")
    exact_raw = index.get("exact", {})
    _need(isinstance(exact_raw, dict), "index.exact: expected an object")
    exact = {k: _index_list(v, f"index.exact[{k!r}]", n) for k, v in exact_raw.items()}
    prefixes = []
    for i, entry in enumerate(index.get("prefix", [])):
        _need(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str),
              f"index.prefix[{i}]: expected [prefix, ids]")
        prefixes.append((entry[0], _index_list(entry[1], f"index.prefix[{i}]", n)))
    patterns = []
    for i, entry in enumerate(index.get("glob", [])):
        _need(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str),
              f"index.glob[{i}]: expected [glob, ids]")
        patterns.append((Glob(entry[0]), _index_list(entry[1], f"index.glob[{i}]", n)))
    # Snapshots compiled before page globs had their own bucket spelt them as regexes:
    # those of that shape still load (as globs); no other regex is ever run.
    for i, entry in enumerate(index.get("pattern", [])):
        _need(isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str),
              f"index.pattern[{i}]: expected [regex, ids]")
        glob = from_legacy_regex(entry[0])
        _need(glob is not None, f"index.pattern[{i}]: {entry[0][:80]!r} is not a page glob "
              "(`^` + literal parts joined by `.*` + `\\Z`); recompile the packs")
        patterns.append((Glob(glob or ""), _index_list(entry[1], f"index.pattern[{i}]", n)))
    any_page = _index_list(index.get("any", []), "index.any", n)

    limits = doc.get("limits") or {}
    _need(isinstance(limits, dict), "limits: expected an object")
    segments_raw = doc.get("segments") or {}
    _need(isinstance(segments_raw, dict), "segments: expected an object")
    segments = {}
    for name, preds in segments_raw.items():
        _need(isinstance(preds, list), f"segments.{name}: expected a list of context conditions")
        segments[name] = tuple(context_condition(p, f"segments.{name}[{i}]", f"@{name}#{i}")
                               for i, p in enumerate(preds))
    raw_sequences = doc.get("sequences") or []
    _need(isinstance(raw_sequences, list), "sequences: expected a list")
    loader.next_index = n  # steps rank after every trigger
    sequences = tuple(_load_sequence(loader, i, s) for i, s in enumerate(raw_sequences))
    missing = loader.segments_used - set(segments)
    _need(not missing, f"segments: {sorted(missing)} used but not defined")
    models = doc.get("models") or {}
    _need(isinstance(models, dict), "models: expected an object")
    fatigue = doc.get("fatigue") or {}
    _need(isinstance(fatigue, dict), "fatigue: expected an object")
    per_session, per_minute = fatigue.get("per_session"), fatigue.get("per_minute")
    settings = doc.get("settings") or {}
    _need(isinstance(settings, dict), "settings: expected an object")
    report_features = settings.get("report_features", False)
    _need(isinstance(report_features, bool), "settings.report_features: expected true or false")
    report = report_features or any(
        c.mode == "adaptive" or c.signal == INTENT
        for t in (*triggers, *(step.trigger for seq in sequences for step in seq.steps))
        for c in t.signals)
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
        # a report reads the 1 s scroll velocity: its samples are kept
        keep_ms=max(loader.scroll_keep, DEFAULT_VELOCITY_WINDOW_MS) if report else
        loader.scroll_keep,
        segments=segments,
        sequences=sequences,
        intent=_model(models.get("intent"), "models.intent"),
        intent_by_trigger={str(k): m for k, v in (models.get("intent_by_trigger") or {}).items()
                           if (m := _model(v, f"models.intent_by_trigger.{k}")) is not None},
        baselines=_baselines(models.get("baselines") or {}),
        thresholds={str(k): tuple((str(s), _num(v, f"models.thresholds.{k}.{s}"))
                                  for s, v in seg.items())
                    for k, seg in (models.get("thresholds") or {}).items()
                    if isinstance(seg, dict)},
        fatigue_per_session=None if per_session is None else _int(per_session,
                                                                   "fatigue.per_session", 1),
        fatigue_per_minute=None if per_minute is None else _int(per_minute,
                                                                "fatigue.per_minute", 1),
        quiet_after_dismiss_ms=_int(fatigue.get("quiet_after_dismiss_ms", 0),
                                    "fatigue.quiet_after_dismiss_ms"),
        tracked=loader.tracked,
        tracked_types=frozenset(key.split("|", 1)[0] for key in loader.tracked),
        agg_fields=loader.agg_fields,
        experiment=_experiment(doc.get("experiment")),
        mouse_keep_ms=loader.mouse_keep,
        forms=loader.forms,
        learned=_learned(models.get("learned")),
        report=report,
    )


_TRANSFORMS = ("identity", "log1p")


def _learned(raw: Any) -> dict[str, tuple[tuple[str, LearnedModel], ...]]:
    """`models.learned`: model key -> segment (or "*") -> calibrated logistic model."""
    if raw is None:
        return {}
    _need(isinstance(raw, dict), "models.learned: expected an object (model key -> segments)")
    out: dict[str, tuple[tuple[str, LearnedModel], ...]] = {}
    for key, by_segment in raw.items():
        where = f"models.learned.{key}"
        _need(isinstance(by_segment, dict),
              f"{where}: expected an object (segment name or \"*\" -> model)")
        out[str(key)] = tuple((str(seg), _learned_model(body, f"{where}.{seg}"))
                              for seg, body in by_segment.items())
    return out


def _learned_model(raw: Any, where: str) -> LearnedModel:
    _need(isinstance(raw, dict), f"{where}: expected an object")
    names = raw.get("features")
    _need(isinstance(names, list) and all(isinstance(n, str) for n in names),
          f"{where}.features: expected a list of feature names")
    _need(len(set(names)) == len(names), f"{where}.features: each feature at most once")
    unknown = [n for n in names if n not in SESSION_FEATURES]
    _need(not unknown, f"{where}.features: unknown {unknown[:3]}; expected names from "
                       f"{', '.join(SESSION_FEATURES)}")
    parts = {}
    for part in ("transform", "mean", "scale", "weights"):
        value = raw.get(part) or {}
        _need(isinstance(value, dict), f"{where}.{part}: expected an object (feature -> value)")
        extra = [n for n in value if n not in names]
        _need(not extra, f"{where}.{part}: {extra[:3]} not in features")
        parts[part] = value
    terms = []
    for name in names:
        transform = parts["transform"].get(name, "identity")
        _need(transform in _TRANSFORMS,
              f"{where}.transform.{name}: expected one of {', '.join(_TRANSFORMS)}")
        _need(name in parts["weights"], f"{where}.weights.{name}: missing")
        scale = _finite(parts["scale"].get(name, 1.0), f"{where}.scale.{name}")
        _need(scale > 0, f"{where}.scale.{name}: expected a number > 0")
        terms.append((name, transform == "log1p",
                      _finite(parts["mean"].get(name, 0.0), f"{where}.mean.{name}"), scale,
                      _finite(parts["weights"][name], f"{where}.weights.{name}")))
    calibration = raw.get("calibration") or {}
    _need(isinstance(calibration, dict), f"{where}.calibration: expected an object {{a, b}}")
    return LearnedModel(tuple(terms), _finite(raw.get("bias", 0.0), f"{where}.bias"),
                        _finite(calibration.get("a", 1.0), f"{where}.calibration.a"),
                        _finite(calibration.get("b", 0.0), f"{where}.calibration.b"))


def _finite(value: Any, where: str) -> float:
    _need(isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value), f"{where}: expected a finite number")
    return float(value)


def _experiment(raw: Any) -> tuple[str, float, float, float] | None:
    if raw is None:
        return None
    _need(isinstance(raw, dict), "experiment: expected an object")
    arms = raw.get("arms")
    _need(isinstance(arms, dict), "experiment.arms: expected an object")
    shares = [_num(arms.get(arm, 0), f"experiment.arms.{arm}")
              for arm in ("adaptive", "static", "holdout")]
    _need(all(0 <= p <= 100 for p in shares) and abs(sum(shares) - 100) < 1e-6,
          "experiment.arms: shares from 0 to 100 that add up to 100")
    return (str(raw.get("salt") or "experiment"), shares[0], shares[1], shares[2])


def _baselines(raw: Any) -> dict[str, dict[str, tuple[float, float]]]:
    _need(isinstance(raw, dict), "models.baselines: expected an object")
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for signal, body in raw.items():
        _need(isinstance(body, dict), f"models.baselines.{signal}: expected an object")
        entry = {"*": (_num(body.get("mean", 0), f"models.baselines.{signal}.mean"),
                       _num(body.get("std", 0), f"models.baselines.{signal}.std"))}
        for seg, stats in (body.get("by_segment") or {}).items():
            _need(isinstance(stats, dict), f"models.baselines.{signal}.by_segment.{seg}")
            entry[str(seg)] = (_num(stats.get("mean", 0), "mean"), _num(stats.get("std", 0), "std"))
        out[str(signal)] = entry
    return out


def _load_sequence(loader: _Loader, i: int, raw: Any) -> Sequence:
    where = f"sequences[{i}]"
    _need(isinstance(raw, dict) and isinstance(raw.get("id"), str), f"{where}: expected an id")
    exits = raw.get("exit") or []
    _need(isinstance(exits, list), f"{where}.exit: expected a list of event filters")
    steps_raw = raw.get("steps")
    _need(isinstance(steps_raw, list) and steps_raw, f"{where}.steps: expected a list")
    steps = []
    for k, step in enumerate(steps_raw):
        swhere = f"{where}.steps[{k}]"
        _need(isinstance(step, dict) and isinstance(step.get("id"), str), f"{swhere}: needs an id")
        as_trigger = {"id": f"{raw['id']}/{step['id']}", "pack": raw.get("pack", ""),
                      "when": step.get("when", []), "action": step.get("action"),
                      "cap": {"per_page": None}}
        timeout = step.get("timeout_ms")
        loader.next_index += 1
        steps.append(Step(step["id"], _load_trigger(loader, loader.next_index, as_trigger, swhere),
                          _int(step.get("after_ms", 0), f"{swhere}.after_ms"),
                          None if timeout is None else _int(timeout, f"{swhere}.timeout_ms")))
    start = _filter(raw.get("start"), f"{where}.start")
    loader.track(start, 0)
    exit_keys = tuple(_filter(e, f"{where}.exit[{j}]") for j, e in enumerate(exits))
    for key in exit_keys:
        loader.track(key, 0)
    return Sequence(raw["id"], start, exit_keys, tuple(steps))
