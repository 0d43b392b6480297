"""A validated rule pack: what `validate` produces and `compiler` consumes.

Values are already normalised (durations in ms, ratios as fractions, defaults filled in),
so the compiler only rearranges them. `line`/`column` (1-based) let cross-pack checks, the
content catalog and the linter point back at the source; on conditions and actions they do
not take part in equality, so two conditions written alike compare equal wherever they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EventFilter:
    """The event a trigger fires on: `name` only for custom events, `target` for element events."""

    type: str
    name: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class ConditionSpec:
    """`signal op value`; `window_ms` only for windowed signals, `target` only for hover."""

    signal: str
    op: str
    value: int | float
    window_ms: int | None = None
    target: str | None = None
    line: int = field(default=1, compare=False)  # where the signal is written
    column: int = field(default=1, compare=False)


@dataclass(frozen=True)
class ActionSpec:
    content: str
    tier: str = "immediate"
    delay_ms: int = 0
    priority: int = 0
    line: int = field(default=1, compare=False)  # where the content id is written
    column: int = field(default=1, compare=False)


@dataclass(frozen=True)
class CapSpec:
    """How often a trigger may fire; None means no limit."""

    per_session: int | None = None
    per_page: int | None = 1
    cooldown_ms: int = 0


@dataclass(frozen=True)
class TriggerSpec:
    id: str
    pages: tuple[str, ...]
    on: EventFilter | None
    when: tuple[ConditionSpec, ...]
    action: ActionSpec
    cap: CapSpec
    description: str | None = None
    line: int = 1  # where the id is written
    column: int = 1


@dataclass(frozen=True)
class Pack:
    """One rule pack file, validated."""

    name: str
    file: str
    sha256: str  # of the source text (UTF-8)
    triggers: tuple[TriggerSpec, ...]
    description: str | None = None
    line: int = 1  # where the pack name is written
    column: int = 1
