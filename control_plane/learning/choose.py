"""Choosing thresholds for a recall target, and judging a candidate against the current rule.

Recall is estimated on sessions whose only label is whether they converted. Not everyone who
converts was a visitor the trigger should have found: some convert whatever they do, at the
background rate `c`, estimated as the conversion rate of the least engaged tenth. A session's
conversion, less `c`, is then an unbiased stand-in for its intent (E[y - c | x] is
proportional to P(high intent | x) when low-intent visitors convert at `c`), and

    recall(t) = sum over fired sessions of w (y - c)  /  sum over all of w (y - c)

with w the inverse-propensity weights. The threshold kept is the least-firing one whose
recall, at the lower bound of a Poisson bootstrap (`confidence`), still reaches the target.
`c` is re-estimated in every bootstrap replicate, so one bound covers both uncertainties
(stacking a bound on `c` under the recall bound made the loop fire far more than its target
needed). Joint conditions are searched jointly (exactly for one, a grid for two, coordinate
sweeps beyond).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import VECTOR_SIGNALS, SessionRow
from .model import matrix, score

BOOTSTRAP = 200
GRID = 24  # candidate values per condition when two or more are tuned jointly


@dataclass(frozen=True)
class Cond:
    """A signal condition of the trigger: adaptive (tuned) or not (tested as compiled)."""

    key: str
    model_key: str
    signal: str
    op: str
    value: float  # the threshold in force for the segment (static for fixed conditions)
    adaptive: bool

    @property
    def sign(self) -> float:
        return -1.0 if self.op in ("<", "<=") else 1.0

    def passes(self, v: float) -> bool:
        return {">=": v >= self.value, ">": v > self.value, "<=": v <= self.value,
                "<": v < self.value}.get(self.op, v == self.value)


@dataclass
class Problem:
    """Moments of a set of sessions, as arrays: each tuned condition's value (sign-adjusted
    so larger always fires), whether the fixed conditions hold, the session of each."""

    values: np.ndarray  # moments x tuned conditions
    ok: np.ndarray  # moments: fixed conditions hold
    session: np.ndarray  # moments -> session index
    y: np.ndarray  # sessions: converted
    w: np.ndarray  # sessions: inverse-propensity weight

    @property
    def n(self) -> int:
        return len(self.y)


def build(rows: list[SessionRow], conds: list[Cond], models: dict[str, dict[str, Any]]
          ) -> Problem:
    """`models`: the intent model per model key for these sessions."""
    tuned = [c for c in conds if c.adaptive]
    fixed = [c for c in conds if not c.adaptive]
    vals: list[list[float]] = []
    ok: list[bool] = []
    sess: list[int] = []
    intent_cols = {c.model_key: i for i, c in enumerate(tuned) if c.signal == "intent"}
    vectors = [m.vector for r in rows for m in r.moments]
    scores = {k: score(models[k], *_raw(vectors, models[k])) for k in intent_cols
              if k in models}
    at = 0
    for i, row in enumerate(rows):
        last: dict[str, float] = {}
        for m in row.moments:
            line = []
            for c in tuned:
                if c.signal == "intent":
                    v = scores[c.model_key][at] if c.model_key in scores else m.intent
                else:
                    v = _value(c, m, last)
                line.append(-math.inf if v is None else c.sign * v)
            fixed_ok = True
            for c in fixed:
                v = _value(c, m, last)
                if v is None or not c.passes(v):
                    fixed_ok = False
            vals.append(line)
            ok.append(fixed_ok)
            sess.append(i)
            at += 1
    return Problem(np.array(vals, dtype=float).reshape(len(vals), len(tuned)),
                   np.array(ok, dtype=bool), np.array(sess, dtype=int),
                   np.array([r.converted for r in rows], dtype=float),
                   np.array([r.weight for r in rows], dtype=float))


def concat(parts: list[Problem]) -> Problem:
    """One problem of several sets of sessions."""
    offsets = np.cumsum([0] + [q.n for q in parts[:-1]])
    return Problem(np.concatenate([q.values for q in parts]),
                   np.concatenate([q.ok for q in parts]),
                   np.concatenate([q.session + o for q, o in zip(parts, offsets)]),
                   np.concatenate([q.y for q in parts]), np.concatenate([q.w for q in parts]))


def _raw(vectors: list[dict[str, float]], model: dict[str, Any]) -> tuple[np.ndarray, tuple]:
    names = tuple(model["features"])
    return matrix(vectors, names), names


def _value(c: Cond, m: Any, last: dict[str, float]) -> float | None:
    """The condition's value at a moment: logged by the core, else from the session vector
    (after the trigger fired it is no longer reported), else the last one seen."""
    v = m.values.get(c.key) if m.values is not None else None
    if v is None and c.signal in VECTOR_SIGNALS:
        v = m.vector.get(VECTOR_SIGNALS[c.signal])
    if v is None:
        return last.get(c.key)
    last[c.key] = v
    return v


def session_max(p: Problem, mask: np.ndarray, col: int) -> np.ndarray:
    """Per session, the largest value of column `col` over the moments in `mask`."""
    out = np.full(p.n, -np.inf)
    np.maximum.at(out, p.session[mask], p.values[mask, col])
    return out


def background(y: np.ndarray, w: np.ndarray, rank: np.ndarray,
               boot: np.ndarray | None = None, share: float = 0.1) -> np.ndarray | float:
    """The (weighted) conversion rate of the least engaged `share` of sessions (lowest
    `rank`): a float, or with `boot` one rate per bootstrap replicate, so that its
    uncertainty enters the recall bound. `share` 0: no background (c = 0), so recall is
    that of converters, which errs towards firing more."""
    if len(y) == 0 or share <= 0:
        return 0.0 if boot is None else np.zeros(len(boot))
    low = rank <= np.quantile(rank, share)
    reps = np.ones((1, len(y))) if boot is None else boot
    den = (reps * (w * low)).sum(axis=1)
    num = (reps * (w * y * low)).sum(axis=1)
    rate = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return float(rate[0]) if boot is None else rate


def boot_weights(n: int, seed: int) -> np.ndarray:
    """Poisson(1) resampling weights, one row per bootstrap replicate."""
    return np.random.default_rng(seed).poisson(1.0, size=(BOOTSTRAP, n)).astype(float)


@dataclass(frozen=True)
class Choice:
    thresholds: tuple[float, ...] | None  # per tuned condition (original sign), None: none fits
    recall: float  # point estimate on the training sessions
    recall_low: float  # its bootstrap lower bound
    fire_share: float  # weighted share of sessions fired
    background: float
    sessions: int
    conversions: int
    bounded: bool = False  # the step bound held it back from the best
    reached: bool = True  # False: no thresholds reach the target; these fire for all they can
    # True: the sessions' conversions show no intent at all (they convert no more than the
    # least engaged do), so no threshold is chosen: the segment's stay as they are
    no_signal: bool = False


def recall_curve(order_y: np.ndarray, order_w: np.ndarray, boot: np.ndarray, c: float,
                 c_boot: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Recall (point, lower bound) of firing for the first k sessions, k = 1..n, sessions
    in the given order (highest value first); `c_boot`: the background rate per replicate."""
    gain = order_w * (order_y - c)
    total = gain.sum()
    point = np.cumsum(gain) / total if total > 0 else np.zeros_like(gain)
    bgain = boot * (order_w * (order_y[None, :] - c_boot[:, None]))
    btotal = bgain.sum(axis=1, keepdims=True)
    btotal[btotal <= 0] = np.inf
    bcurve = np.cumsum(bgain, axis=1) / btotal
    low = np.quantile(bcurve, alpha, axis=0)
    return point, low


