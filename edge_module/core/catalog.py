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

# Events in a packed envelope (`api.pack_envelope`) may be compact: ("scroll", ts_ms, depth,
# y) instead of the object, for the types most batches are made of. Reading a tuple from
# marshal costs half what a dict does, and the decision plan reads its fields by
# position; the guest still checks every value as it would the object's (nothing is
# trusted because the host packed it). An event compacts when its keys are exactly
# `type`, `ts_ms` and its type's fields here; any other stays an object.
COMPACT_EVENTS: dict[str, tuple[str, ...]] = {
    "scroll": ("depth", "y"), "mousemove": ("x", "y"), "hover": ("target", "duration_ms"),
    "custom": ("name",), "page_view": ("url",)}

OPERATORS = (">=", ">", "<=", "<", "==", "!=")

TIERS = ("immediate", "queued", "predictive")

# Where an action goes: `page` is the visitor's answer; the others leave the page as a
# delivery the edge host sends (signed webhook or stream) at its due moment.
CHANNELS = ("page", "push", "email", "webhook")
MAX_TEMPLATE = 128  # characters of an action's template id
MAX_CHANNEL_DELAY_MS = 30 * 86_400_000  # the longest a push, email or webhook may wait
# How fatigue budgets count channels: one budget for the visitor, or one per channel.
FATIGUE_CHANNELS = ("shared", "separate")

# Rule-pack keyword for each operator, for the mapping form `{gte: 3s}`.
OPERATOR_WORDS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "==", "ne": "!="}


# How a signal's value moves while no event arrives (the core derives from it when time
# alone can make a condition true, and `next_check_ms` from that).
RISING, FALLING, CHANGING, STEADY = "rising", "falling", "changing", "steady"
# Default windows; the session report's `velocity` reads the scroll_velocity default too.
DEFAULT_VELOCITY_WINDOW_MS = 1000
DEFAULT_ENTROPY_WINDOW_MS = 2000


@dataclass(frozen=True)
class SignalSpec:
    """One behavioural signal a condition can test: the single definition the validator,
    the schema, the compiler and the decision core all read."""

    name: str
    # How a threshold is written and bounded: duration (ms), ratio, number, count, entropy
    # (bits), score (0..1), or "field": the kind of the aggregated event field.
    kind: str
    unit: str
    description: str
    drift: str = STEADY  # how the value moves while no event arrives
    params: tuple[str, ...] = ()
    required: tuple[str, ...] = ()  # "window" here: no default window, one must be written
    default_window_ms: int | None = None  # the window when none is written
    per_page: bool = False  # starts again from 0 at every page_view


SIGNALS: dict[str, SignalSpec] = {
    spec.name: spec
    for spec in (
        SignalSpec("dwell", "duration", "ms",
                   "time since the visitor's last page_view (dwell on the current page)",
                   RISING, per_page=True),
        SignalSpec("session_time", "duration", "ms", "time since the session's first event",
                   RISING),
        SignalSpec("scroll_depth", "ratio", "fraction of the page",
                   "deepest scroll position reached on the current page, 0..1", per_page=True),
        SignalSpec("scroll_position", "ratio", "fraction of the page",
                   "latest scroll position on the current page, 0..1", per_page=True),
        SignalSpec("scroll_velocity", "number", "px/s",
                   "vertical distance scrolled within the window, divided by the window",
                   FALLING, ("window",), default_window_ms=DEFAULT_VELOCITY_WINDOW_MS,
                   per_page=True),
        SignalSpec("velocity_spike", "number", "x baseline",
                   "scroll velocity within the window as a multiple of a baseline (the "
                   "session's own average scroll speed, or the cohort's from the snapshot's "
                   "models)",
                   FALLING, ("window", "baseline"), default_window_ms=DEFAULT_VELOCITY_WINDOW_MS),
        SignalSpec("mouse_entropy", "entropy", "bits",
                   "Shannon entropy of mouse movement directions (8 sectors) within the window",
                   CHANGING, ("window",), default_window_ms=DEFAULT_ENTROPY_WINDOW_MS),
        SignalSpec("hover", "duration", "ms",
                   "total hover time on one target element on the current page",
                   params=("target",), required=("target",), per_page=True),
        SignalSpec("pages", "count", "pages", "unique pages seen in the session (session depth)"),
        SignalSpec("focus_to_input", "duration", "ms",
                   "time from focusing a field to the first input in it (latest such pair)",
                   params=("target",)),
        SignalSpec("input_to_submit", "duration", "ms",
                   "time from the last input to the submit (latest submit)", params=("target",)),
        SignalSpec("count", "count", "events", "events matching a filter within the window",
                   FALLING, ("event", "window"), ("event", "window")),
        SignalSpec("min", "field", "of the field", "smallest value of an event field in the window",
                   CHANGING, ("field", "window"), ("field", "window")),
        SignalSpec("max", "field", "of the field", "largest value of an event field in the window",
                   CHANGING, ("field", "window"), ("field", "window")),
        SignalSpec("avg", "field", "of the field", "average of an event field in the window",
                   CHANGING, ("field", "window"), ("field", "window")),
        SignalSpec("since", "duration", "ms", "time since the latest event matching a filter",
                   RISING, ("event",), ("event",)),
        SignalSpec("absent", "duration", "ms",
                   "time since the latest `after` event with no `event` since it",
                   RISING, ("event", "after"), ("event", "after")),
        SignalSpec("intent", "score", "0..1",
                   "intent confidence: a logistic model over normalised signals (snapshot "
                   "models)", CHANGING),
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
MAX_CONSECUTIVE = 20
MAX_WINDOW_MS = 600_000
DEFAULT_MAX_EVENTS = 500
# Page views in one batch: each new path costs a page scope (every page pattern matched:
# 130 us natively for 500 triggers), and a browser sends each page view at once.
MAX_PAGE_VIEWS = 32
DEFAULT_MAX_ACTIONS = 3

# Content variants (rules/catalog.yaml): the fields a renderer reads, what a variant's
# `when` may test, and their bounds. The compiler checks a catalog against these, the
# core chooses among the compiled variants.
CONTENT_FIELDS = ("title", "body", "cta_text", "cta_url", "image_url", "style")
CONTENT_REQUIRED = ("title",)
CONTENT_URL_FIELDS = ("cta_url", "image_url")
VARIANT_WHEN = ("device", "locale", "arm")
VARIANT_ARMS = ("adaptive", "static")  # a session in the holdout arm is shown nothing
DEFAULT_VARIANT = "default"  # the name of an id's own fields, when no variant matches
MAX_FIELD_BYTES = 1024
MAX_VARIANTS = 32
MAX_LOCALE = 35  # BCP 47's recommended bound for a language tag
