"""A validated rule pack: what `validate` produces and `compiler` consumes.

Values are already normalised (durations in ms, ratios as fractions, defaults filled in),
so the compiler only rearranges them. `line`/`column` (1-based) let cross-pack checks, the
content catalog and the linter point back at the source; on conditions and actions they do
not take part in equality, so two conditions written alike compare equal wherever they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as _field  # `field` is also a condition's parameter
from typing import TypeAlias


@dataclass(frozen=True, kw_only=True)
class Written:
    """Where a part of a pack that later checks point back at is written (1-based)."""

    line: int = 1
    column: int = 1


@dataclass(frozen=True)
class EventFilter:
    """An event to match: `name` only for custom events, `target` for element events."""

    type: str
    name: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class ConditionSpec:
    """`signal op value`, with the signal's parameters (None where the signal has none).

    `by_segment` overrides `value` for sessions in a segment (first listed wins); `mode`
    makes the threshold adaptive (from models.thresholds) or adds an anomaly test (hybrid).
    `recall` is an adaptive condition's recall target (a fraction), which recalibration keeps.
    """

    signal: str
    op: str
    value: int | float
    window_ms: int | None = None
    target: str | None = None
    baseline: str | None = None  # velocity_spike: "session" or "cohort"
    event: EventFilter | None = None  # count, since, absent
    after: EventFilter | None = None  # absent
    field: str | None = None  # min, max, avg
    by_segment: tuple[tuple[str, int | float], ...] = ()
    mode: str = "static"
    z: float | None = None  # hybrid only
    line: int = _field(default=1, compare=False)  # where the signal is written
    column: int = _field(default=1, compare=False)
    recall: float | None = None  # adaptive only (None on signals whose target is an element)


@dataclass(frozen=True)
class ContextSpec:
    """A test of the request's context: `device == mobile`, `attribute crm_tier in [...]`."""

    context: str
    op: str
    value: str | int | float | bool | tuple[str | int | float | bool, ...]
    name: str | None = None  # attribute only
    line: int = _field(default=1, compare=False)
    column: int = _field(default=1, compare=False)


@dataclass(frozen=True)
class SegmentRef:
    """The session is in a named segment."""

    segment: str
    line: int = _field(default=1, compare=False)
    column: int = _field(default=1, compare=False)


@dataclass(frozen=True)
class SustainedSpec:
    """The inner conditions have held, at every evaluation, for at least `for_ms`."""

    for_ms: int
    when: tuple[Condition, ...]
    line: int = _field(default=1, compare=False)
    column: int = _field(default=1, compare=False)


Condition: TypeAlias = ConditionSpec | ContextSpec | SegmentRef | SustainedSpec


@dataclass(frozen=True)
class ActionSpec:
    content: str
    tier: str = "immediate"
    delay_ms: int = 0
    priority: int = 0
    line: int = _field(default=1, compare=False)  # where the content id is written
    column: int = _field(default=1, compare=False)
    channel: str = "page"
    template: str | None = None


@dataclass(frozen=True)
class CapSpec:
    """How often a trigger may fire; None means no limit."""

    per_session: int | None = None
    per_page: int | None = 1
    cooldown_ms: int = 0


@dataclass(frozen=True)
class JourneySpec:
    """Fire only within `within_ms` of the session's start (per segment: `by_segment`)."""

    within_ms: int
    by_segment: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class TriggerSpec(Written):
    """One trigger; its position is where its id is written."""

    id: str
    pages: tuple[str, ...]
    on: EventFilter | None
    when: tuple[Condition, ...]
    action: ActionSpec
    cap: CapSpec
    description: str | None = None
    segment: str | None = None
    consecutive: int = 1
    group: str | None = None
    journey: JourneySpec | None = None
    rollout: int | float = 100
    holdout: int | float = 0
    salt: str | None = None  # None: the trigger id
    explore: int | float | None = None  # percent; None: the trigger has no adaptive condition


@dataclass(frozen=True)
class StepSpec(Written):
    """One step of a sequence: due `after_ms` after the sequence entered it."""

    id: str
    action: ActionSpec
    after_ms: int = 0
    when: tuple[Condition, ...] = ()
    timeout_ms: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class SequenceSpec(Written):
    """A per-session state machine: `start` enters step 0, `exit` ends it early."""

    id: str
    start: EventFilter
    exit: tuple[EventFilter, ...]
    steps: tuple[StepSpec, ...]
    description: str | None = None


