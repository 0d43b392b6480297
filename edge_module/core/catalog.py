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
    "dismiss",  # the visitor dismissed a nudge (`trigger`: which one): starts the quiet period
)

OPERATORS = (">=", ">", "<=", "<", "==", "!=")

TIERS = ("immediate", "queued", "predictive")

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


def _spec(name: str, kind: str, unit: str, description: str, timed: str | None = None,
          params: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> SignalSpec:
    return SignalSpec(name, kind, unit, description, timed, params, required)


# timed: how a value moves while no event arrives: "rising", "falling", "changing" or None.
SIGNALS: dict[str, SignalSpec] = {
    spec.name: spec
    for spec in (
        _spec("dwell", "duration", "ms",
              "time since the visitor's last page_view (dwell on the current page)", "rising"),
        _spec("session_time", "duration", "ms", "time since the session's first event",
              "rising"),
        _spec("scroll_depth", "ratio", "fraction of the page",
              "deepest scroll position reached on the current page, 0..1"),
        _spec("scroll_position", "ratio", "fraction of the page",
              "latest scroll position on the current page, 0..1"),
        _spec("scroll_velocity", "number", "px/s",
              "vertical distance scrolled within the window, divided by the window",
              "falling", ("window",)),
        _spec("velocity_spike", "number", "x baseline",
              "scroll velocity within the window as a multiple of a baseline (the session's "
              "own average scroll speed, or the cohort's from the snapshot's models)",
              "falling", ("window", "baseline")),
        _spec("mouse_entropy", "number", "bits",
              "Shannon entropy of mouse movement directions (8 sectors) within the window",
              "changing", ("window",)),
        _spec("hover", "duration", "ms",
              "total hover time on one target element on the current page",
              params=("target",), required=("target",)),
        _spec("pages", "count", "pages", "unique pages seen in the session (session depth)"),
        _spec("focus_to_input", "duration", "ms",
              "time from focusing a field to the first input in it (latest such pair)",
              params=("target",)),
        _spec("input_to_submit", "duration", "ms",
              "time from the last input to the submit (latest submit)", params=("target",)),
        _spec("count", "count", "events", "events matching a filter within the window",
              "falling", ("event", "window"), ("event",)),
        _spec("min", "field", "of the field", "smallest value of an event field in the window",
              "changing", ("field", "window"), ("field",)),
        _spec("max", "field", "of the field", "largest value of an event field in the window",
              "changing", ("field", "window"), ("field",)),
        _spec("avg", "field", "of the field", "average of an event field in the window",
              "changing", ("field", "window"), ("field",)),
        _spec("since", "duration", "ms", "time since the latest event matching a filter",
              "rising", ("event",), ("event",)),
        _spec("absent", "duration", "ms",
              "time since the latest `after` event with no `event` since it",
              "rising", ("event", "after"), ("event", "after")),
        _spec("intent", "score", "0..1",
              "intent confidence: a logistic model over normalised signals (snapshot models)",
              "changing"),
    )
}

# Event fields the window aggregates (min, max, avg) can read, and their kinds.
AGGREGATE_FIELDS = {"scroll.depth": "ratio", "scroll.y": "number",
                    "hover.duration_ms": "duration", "mousemove.x": "number",
                    "mousemove.y": "number"}
CONTEXT_FIELDS = ("device", "country", "local_hour", "weekday", "referrer", "returning",
                  "attribute")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CONTEXT_OPERATORS = ("in", "==", "!=", ">=", ">", "<=", "<", "glob")
# Features of the intent model, read from the session at the moment of the decision.
INTENT_FEATURES = ("dwell", "session_time", "scroll_depth", "scroll_velocity", "mouse_entropy",
                   "pages", "hover_total")
DEFAULT_ENTROPY_WINDOW_MS = 2000
MAX_CONSECUTIVE = 20
DEFAULT_VELOCITY_WINDOW_MS = 1000
MAX_WINDOW_MS = 600_000
DEFAULT_MAX_EVENTS = 500
DEFAULT_MAX_ACTIONS = 3
