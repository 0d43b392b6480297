"""What the experiments, learning and audit pages show, arranged from the reports' own
functions (experiment_report, recalibration_log, audit): no number is computed here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from ..telemetry.audit import MIN_SESSIONS, audit
from ..telemetry.reports import (
    MAX_RECALIBRATIONS,
    experiment_report,
    experiment_split,
    recalibration_log,
)
from ..telemetry.telemetry_store import TelemetryStore, consistent
from . import charts


def when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@consistent
def experiment_view(store: TelemetryStore, snapshot: Mapping[str, Any] | None, since_ms: int,
                    window_s: float) -> dict[str, Any]:
    """The experiment report of the period, checked against the split `snapshot` (the
    published one) declares, with its two interval charts: each arm's conversion rate,
    and the lifts."""
    split = experiment_split(snapshot)
    report = experiment_report(store, window_s, since_ms, split=split)
    arm_rows = [(a["arm"], a["conversion_rate"], *(a["conversion_ci95"] or (None, None)))
                for a in report["arms"]]
    lift_rows = [(f"{c['arm']} vs {c['against']}", c["lift"],
                  *(c["ci95"] or (None, None))) for c in report["comparisons"]]
    return {"report": report, "split": split,
            "rates_chart": charts.intervals(arm_rows, "Conversion rate per arm, 95 % interval"),
            "lifts_chart": _lift_chart(lift_rows)}


def _lift_chart(rows: list[tuple[str, float | None, float | None, float | None]]) -> Markup:
    """The lifts as intervals; a chart with no drawable lift says why in the page's words."""
    if all(r[1] is None for r in rows):
        return Markup('<p class="empty">No lift yet: every comparison needs enough sessions '
                      'in both arms.</p>')
    return charts.intervals(rows, "Lift in conversion rate, 95 % interval")


def flat(details: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A recalibration's details (nested numbers and words) as (name, value) lines."""
    if isinstance(details, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in details.items():
            out += flat(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
        return out
    if isinstance(details, float):
        return [(prefix, f"{details:.4g}")]
    if isinstance(details, list | tuple):
        return [(prefix, ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v)
                                   for v in details))]
    return [(prefix, str(details))]


@consistent
def learning_view(store: TelemetryStore, since_ms: int) -> dict[str, Any]:
    """Each recalibration of the period, newest first, and per trigger a plot of its
    adaptive thresholds over time (one series per model key and segment: `new` at each
    recalibration that moved it)."""
    rows = recalibration_log(store, since_ms, limit=MAX_RECALIBRATIONS)["recalibrations"]
    for row in rows:
        row["when"] = when(row["ts_ms"])
        row["detail_lines"] = flat(row["details"] or {})
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(dict)
    for row in reversed(rows):  # oldest first, as the plot draws them
        if row["new"] is not None:
            name = f"{row['model_key']} {row['segment']}"
            series[row["trigger"]].setdefault(name, []).append((row["ts_ms"], row["new"]))
    plots = [(trig, charts.time_series(lines, f"Adaptive thresholds of {trig} over time"))
             for trig, lines in sorted(series.items())]
    return {"rows": rows, "plots": plots, "truncated": len(rows) >= MAX_RECALIBRATIONS}


@consistent
def audit_view(store: TelemetryStore, since_ms: int) -> dict[str, Any]:
    """The audit of the period: its correlation matrix as a heat map, and each flagged
    trigger with what to do about it in words."""
    found = audit(store, since_ms=since_ms)
    names = found["triggers"]
    value = {(a, b): found["correlation"][a][b] for a in names for b in names}
    advice = [{**flag, "advice": _advice(flag)} for flag in found["flags"]]
    return {"audit": found, "flags": advice,
            "heat_map": _at_natural_size(
                charts.heat_map(names, value, "Correlation of firings across sessions"),
                len(names))}


def _at_natural_size(heat_map: Markup, triggers: int) -> Markup:
    """The heat map no wider than its drawing (about 1.3x): the console's charts stretch
    to the page's width, which blows a matrix of two or three triggers up to a poster."""
    if not triggers:
        return heat_map
    width = round((150 + 28 * triggers + 8) * 1.3)
    return Markup(f'<div class="heat-map" style="max-width:{width}px">') + heat_map + \
        Markup("</div>")


def _advice(flag: dict[str, Any]) -> str:
    if flag["flag"] == "redundant":
        return (f"It fires in the same sessions as {flag['with']} (r = {flag['r']:.2f}): the "
                f"two answer the same moment. Merge them into one trigger, or retire the one "
                f"that converts less.")
    if flag["sessions"] < MIN_SESSIONS:
        return (f"It fired in only {flag['sessions']} session(s): too little evidence to "
                f"judge it. Gather more data before changing or retiring it.")
    return (f"Its engagement rate ({flag['engagement_rate'] * 100:.1f} %) is uncertain by "
            f"{flag['ci95_width'] * 100:.1f} points (95 % interval width): gather more data "
            f"before judging it; if it stays this thin, consider retiring it.")
