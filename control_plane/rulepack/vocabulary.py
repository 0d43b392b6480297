"""The words of the rule-pack language that only the compiler needs.

The decision core's catalog (`edge_module.core.catalog`) names the signals, event types,
context fields and operators both sides share; this module adds what only matters while
reading YAML: which values a marketer may write, and how each is parsed.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_module.core.catalog import (
    AGGREGATE_FIELDS,
    OPERATOR_WORDS,
    SIGNALS,
)

from .values import (
    COUNT_EXPECTED,
    DURATION_EXPECTED,
    MAX_DURATION_MS,
    NUMBER_EXPECTED,
    RATIO_EXPECTED,
    SCORE_EXPECTED,
    SIGNED_EXPECTED,
    ValueProblem,
    number_value,
    parse_bounded,
    parse_count,
    parse_duration,
    parse_number,
    parse_ratio,
    parse_score,
    parse_signed,
)

DEVICES = ("desktop", "mobile", "tablet")
MODES = ("static", "adaptive", "hybrid")
DEFAULT_Z = 2.0
BASELINES = ("session", "cohort")
MAX_ACTIONS_LIMIT = 10
ANY_SEGMENT = "*"  # the models.thresholds entry for sessions in none of the listed segments

ENTROPY_MAX_BITS = 3.0  # log2 of the 8 movement sectors
# The largest value of each bounded kind; every kind starts at 0, the others are unbounded.
KIND_MAX = {"ratio": 1, "score": 1, "entropy": ENTROPY_MAX_BITS}

# Keys of a signal condition's mapping form besides the operator words and its parameters
# (`target` is the recall target, except on signals whose `target` parameter is an element).
THRESHOLD_KEYS = ("by_segment", "mode", "z", "target")
# The learning loop (issue #12): an adaptive condition's recall target, a trigger's
# exploration slice (percent of sessions where adaptive conditions use their static value).
RECALL_TARGET_KEYS = ("recall",)
DEFAULT_RECALL = 0.95
DEFAULT_EXPLORE = 5
MAX_EXPLORE = 50
# The operators a context condition's mapping form can name, and the words for them.
CONTEXT_OPERATOR_WORDS = {**OPERATOR_WORDS, "in": "in", "glob": "glob"}
ORDERED_OPERATORS = (">=", ">", "<=", "<")

_EXPECTED = {"duration": DURATION_EXPECTED, "ratio": RATIO_EXPECTED, "number": NUMBER_EXPECTED,
             "count": COUNT_EXPECTED, "score": SCORE_EXPECTED, "signed": SIGNED_EXPECTED,
             "entropy": f"a number of bits from 0 to {ENTROPY_MAX_BITS:g} such as 2.2"}
EXAMPLE_VALUE = {"duration": "3s", "ratio": "78%", "number": "800", "count": "3",
                 "score": "0.7", "entropy": "2.2", "signed": "100"}
EXAMPLE_PARAM = {"target": '"#cta"', "window": "2s", "event": "click",
                 "after": "focus", "field": "hover.duration_ms", "baseline": "session"}
Parser = Callable[[object], int | float]
PARSERS: dict[str, Parser] = {
    "duration": parse_duration,
    "ratio": parse_ratio,
    "number": parse_number,
    "count": parse_count,
    "signed": parse_signed,
    "score": parse_score,
    "entropy": lambda raw: parse_bounded(raw, ENTROPY_MAX_BITS, _EXPECTED["entropy"]),
}


def value_kind(signal: str, field: str | None = None) -> str | None:
    """How a signal's threshold is written and parsed; None for an aggregate of no known field."""
    kind = SIGNALS[signal].kind
    if kind == "field":
        # px fields (scroll.y, mousemove.x/y) are positions: events send negative ones too
        field_kind = AGGREGATE_FIELDS.get(field or "")
        return "signed" if field_kind == "number" else field_kind
    return kind


def expected_value(kind: str) -> str:
    return _EXPECTED[kind]


def parse_model_value(raw: object, kind: str) -> int | float:
    """A value in `models`: a number in the compiled unit (ms, fraction...), or with its unit."""
    ms = number_value(raw) if kind == "duration" else None  # 1e2 too, as YAML 1.1 reads it
    if ms is not None:
        if ms < 0 or ms != int(ms):
            raise ValueProblem(f"{raw} is not a whole number of milliseconds >= 0",
                               "milliseconds as a whole number, or a duration such as 3s")
        if ms > MAX_DURATION_MS:
            raise ValueProblem(f"{raw} ms is longer than ten years",
                               f"at most {MAX_DURATION_MS} ms, or a duration of at most "
                               f"{MAX_DURATION_MS // 3_600_000}h")
        return int(ms)
    return PARSERS[kind](raw)
