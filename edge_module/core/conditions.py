"""Evaluating conditions: signal values, thresholds, context tests and `sustained`.

`Ctx` carries what one decision knows beyond the session: the request's context, the
segments the session is in, and caches of thresholds and intent scores.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from .catalog import (
    DEFAULT_ENTROPY_WINDOW_MS,
    DEFAULT_VELOCITY_WINDOW_MS,
    FALLING,
    WEEKDAYS,
)
from .features import LearnedModel, learned_score, session_vector
from .session import Session
from .snapshot import (
    ABSENT,
    AVG,
    COUNT,
    DWELL,
    FOCUS_TO_INPUT,
    HOVER,
    INPUT_TO_SUBMIT,
    INTENT,
    MAX,
    MIN,
    MOUSE_ENTROPY,
    PAGES,
    SCROLL_DEPTH,
    SCROLL_POSITION,
    SCROLL_VELOCITY,
    SESSION_TIME,
    SINCE,
    VELOCITY_SPIKE,
    Condition,
    ContextCond,
    Model,
    SegmentCond,
    Snapshot,
    Sustained,
)

_AGG = {MIN: "min", MAX: "max", AVG: "avg"}


class Ctx:
    """What one decision knows besides the session."""

    __slots__ = ("snap", "context", "segments", "session_id", "arm", "force", "_thresholds",
                 "_intent", "_explore", "_learned")

    def __init__(self, snap: Snapshot, context: dict[str, Any], session_id: str) -> None:
        self.snap = snap
        self.context = context
        self.session_id = session_id
        self.segments: frozenset[str] = frozenset(
            name for name, preds in snap.segments.items()
            if all(context_holds(p, context) for p in preds)) if snap.segments else frozenset()
        # keyed by (condition key, learned?): a report evaluates both rules of a trigger
        self._thresholds: dict[tuple[str, bool], float] = {}
        self._intent: dict[tuple[str, int], float] = {}
        self._explore: dict[str, bool] = {}  # trigger id -> in its exploration slice
        self._learned: dict[str, LearnedModel | None] = {}  # model key -> this session's
        # None: every adaptive condition follows the session's slice; "learned" or
        # "static": all of them use that rule (the report's counterfactuals)
        self.force: str | None = None
        # the session's arm of the adaptive-threshold experiment, if one runs
        self.arm: str | None = None
        if snap.experiment is not None:
            salt, adaptive, static, _holdout = snap.experiment
            at = bucket(session_id, "\x1fexperiment", salt)
            self.arm = "adaptive" if at < adaptive else \
                "static" if at < adaptive + static else "holdout"

    def exploring(self, trigger_id: str, salt: str, explore: float) -> bool:
        """The session is in the trigger's exploration slice (contract B of issue #12)."""
        if explore <= 0:
            return False
        hit = self._explore.get(trigger_id)
        if hit is None:
            hit = self._explore[trigger_id] = \
                bucket(self.session_id, trigger_id, salt + "\x1fexplore") < explore
        return hit

    def static_rule(self, c: Condition) -> bool:
        """Adaptive `c` uses its static value (and intent the pack's own model)."""
        if self.arm == "static":
            return True
        if self.force is not None:
            return self.force == "static"
        return self.exploring(c.slice_of, c.slice_salt, c.explore)

    def threshold(self, c: Condition) -> float:
        """The value `c` compares with for this session: per segment, adaptive or static."""
        if not c.by_segment and c.mode != "adaptive":
            return c.value
        learn = c.mode == "adaptive" and c.model_key is not None and not self.static_rule(c)
        cached = self._thresholds.get((c.key, learn))
        if cached is not None:
            return cached
        value = self.in_segment(c.by_segment)
        if value is None:
            value = c.value
        if learn:
            learned = self.segment_entry(self.snap.thresholds.get(c.model_key or "", ()))
            if learned is not None:
                value = learned
        self._thresholds[(c.key, learn)] = value
        return value

    def baseline(self, signal: str) -> tuple[float, float] | None:
        stats = self.snap.baselines.get(signal)
        if not stats:
            return None
        for seg, pair in stats.items():
            if seg != "*" and seg in self.segments:
                return pair
        return stats.get("*")

    def moved(self) -> None:
        """An event changed the session: scores cached for its moment are stale."""
        if self._intent:
            self._intent.clear()

    def intent(self, trigger_id: str, sess: Session, t: int) -> float:
        """The pack's intent score (`models.intent_by_trigger` or `models.intent`)."""
        model = self.snap.intent_by_trigger.get(trigger_id) or self.snap.intent
        if model is None:
            return 0.0
        key = (trigger_id if trigger_id in self.snap.intent_by_trigger else "*", t)
        score = self._intent.get(key)
        if score is None:
            score = self._intent[key] = intent_score(model, sess, t)
        return score

    def learned_model(self, model_key: str) -> LearnedModel | None:
        """`models.learned[model_key]` of the first listed segment the session is in,
        else of "*", else None."""
        if model_key in self._learned:
            return self._learned[model_key]
        found = self._learned[model_key] = self.segment_entry(self.snap.learned.get(model_key, ()))
        return found

    def in_segment(self, by_segment: Any) -> Any:
        """Of (segment, entry) pairs, the entry of the first segment the session is in, else
        None."""
        for seg, entry in by_segment:
            if seg in self.segments:
                return entry
        return None

    def segment_entry(self, by_segment: Any) -> Any:
        """`in_segment`, else the entry of "*", else None."""
        found = self.in_segment(by_segment)
        if found is not None:
            return found
        for seg, entry in by_segment:
            if seg == "*":
                return entry
        return None

    def intent_of(self, c: Condition, trigger_id: str, sess: Session, t: int) -> float:
        """The intent score condition `c` reads: an adaptive one the learned model of the
        session's segment (unless the static rule is in force), else the pack's model."""
        if c.mode == "adaptive" and self.snap.learned and not self.static_rule(c):
            model = self.learned_model(c.model_key or c.key)
            if model is not None:
                key = ("\x1flearned\x1f" + (c.model_key or c.key), t)
                score = self._intent.get(key)
                if score is None:
                    score = self._intent[key] = learned_score(model, session_vector(sess, t))
                return score
        return self.intent(trigger_id, sess, t)


