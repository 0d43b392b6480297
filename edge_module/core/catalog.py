"""The vocabulary shared by the compiler and the decision core.

The compiler validates rule packs against these tables and the core evaluates what they
name, so a signal exists in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

SNAPSHOT_FORMAT = "edge-triggers/1"

EVENT_TYPES = (
    "page_view",
    "scroll",
    "mousemove",
    "hover",
    "click",
    "focus",
    "input",
    "submit",
    "blur",
    "custom",
)

OPERATORS = (">=", ">", "<=", "<", "==", "!=")

TIERS = ("immediate", "queued")

# Rule-pack keyword for each operator, for the mapping form `{gte: 3s}`.
OPERATOR_WORDS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "==", "ne": "!="}


@dataclass(frozen=True)
class SignalSpec:
    """One behavioural signal a condition can test."""

    name: str
    kind: str  # "duration" (ms), "ratio" (0..1) or "number"
    unit: str
    description: str
    # How the value moves while no event arrives: "rising" grows with time (dwell),
    # "windowed" changes as samples leave its window, None stays put.
    timed: str | None = None
    params: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


SIGNALS: dict[str, SignalSpec] = {
    spec.name: spec
    for spec in (
        SignalSpec(
            "dwell",
            "duration",
            "ms",
            "time since the visitor's last page_view (dwell on the current page)",
            timed="rising",
        ),
        SignalSpec(
            "scroll_depth",
            "ratio",
            "fraction of the page",
            "deepest scroll position reached on the current page, 0..1",
        ),
        SignalSpec(
            "scroll_velocity",
            "number",
            "px/s",
            "vertical distance scrolled within the window, divided by the window",
            timed="windowed",
            params=("window",),
        ),
        SignalSpec(
            "hover",
            "duration",
            "ms",
            "total hover time on one target element on the current page",
            params=("target",),
            required=("target",),
        ),
    )
}

DEFAULT_VELOCITY_WINDOW_MS = 1000
MAX_WINDOW_MS = 600_000
DEFAULT_MAX_EVENTS = 500
DEFAULT_MAX_ACTIONS = 3
