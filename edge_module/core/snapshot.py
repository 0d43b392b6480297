"""The compiled snapshot as the decision core evaluates it: its triggers, conditions and page
index (`snapshot_loader` builds them from the compiler's JSON and checks it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .catalog import RISING, SIGNALS, STEADY
from .content import ContentEntry
from .features import LearnedModel
from .globs import Glob

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


def filter_key(flt: dict[str, Any]) -> str:
    """The tracking key of an event filter: `type|name|target` (blank parts match any)."""
    return f"{flt['type']}|{flt.get('name') or ''}|{flt.get('target') or ''}"


def event_keys(etype: str, name: Any, target: Any) -> tuple[str, ...]:
    """Every filter key an event matches."""
    n = name if type(name) is str else ""
    g = target if type(target) is str else ""
    # in one order whatever the hash seed: a set's made the tracked keys, and so the state's
    # bytes, differ from process to process
    return tuple(dict.fromkeys((f"{etype}||", f"{etype}|{n}|", f"{etype}||{g}",
                                f"{etype}|{n}|{g}")))


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
    channel: str = "page"  # where the action goes (catalog.CHANNELS)
    template: str | None = None  # the channel's template id (push, email, webhook)


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
    fatigue_separate: bool = False  # each channel has its own budget (else one for all)
    channels: bool = False  # some action leaves the page (the response has `deliveries`)
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
    content: dict[str, ContentEntry] = field(default_factory=dict)  # id -> variants
    plan: Any = None  # the decision plan compiled for it (plan.py), set by the loader
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



def signal_conditions(conds: tuple[Any, ...]) -> list[Condition]:
    """The signal conditions among `conds`, those nested in `sustained` included."""
    out: list[Condition] = []
    for c in conds:
        if type(c) is Condition:
            out.append(c)
        elif type(c) is Sustained:
            out.extend(signal_conditions(c.inner))
    return out