def intent_score(model: Model, sess: Session, t: int) -> float:
    features = {
        "dwell": t - sess.pv,
        "session_time": t - sess.start_ms,
        "scroll_depth": sess.depth,
        "scroll_velocity": sess.velocity(t, DEFAULT_VELOCITY_WINDOW_MS),
        "mouse_entropy": sess.entropy(t, DEFAULT_ENTROPY_WINDOW_MS),
        "pages": len(sess.pages),
        "hover_total": math.fsum(sess.hover.values()),
    }
    # math.fsum, never sum(): CPython 3.12 made sum() of floats compensated, so the guest
    # (3.14) and a 3.11 host scored one model differently (0.5 against 0.731 in a review)
    z = math.fsum((model.bias, *(w * features.get(f, 0.0) / s for f, w, s in model.weights)))
    if z < -60:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON has it: true is not 1 (Python's True == 1 made `local_hour: 1` hold for
    a context sending true); 1 and 1.0 are one number."""
    return (type(a) is bool) == (type(b) is bool) and bool(a == b)


def context_holds(c: ContextCond, context: dict[str, Any]) -> bool:
    if c.field == "attribute":
        attrs = context.get("attributes")
        value = attrs.get(c.name) if type(attrs) is dict and c.name else None
    else:
        value = context.get(c.field)
    if value is None:
        return False
    if c.field == "weekday" and type(value) is int and 0 <= value < 7:
        value = WEEKDAYS[value]
    op = c.op
    if op == "in":
        return any(_same(value, x) for x in c.value) \
            if isinstance(value, (str, int, float, bool)) else False
    if op == "==":
        return _same(value, c.value)
    if op == "!=":
        return not _same(value, c.value)
    if op == "glob":
        return type(value) is str and c.pattern is not None and c.pattern.match(value)
    if type(value) not in (int, float) or type(c.value) not in (int, float):
        return False
    if op == ">=":
        return bool(value >= c.value)
    if op == ">":
        return bool(value > c.value)
    if op == "<=":
        return bool(value <= c.value)
    return bool(value < c.value)


def measure(c: Condition, sess: Session, ctx: Ctx, t: int, trigger_id: str = "") -> float | None:
    """The signal's value at `t` (None: not defined, the condition cannot hold)."""
    s = c.signal
    if s == DWELL:
        return t - sess.pv
    if s == SCROLL_DEPTH:
        return sess.depth
    if s == SCROLL_VELOCITY:
        return sess.velocity(t, c.window_ms)
    if s == HOVER:
        return sess.hover.get(c.target or "", 0.0)
    if s == SESSION_TIME:
        return t - sess.start_ms
    if s == SCROLL_POSITION:
        return sess.pos
    if s == VELOCITY_SPIKE:
        if c.baseline == "session":
            base = sess.session_speed()
        else:
            stats = ctx.baseline("scroll_velocity")
            base = stats[0] if stats else None
        if not base:
            return None
        return sess.velocity(t, c.window_ms) / base
    if s == MOUSE_ENTROPY:
        return sess.entropy(t, c.window_ms)
    if s == PAGES:
        return len(sess.pages)
    if s == FOCUS_TO_INPUT:
        pair = sess.focus_input
        return pair[0] if pair and (c.target is None or pair[1] == c.target) else None
    if s == INPUT_TO_SUBMIT:
        pair = sess.input_submit
        return pair[0] if pair and (c.target is None or pair[1] == c.target) else None
    if s == COUNT:
        return sess.count(c.event or "", t, c.window_ms)
    if s in _AGG:
        return sess.aggregate(_AGG[s], c.field or "", t, c.window_ms)
    if s == SINCE:
        last = sess.last(c.event or "", t)
        return None if last is None else t - last
    if s == ABSENT:
        began = sess.last(c.after or "", t)
        if began is None:
            return None
        seen = sess.last(c.event or "", t)
        return None if seen is not None and seen >= began else t - began
    if s == INTENT:
        return ctx.intent_of(c, trigger_id, sess, t)
    return None


