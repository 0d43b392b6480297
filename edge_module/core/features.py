"""The session-level feature vector (issue #12, contract A) and learned models over it.

What the vector reads over the whole visit (scroll, mouse directions, hovers, form events)
is counted by the session only while decisions report (`Session.visit`), so snapshots that
do not learn pay nothing for it. Learned intent models (contract C) are scored on exactly
these values, so the control plane learns from what the edge computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .catalog import DEFAULT_VELOCITY_WINDOW_MS
from .session import VISIT_SECTORS, VISIT_SIZE, Session

# The names of the vector, in the order the report writes them; the last two are absent
# until their form latency has been seen.
SESSION_FEATURES = ("dwell_ms", "session_ms", "depth", "scroll_px", "scroll_speed",
                    "scroll_events", "velocity", "mouse_entropy", "mouse_moves", "hover_ms",
                    "hovers", "pages", "form_events", "focus_to_input_ms", "input_to_submit_ms")

# Positions in `Session.visit` (a fixed-size list: its bytes never grow with the visit).
HOVER_MS, HOVERS, SCROLLS, MOVES, FORMS = range(VISIT_SECTORS)
SECTORS = VISIT_SECTORS  # then one count per mouse direction sector (VISIT_SIZE in all)
MAX_TOTAL_MS = float(2**53)  # hover time summed over a visit stays an exact, finite number


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def visit_entropy(sectors: list[Any]) -> float:
    """Shannon entropy (bits, 0..3) of the mouse move directions counted over the visit,
    to 12 decimals: the guest's libm and the host's differ in the last bit of log2, and
    the report must read the same from every host."""
    n = sum(sectors)
    if n <= 0:
        return 0.0
    return round(-math.fsum(c / n * math.log2(c / n) for c in sectors if c), 12) + 0.0


def session_vector(sess: Session, t: int) -> dict[str, Any]:
    """The session's feature vector at `t` (contract A's `report.session`): numbers, or
    None where a value would not be finite."""
    visit = sess.visit if len(sess.visit) == VISIT_SIZE else [0] * VISIT_SIZE
    scrolled = sess.scrolled
    speed = sess.session_speed()
    out: dict[str, Any] = {
        "dwell_ms": t - sess.pv,
        "session_ms": t - sess.start_ms,
        "depth": float(sess.depth),
        "scroll_px": _finite(float(scrolled[0])) if scrolled else 0.0,
        "scroll_speed": 0.0 if speed is None else _finite(speed),
        "scroll_events": int(visit[SCROLLS]),
        "velocity": _finite(sess.velocity(t, DEFAULT_VELOCITY_WINDOW_MS)),
        "mouse_entropy": visit_entropy(visit[SECTORS:]),
        "mouse_moves": int(visit[MOVES]),
        "hover_ms": float(visit[HOVER_MS]),
        "hovers": int(visit[HOVERS]),
        "pages": len(sess.pages),
        "form_events": int(visit[FORMS]),
    }
    if sess.focus_input:
        out["focus_to_input_ms"] = float(sess.focus_input[0])
    if sess.input_submit:
        out["input_to_submit_ms"] = float(sess.input_submit[0])
    return out


@dataclass(frozen=True, slots=True)
class LearnedModel:
    """A calibrated logistic model over the session vector (contract C of issue #12)."""

    # feature, log1p transform?, mean, scale, weight: x' = (t(x) - mean) / scale
    terms: tuple[tuple[str, bool, float, float, float], ...]
    bias: float
    a: float = 1.0  # calibration: p = 1 / (1 + exp(-(a * z + b)))
    b: float = 0.0


def learned_score(model: LearnedModel, vector: dict[str, Any]) -> float:
    """P(convert | vector) under a learned model: x' = (t(x) - mean) / scale, absent
    features x' = 0 (mean imputation), p = 1 / (1 + exp(-(a * z + b)))."""
    z = model.bias
    for name, log, mean, scale, weight in model.terms:
        x = vector.get(name)
        if x is None:
            continue
        if log:  # the features are non-negative: a negative one (clock skew) counts as 0
            x = math.log1p(x) if x > 0 else 0.0
        z += weight * (x - mean) / scale
    u = model.a * z + model.b
    if math.isnan(u):  # an overflow of huge terms of both signs: no evidence either way
        return 0.5
    if u >= 0:  # exp of a non-positive number never overflows
        return 1.0 / (1.0 + math.exp(-u))
    e = math.exp(u)
    return e / (1.0 + e)
