"""The learned intent model: a regularised logistic regression of P(convert | session
vector), fitted with scikit-learn on the weighted sessions, Platt-calibrated on
out-of-fold scores, and published as plain numbers the core evaluates with the standard
library (`models.learned`, docs/snapshot-format.md).

The core computes, for each feature, x' = (transform(x) - mean) / scale (an absent feature
counts as x' = 0: the mean), z = bias + sum(w * x'), p = 1 / (1 + exp(-(a * z + b))).
`score` here is the same arithmetic over arrays; the tests hold the two equal.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .data import FEATURES, SessionRow

TRANSFORMS = dict(FEATURES)


def matrix(vectors: list[dict[str, float]], names: tuple[str, ...]) -> np.ndarray:
    """Raw feature values, NaN where a vector lacks one."""
    out = np.full((len(vectors), len(names)), np.nan)
    for i, vec in enumerate(vectors):
        for j, name in enumerate(names):
            v = vec.get(name)
            if v is not None:
                out[i, j] = v
    return out


def _transform(raw: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    out = raw.copy()
    for j, name in enumerate(names):
        if TRANSFORMS.get(name) == "log1p":
            out[:, j] = np.log1p(np.maximum(out[:, j], 0.0))
    return out


def score(model: dict[str, Any], raw: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """P(convert) for rows of raw features (columns `names`), as the core computes it."""
    feats = model["features"]
    transform = model.get("transform") or {}
    mean, scale, weights = model["mean"], model["scale"], model["weights"]
    z = np.full(raw.shape[0], float(model["bias"]))
    for f in feats:
        if f not in names:
            continue
        col = raw[:, names.index(f)]
        if transform.get(f) == "log1p":
            col = np.log1p(np.maximum(col, 0.0))
        x = (col - mean[f]) / scale[f]
        z += weights[f] * np.nan_to_num(x, nan=0.0)
    cal = model.get("calibration") or {"a": 1.0, "b": 0.0}
    u = cal["a"] * z + cal["b"]
    return 1.0 / (1.0 + np.exp(-np.clip(u, -60.0, 60.0)))


def training_vector(row: SessionRow) -> dict[str, float]:
    """What a session is learned from: its vector at its last moment on the trigger's pages
    (what the rule can see at the latest moment it can still fire)."""
    return row.moments[-1].vector


def fit(rows: list[SessionRow], c: float = 0.5, seed: int = 0) -> dict[str, Any] | None:
    """The model for these sessions, or None when they cannot support one (one class)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = np.array([r.converted for r in rows], dtype=int)
    if y.sum() < 2 or y.sum() > len(y) - 2:
        return None
    w = np.array([r.weight for r in rows])
    all_names = tuple(n for n, _ in FEATURES)
    x = _transform(matrix([training_vector(r) for r in rows], all_names), all_names)
    present = ~np.all(np.isnan(x), axis=0)
    names = tuple(n for n, keep in zip(all_names, present) if keep)
    x = x[:, present]
    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    keep = scale > 1e-9  # a constant feature says nothing
    names = tuple(n for n, k in zip(names, keep) if k)
    x, mean, scale = x[:, keep], mean[keep], scale[keep]
    xs = np.nan_to_num((x - mean) / scale, nan=0.0)

    def logistic() -> Any:
        return LogisticRegression(C=c, max_iter=2000)

    # Platt calibration on out-of-fold scores: the weights are fitted on all sessions, the
    # calibration on scores each session got from a model that did not see it.
    folds = min(3, int(y.sum()), int(len(y) - y.sum()))
    oof = np.zeros(len(y))
    if folds >= 2:
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(xs, y):
            part = logistic().fit(xs[train], y[train], sample_weight=w[train])
            oof[test] = part.decision_function(xs[test])
    final = logistic().fit(xs, y, sample_weight=w)
    a, b = 1.0, 0.0
    if folds >= 2 and np.std(oof) > 1e-9:
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(oof.reshape(-1, 1), y,
                                                             sample_weight=w)
        a, b = float(platt.coef_[0][0]), float(platt.intercept_[0])
        if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
            a, b = 1.0, 0.0  # a calibration that reverses the ranking is noise
    return {
        "features": list(names),
        "transform": {n: TRANSFORMS[n] for n in names if TRANSFORMS[n] != "identity"},
        "mean": {n: round(float(m), 6) for n, m in zip(names, mean)},
        "scale": {n: round(float(s), 6) for n, s in zip(names, scale)},
        "weights": {n: round(float(v), 6) for n, v in zip(names, final.coef_[0])},
        "bias": round(float(final.intercept_[0]), 6),
        "calibration": {"a": round(a, 6), "b": round(b, 6)},
        "trained": {"sessions": len(y), "conversions": int(y.sum()),
                    "weighted_sessions": round(float(w.sum()), 1), "c": c},
    }