def signal_holds(c: Condition, sess: Session, ctx: Ctx, t: int, trigger_id: str = "") -> bool:
    s = c.signal
    # the common signals inline: this is the innermost loop of a decision
    if s == DWELL:
        value: float | None = t - sess.pv
    elif s == SCROLL_DEPTH:
        value = sess.depth
    elif s == SCROLL_VELOCITY:
        value = sess.velocity(t, c.window_ms)
    else:
        value = measure(c, sess, ctx, t, trigger_id)
        if value is None:
            return False
    if not c.test(value, c.value if c.static else ctx.threshold(c)):
        return False
    if not c.hybrid:
        return True
    # hybrid: also an outlier against the cohort baseline, in the comparison's direction
    stats = ctx.baseline(c.name)
    if not stats or stats[1] <= 0:
        return False
    z = (value - stats[0]) / stats[1]
    return z >= c.z if c.op in (">", ">=") else z <= -c.z if c.op in ("<", "<=") else True


def holds(c: Any, sess: Session, ctx: Ctx, t: int, trigger_id: str = "") -> bool:
    if type(c) is Condition:
        return signal_holds(c, sess, ctx, t, trigger_id)
    if type(c) is ContextCond:
        return context_holds(c, ctx.context)
    if type(c) is SegmentCond:
        return c.segment in ctx.segments
    return sustained_holds(c, sess, ctx, t, trigger_id)


def all_hold(conds: tuple[Any, ...], sess: Session, ctx: Ctx, t: int, trigger_id: str) -> bool:
    for c in conds:
        if type(c) is Condition:
            if not signal_holds(c, sess, ctx, t, trigger_id):
                return False
        elif not holds(c, sess, ctx, t, trigger_id):
            return False
    return True


def sustained_holds(c: Sustained, sess: Session, ctx: Ctx, t: int, trigger_id: str) -> bool:
    since = sess.sustained.get(c.key)
    return since is not None and t - since >= c.for_ms and \
        all_hold(c.inner, sess, ctx, t, trigger_id)


def observe(conds: tuple[Sustained, ...], sess: Session, ctx: Ctx, t: int) -> None:
    """One evaluation moment for `sustained` conditions: start or break their streak."""
    for c in conds:
        if all_hold(c.inner, sess, ctx, t, ""):
            if c.key not in sess.sustained:
                sess.sustained[c.key] = t
        else:
            sess.sustained.pop(c.key, None)


def bucket(session_id: str, trigger_id: str, salt: str) -> float:
    """A stable position in [0, 100) for (session, trigger, salt): rollouts and holdouts."""
    digest = hashlib.sha256(f"{session_id}\x1f{trigger_id}\x1f{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100.0


__all__ = ["FALLING", "Ctx", "all_hold", "bucket", "holds", "observe"]
