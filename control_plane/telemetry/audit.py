"""Trigger audit from telemetry: which triggers fire together (redundant) and which have
too little evidence to judge (low confidence), as candidates for retirement."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from .telemetry_store import TelemetryStore, consistent

MIN_SESSIONS = 30  # a trigger that fired in fewer sessions is low-confidence
# Triggers in the correlation matrix, at most: the ones that fired in the most sessions.
# Telemetry names whatever triggers a client made up; an N x N matrix of them was a
# 260 MB page at 1,000 names.
MAX_MATRIX = 100
# Flags of each kind listed, at most (the triggers that fired in the most sessions first):
# 20,000 made-up triggers, each low-confidence, made the audit page 65 MB.
MAX_FLAGS = 100


@consistent
def audit(store: TelemetryStore, redundant_r: float = 0.9, min_sessions: int = MIN_SESSIONS,
          max_ci_width: float = 0.2, since_ms: int = 0) -> dict[str, Any]:
    """The correlation matrix of firings across sessions (of decisions, fires and outcomes
    from `since_ms` on), and the flagged triggers (at most MAX_FLAGS of each kind; how
    many more in `flags_left_out`).

    Sessions in the experiment's holdout arm are left out: nothing fires for them, and
    counting them would make every pair of triggers look correlated."""
    # `open_ts`: a session's last decision outside the holdout arm
    n = store.query("SELECT count(*) FROM sessions WHERE open_ts >= ?", (since_ms,))[0][0]
    # per trigger, its sessions and those of them engaged, counted by SQLite (one row per
    # trigger streamed through, none kept but the flags listed)
    per_trigger = store.rows(
        "SELECT f.trigger, count(DISTINCT f.session), count(DISTINCT e.session) FROM fires f "
        "JOIN sessions s ON s.session = f.session AND s.open_ts >= ? LEFT JOIN (SELECT "
        "DISTINCT session FROM outcomes WHERE type IN ('click', 'conversion') AND ts_ms >= ?"
        ") e ON e.session = f.session WHERE f.ts_ms >= ? GROUP BY f.trigger "
        "ORDER BY 2 DESC, 1", (since_ms, since_ms, since_ms))
    triggers: list[str] = []
    low: list[dict[str, Any]] = []
    distinct = left_out = 0
    for trig, k, engaged in per_trigger:
        distinct += 1
        if len(triggers) < MAX_MATRIX:
            triggers.append(trig)
        rate = engaged / k if k else 0.0
        width = 2 * 1.96 * math.sqrt(rate * (1 - rate) / k) if k else float("inf")
        if k < min_sessions or width > max_ci_width:
            if len(low) < MAX_FLAGS:
                low.append({"trigger": trig, "flag": "low_confidence", "sessions": k,
                            "engagement_rate": round(rate, 3), "ci95_width": round(width, 3)})
            else:
                left_out += 1
    fired: dict[str, set[str]] = defaultdict(set)
    if triggers:
        for trig, session in store.rows(
                "SELECT f.trigger, f.session FROM fires f JOIN sessions s ON s.session = "
                "f.session AND s.open_ts >= ? WHERE f.ts_ms >= ? AND f.trigger IN "
                f"({', '.join('?' * len(triggers))})", (since_ms, since_ms, *triggers)):
            fired[trig].add(session)
    triggers.sort()
    matrix = {a: {b: _phi(fired[a], fired[b], n) for b in triggers} for a in triggers}
    flags = []
    for i, a in enumerate(triggers):
        for b in triggers[i + 1:]:
            r = matrix[a][b]
            if r is None and fired[a] == fired[b]:
                r = 1.0  # both fire in every session: no variance, yet the same signal
            if r is not None and abs(r) > redundant_r:
                if len(flags) < MAX_FLAGS:
                    flags.append({"trigger": b, "flag": "redundant", "with": a,
                                  "r": round(r, 3)})
                else:
                    left_out += 1
    flags += sorted(low, key=lambda f: f["trigger"])
    return {"sessions": n, "triggers": triggers, "left_out": distinct - len(triggers),
            "correlation": {a: {b: None if v is None else round(v, 3) for b, v in row.items()}
                            for a, row in matrix.items()}, "flags": flags,
            "flags_left_out": left_out, "max_flags": MAX_FLAGS}


def _phi(a: set[str], b: set[str], n: int) -> float | None:
    """Pearson r of two 0/1 firing vectors over n sessions (None: one never varies)."""
    if not n:
        return None
    pa, pb, pab = len(a) / n, len(b) / n, len(a & b) / n
    den = math.sqrt(pa * (1 - pa) * pb * (1 - pb))
    return None if den == 0 else (pab - pa * pb) / den