def choose(p: Problem, target: float, confidence: float, min_share: float,
           boot: np.ndarray, conds: list[Cond], background_share: float = 0.1,
           max_share: float = 1.0) -> Choice:
    """The least-firing thresholds whose recall lower bound reaches `target` and that fire
    for between `min_share` and `max_share` of the (weighted) sessions (the step bound,
    both ways); the background rate from the least engaged `background_share` of sessions.
    Where reaching the target needs more firing than `max_share`, the thresholds that fire
    the most within it (bounded, not reached): outcomes that call for a jump in firing are
    as likely telemetry forged with the edge token as a change in the visitors (a review
    sent one segment from 30 % to 81 % of sessions in one run with a single batch)."""
    tuned = [c for c in conds if c.adaptive]
    alpha = 1.0 - confidence
    y, w = p.y, p.w
    wsum = w.sum()
    firsts = session_max(p, p.ok, 0)
    rank = _rank(p)
    c = float(background(y, w, rank, share=background_share))
    c_boot = np.asarray(background(y, w, rank, boot, background_share))
    n_conv = int(y.sum())
    if float((w * (y - c)).sum()) <= 0:
        # The least engaged convert as often as the rest: every recall estimate is 0 (or
        # undefined), so "firing for all it can" looked like the only way to the target,
        # and a segment went to firing for every session on no evidence (an independent
        # review: 99.9 % of a 3 %-intent population's mobile sessions, for 8 rounds).
        return Choice(None, 0.0, 0.0, 0.0, c, p.n, n_conv, reached=False, no_signal=True)
    best: tuple[float, tuple[float, ...], float, float, bool] | None = None
    # the most firing within max_share, the best recall first: what the run takes when the
    # target needs more firing than the step allows
    capped: tuple[float, tuple[float, ...], float, float] | None = None

    def one_d(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        order = np.argsort(-m, kind="stable")
        point, bound = recall_curve(y[order], w[order], boot[:, order], c, c_boot, alpha)
        share = np.cumsum(w[order]) / wsum
        return m[order], point, bound, share

    prefixes: list[tuple[float, ...]] = [()]
    if len(tuned) > 1:
        # every combination of the leading conditions on a grid of their values; the last
        # one exactly
        grids = []
        for k in range(len(tuned) - 1):
            peaks = session_max(p, p.ok, k)
            grids.append(np.unique(np.quantile(peaks[np.isfinite(peaks)],
                                               np.linspace(0, 1, GRID))))
        prefixes = list(itertools.product(*grids))
    for prefix in prefixes:
        mask = p.ok.copy()
        for k, t in enumerate(prefix):
            mask &= p.values[:, k] >= t
        m = session_max(p, mask, len(tuned) - 1) if prefix else firsts
        sorted_m, point, low, share = one_d(m)
        finite = np.isfinite(sorted_m)
        # cut positions: fire for the first k sessions; only where the value changes
        distinct = np.append(sorted_m[1:] != sorted_m[:-1], True) & finite
        if max_share < 1.0:
            within = np.flatnonzero(distinct & (share <= max_share))
            if len(within):
                j = within[-1]
                cand_cap = (float(point[j]), (*prefix, _cut(sorted_m, j)), float(low[j]),
                            float(share[j]))
                if capped is None or cand_cap[0] > capped[0]:
                    capped = cand_cap
        feasible = distinct & (low >= target)
        bounded = False
        idx = np.flatnonzero(feasible)
        if len(idx) == 0:
            continue
        k = idx[0]  # the fewest sessions fired
        if share[k] < min_share:
            wider = np.flatnonzero(distinct & (share >= min_share))
            if len(wider) == 0:
                continue
            k, bounded = wider[0], True
        if share[k] > max_share:
            continue  # not within this run's step: `capped` is the most firing allowed
        cand = (float(share[k]), (*prefix, _cut(sorted_m, k)), float(point[k]),
                float(low[k]), bounded)
        if best is None or cand[0] < best[0]:
            best = cand
    if best is None:
        widest = _widest(p, y, w, boot, c, c_boot, alpha, tuned, n_conv)
        if widest.thresholds is None or widest.fire_share <= max_share or capped is None:
            return widest
        point, ts, low, share = capped
        return Choice(tuple(t * cnd.sign for t, cnd in zip(ts, tuned)), point, low, share, c,
                      p.n, n_conv, bounded=True, reached=False)
    share, ts, point, low, bounded = best
    return Choice(tuple(t * cnd.sign for t, cnd in zip(ts, tuned)), point, low, share, c, p.n,
                  n_conv, bounded)


def _widest(p: Problem, y: np.ndarray, w: np.ndarray, boot: np.ndarray, c: float,
            c_boot: np.ndarray, alpha: float, tuned: list[Cond], n_conv: int) -> Choice:
    """No thresholds reach the target: the lowest of each, firing for every session the
    trigger's other conditions let through (the most recall there is), or None when no
    session ever reaches them."""
    lows = []
    for k in range(p.values.shape[1]):
        peaks = session_max(p, p.ok, k)
        finite = peaks[np.isfinite(peaks)]
        if len(finite) == 0:
            return Choice(None, 0.0, 0.0, 1.0, c, p.n, n_conv, reached=False)
        lows.append(float(finite.min()))
    fired = fires(p, tuple(t * cnd.sign for t, cnd in zip(lows, tuned)), tuned)
    order = np.argsort(~fired, kind="stable")
    point, bound = recall_curve(y[order], w[order], boot[:, order], c, c_boot, alpha)
    k = int(fired.sum()) - 1
    share = float((w * fired).sum() / w.sum()) if w.sum() > 0 else 0.0
    return Choice(tuple(t * cnd.sign for t, cnd in zip(lows, tuned)),
                  float(point[k]) if k >= 0 else 0.0, float(bound[k]) if k >= 0 else 0.0,
                  share, c, p.n, n_conv, reached=False)


def _cut(sorted_m: np.ndarray, k: int) -> float:
    """The threshold that fires for the first k + 1 sessions of `sorted_m` (highest first):
    halfway to the next value."""
    nxt = sorted_m[k + 1] if k + 1 < len(sorted_m) and np.isfinite(sorted_m[k + 1]) \
        else sorted_m[k]
    return float((sorted_m[k] + nxt) / 2)


def _rank(p: Problem) -> np.ndarray:
    """How far each session got towards firing: the mean percentile of its best values."""
    ranks = []
    for k in range(p.values.shape[1]):
        m = session_max(p, p.ok, k)
        m = np.where(np.isfinite(m), m, -1e300)
        ranks.append(np.argsort(np.argsort(m, kind="stable"), kind="stable") / max(p.n - 1, 1))
    return np.mean(ranks, axis=0) if ranks else np.zeros(p.n)


def fires(p: Problem, thresholds: tuple[float, ...], conds: list[Cond]) -> np.ndarray:
    """Per session: the tuned conditions at `thresholds` (original sign) and the fixed ones
    hold together at some moment."""
    tuned = [c for c in conds if c.adaptive]
    mask = p.ok.copy()
    for k, (t, c) in enumerate(zip(thresholds, tuned)):
        mask &= p.values[:, k] >= t * c.sign
    out = np.zeros(p.n, dtype=bool)
    out[p.session[mask]] = True
    return out


def compare(y: np.ndarray, w: np.ndarray, cand: np.ndarray, cur: np.ndarray, c: float,
            boot: np.ndarray, confidence: float) -> dict[str, Any]:
    """Two rules (which sessions each fired for) on the same sessions: each one's recall
    (estimated as above; None when the sessions hold no sign of intent) and weighted fires
    among sessions that did not convert, and how much more intent the candidate catches,
    `more_intent`: the estimate and its bootstrap bounds at `confidence` (a paired, linear
    statistic, so its bootstrap stays sound when few sessions convert; a ratio's does not)."""
    gain = w * (y - c)
    total = float(gain.sum())
    diff = cand.astype(float) - cur.astype(float)
    reps = (boot * gain * diff).sum(axis=1)
    alpha = 1.0 - confidence

    def one(fired: np.ndarray) -> dict[str, Any]:
        return {"recall": float(gain[fired].sum() / total) if total > 0 else None,
                "false": float((w * (1 - y) * fired).sum()),
                "fire_share": float((w * fired).sum() / w.sum()) if w.sum() > 0 else 0.0}

    share = total if total > 0 else 1.0
    return {"candidate": one(cand), "current": one(cur),
            "sessions": len(y), "conversions": int(y.sum()),
            "more_intent": [float((gain * diff).sum() / share),
                            float(np.quantile(reps, alpha) / share),
                            float(np.quantile(reps, 1 - alpha) / share)]}
