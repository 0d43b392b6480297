"""What the learning loop learns from: per adaptive trigger, one row per session that was on
the trigger's pages, built from exactly what the edge computed (the decision log's
`report`: the session vector and each condition's value at every decision) and from the
outcomes the edge saw.

A session's label is whether it converted. Its weight undoes the bias of the nudge itself:
a session is shown the trigger with a probability the core logs (`p_fire`: the learned rule
for most sessions, the static rule in the exploration slice, never in the holdout), so each
session counts 1 / P(what happened to it) (inverse-propensity weighting, clipped): the
sessions the current rule leaves alone, and the few it would have nudged but the slice did
not, stand for the ones like them, and a model learned from the weighted sessions does not
just learn its own past decisions back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from edge_module.core.conditions import context_holds
from edge_module.core.globs import glob_match
from edge_module.core.snapshot import Snapshot
from edge_module.core.urls import url_path

from ..telemetry.telemetry_store import TelemetryStore

# The session vector the core reports (contract: docs/snapshot-format.md, "report"), in a
# fixed order, with the transform that makes each one fit a logistic model: counts,
# durations and speeds are heavy-tailed (log1p); depth, entropy and pages are not.
FEATURES: tuple[tuple[str, str], ...] = (
    ("dwell_ms", "log1p"), ("session_ms", "log1p"), ("depth", "identity"),
    ("scroll_px", "log1p"), ("scroll_speed", "log1p"), ("scroll_events", "log1p"),
    ("velocity", "log1p"), ("mouse_entropy", "identity"), ("mouse_moves", "log1p"),
    ("hover_ms", "log1p"), ("hovers", "log1p"), ("pages", "identity"),
    ("form_events", "log1p"), ("focus_to_input_ms", "log1p"), ("input_to_submit_ms", "log1p"),
)
FEATURE_NAMES = tuple(name for name, _ in FEATURES)
# The signals whose value the session vector also carries: a condition on one of them can
# be re-evaluated at moments where the trigger itself was not reported (after it fired).
VECTOR_SIGNALS = {"dwell": "dwell_ms", "scroll_depth": "depth", "session_time": "session_ms",
                  "pages": "pages"}
MIN_PROPENSITY = 0.05  # a session never stands for more than 20


@dataclass
class Moment:
    """One decision on the trigger's pages: the session vector and the trigger's values."""

    ts_ms: int
    vector: dict[str, float]
    values: dict[str, float | None] | None  # None: the trigger was not reported (capped)
    intent: float | None = None
    holds: bool | None = None
    policy: str | None = None
    p_fire: float | None = None


@dataclass
class SessionRow:
    session: str
    segment: str
    context: dict[str, Any]
    moments: list[Moment] = field(default_factory=list)
    shown: bool = False
    converted: bool = False
    first_ms: int = 0
    last_ms: int = 0

    @property
    def policy(self) -> str | None:
        for m in self.moments:
            if m.policy is not None:
                return m.policy
        return None

    @property
    def propensity(self) -> float:
        """P(shown) under the randomised policy: the largest logged p_fire (1 or 0 when the
        edge logged none: what happened was then certain)."""
        logged = [m.p_fire for m in self.moments if m.p_fire is not None]
        if not logged:
            return 1.0 if self.shown else 0.0
        return max(logged)

    @property
    def weight(self) -> float:
        p = self.propensity
        p = p if self.shown else 1.0 - p
        return 1.0 / max(p, MIN_PROPENSITY)

    @property
    def ever_held(self) -> bool:
        """The rule in force for this session held at some moment (it fired, or its
        holdout kept it back)."""
        return self.shown or any(m.holds for m in self.moments)


def segment_of(snap: Snapshot, context: dict[str, Any]) -> str:
    """The first listed segment the context is in (as the edge picks), else "*"."""
    for name, preds in snap.segments.items():
        if all(context_holds(p, context) for p in preds):
            return name
    return "*"


def _finite(value: Any) -> float | None:
    """A stored number as a finite float, else None (ingest refuses integers past 2^53;
    rows stored before it did may still hold one, and float() raises on them)."""
    if type(value) not in (int, float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _numbers(raw: Any) -> dict[str, float]:
    if type(raw) is not dict:
        return {}
    numbers = {str(k): _finite(v) for k, v in raw.items()}
    return {k: v for k, v in numbers.items() if v is not None}


def load_sessions(store: TelemetryStore, snap: Snapshot, trigger_id: str, pages: tuple[str, ...],
                  since_ms: int, until_ms: int) -> list[SessionRow]:
    """Every session with a reported decision on the trigger's pages in [since, until)."""
    rows: dict[str, SessionRow] = {}
    for session, ts, device, country, hour, url, fired, report in store.query(
            "SELECT session, ts_ms, device, country, local_hour, url, fired, report "
            "FROM decisions WHERE ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms",
            (since_ms, until_ms)):
        row = rows.get(session)
        if row is None:
            ctx = {k: v for k, v in (("device", device), ("country", country),
                                     ("local_hour", hour)) if v is not None}
            row = rows[session] = SessionRow(session, segment_of(snap, ctx), ctx, first_ms=ts)
        row.last_ms = ts
        if trigger_id in (json.loads(fired) if fired else ()):
            row.shown = True
        rep = json.loads(report) if report else None
        path = url_path(url) if url else "/"
        if type(rep) is not dict or not any(glob_match(p, path) for p in pages):
            continue
        trig = (rep.get("triggers") or {}).get(trigger_id)
        trig = trig if type(trig) is dict else {}
        raw = trig.get("values")
        values = {str(k): _finite(v) for k, v in raw.items()} if type(raw) is dict else None
        intent, p_fire = trig.get("intent"), trig.get("p_fire")
        row.moments.append(Moment(
            ts, _numbers(rep.get("session")), values,
            _finite(intent),
            bool(trig["holds"]) if "holds" in trig else None,
            str(trig["policy"]) if trig.get("policy") else None,
            float(p_fire) if type(p_fire) in (int, float) and 0 <= p_fire <= 1 else None))
    on_page = {s: r for s, r in rows.items() if r.moments}
    if on_page:
        for (session,) in store.query(
                "SELECT DISTINCT session FROM outcomes WHERE ts_ms >= ? AND ts_ms < ? AND "
                "type = 'conversion'", (since_ms, until_ms + 3_600_000)):
            if session in on_page:
                on_page[session].converted = True
    return list(on_page.values())