@dataclass(frozen=True)
class SegmentSpec(Written):
    """A named predicate over the request's context: all of `when` hold."""

    name: str
    when: tuple[ContextSpec, ...]


@dataclass(frozen=True)
class FatigueSpec:
    """Limits on actions delivered to one session, whatever the trigger; None: no limit."""

    per_session: int | None = None
    per_minute: int | None = None
    quiet_after_dismiss_ms: int = 0
    channels: str | None = None  # shared or separate budgets; None: not said (shared)


@dataclass(frozen=True)
class ExperimentSpec(Written):
    """settings.experiment: the adaptive-threshold experiment's arms (percent of sessions)."""

    salt: str
    adaptive: float
    static: float
    holdout: float


@dataclass(frozen=True)
class SettingsSpec(Written):
    """The `settings:` section; None where the pack leaves a setting out."""

    max_actions: int | None = None
    fatigue: FatigueSpec | None = None
    experiment: ExperimentSpec | None = None
    report_features: bool | None = None  # decisions report features without adaptive conditions


@dataclass(frozen=True)
class IntentModel:
    """intent = logistic(bias + sum(weight * feature / scale))."""

    bias: int | float
    weights: tuple[tuple[str, int | float], ...]
    scale: tuple[tuple[str, int | float], ...] = ()


@dataclass(frozen=True)
class Baseline:
    mean: int | float
    std: int | float
    by_segment: tuple[tuple[str, int | float, int | float], ...] = ()  # segment, mean, std


@dataclass(frozen=True)
class Located:
    """A name written somewhere in a pack, for checks that need the other packs."""

    name: str
    line: int
    column: int
    scope: str | None = None  # the trigger or sequence it is written in, if any


@dataclass(frozen=True)
class ThresholdEntry:
    """One adaptive threshold as written: its unit is the condition's, known across packs."""

    segment: str  # or "*"
    raw: int | float | str
    line: int
    column: int


@dataclass(frozen=True)
class LearnedModel:
    """A calibrated logistic model over the session vector (models.learned, one segment).

    p = 1 / (1 + exp(-(a * z + b))), z = bias + sum(weight * (t(x) - mean) / scale).
    """

    features: tuple[str, ...]
    weights: tuple[tuple[str, int | float], ...]
    bias: int | float = 0.0
    transform: tuple[tuple[str, str], ...] = ()  # feature -> "log1p" | "identity"
    mean: tuple[tuple[str, int | float], ...] = ()  # missing: 0
    scale: tuple[tuple[str, int | float], ...] = ()  # missing: 1
    calibration: tuple[int | float, int | float] = (1.0, 0.0)  # a, b
    # free-form provenance (plain JSON data), kept as written; not part of equality
    trained: object = _field(default=None, compare=False)


@dataclass(frozen=True)
class ModelsSpec:
    intent: IntentModel | None = None
    intent_by_trigger: tuple[tuple[Located, IntentModel], ...] = ()
    baselines: tuple[tuple[Located, Baseline], ...] = ()
    thresholds: tuple[tuple[Located, tuple[ThresholdEntry, ...]], ...] = ()
    intent_at: Located | None = None  # where `intent` is written
    # model key -> (segment or "*", model), in the order written
    learned: tuple[tuple[Located, tuple[tuple[str, LearnedModel], ...]], ...] = ()


@dataclass(frozen=True)
class Pack(Written):
    """One rule pack file, validated; its position is where the pack name is written."""

    name: str
    file: str
    sha256: str  # of the source text (UTF-8)
    triggers: tuple[TriggerSpec, ...]
    description: str | None = None
    settings: SettingsSpec | None = None
    segments: tuple[SegmentSpec, ...] = ()
    models: ModelsSpec | None = None
    sequences: tuple[SequenceSpec, ...] = ()
    # Every segment name used in the pack, where: checked against every pack's segments.
    segment_uses: tuple[Located, ...] = _field(default=(), compare=False)
