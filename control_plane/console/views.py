"""What each console page shows, arranged from the reports' own functions (one
implementation of every number, two views: the CLI's tables and these pages)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..distribution.pack_registry import PackRegistry
from ..rulepack import RulePackError
from ..telemetry.reports import OTHER, folded_note, hourly_activity, trigger_report
from ..telemetry.telemetry_store import TelemetryStore, consistent

COUNTS = ("fires", "sessions", "impressions", "clicks", "conversions", "dismissals",
          "false_triggers")
SORTS = ("trigger", "pack", *COUNTS, "false_trigger_rate", "lift")


def pack_of_triggers(registry: PackRegistry) -> dict[str, str]:
    """trigger id -> the pack that defines it (packs as the registry holds them now)."""
    try:
        packs = registry.packs()
    except RulePackError:  # a broken pack in the registry: its page says what is wrong
        packs = []
    return {t.id: p.name for p in packs for t in p.triggers}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@consistent
def trigger_overview(store: TelemetryStore, registry: PackRegistry, since_ms: int,
                     pack: str | None = None, device: str | None = None,
                     sort: str = "fires", trigger: str | None = None,
                     window_s: float = 30.0) -> dict[str, Any]:
    """Per trigger: the report's rows summed (with the rows by device and by revision
    kept as the breakdown), the holdout lift, filters and order applied; and the hourly
    series of one trigger (or of all). As bounded as the report: the most fired triggers,
    devices and revisions, the others in rows named OTHER (listed last)."""
    report = trigger_report(store, window_s, since_ms)
    packs = pack_of_triggers(registry)
    lifts = {h["trigger"]: h for h in report["holdout"]}
    totals: dict[str, dict[str, Any]] = {}
    breakdown: dict[str, dict[str, dict[str, dict[str, int]]]] = defaultdict(
        lambda: {"device": {}, "revision": {}})
    devices = sorted({r["device"] for r in report["rows"]}, key=lambda d: (d == OTHER, d))
    for row in report["rows"]:
        if device and row["device"] != device:
            continue
        trig = row["trigger"]
        if pack and packs.get(trig) != pack:
            continue
        total = totals.setdefault(trig, {"trigger": trig, "pack": "" if trig == OTHER else
                                         packs.get(trig, "(gone)"),
                                         **dict.fromkeys(COUNTS, 0)})
        for key in COUNTS:
            total[key] += row[key]
        for dim in ("device", "revision"):
            part = breakdown[trig][dim].setdefault(row[dim], dict.fromkeys(COUNTS, 0))
            for key in COUNTS:
                part[key] += row[key]
    for trig, total in totals.items():
        total["false_trigger_rate"] = _rate(total["false_triggers"], total["fires"])
        total["lift"] = lifts.get(trig)
        total["breakdown"] = {dim: sorted(parts.items()) for dim, parts in
                              breakdown[trig].items()}
    key = sort if sort in SORTS else "fires"

    def order(row: dict[str, Any]) -> Any:
        value = (row["lift"] or {}).get("lift") if key == "lift" else row.get(key)
        return (value is None, value if key in ("trigger", "pack") else -(value or 0))

    # the triggers summed into OTHER last, whatever the order
    rows = sorted(totals.values(), key=lambda r: (r["trigger"] == OTHER, order(r), r["trigger"]))
    activity = hourly_activity(store, since_ms, trigger)
    series = {"fires": activity["fires"], "conversions": activity["conversions"]}
    return {"rows": rows, "devices": devices, "packs": sorted(set(packs.values())),
            "other": OTHER, "folded": report["folded"], "limits": report["limits"],
            "folded_note": folded_note(report),
            "sort": key, "series": series,
            "series_of": f"trigger {trigger}" if trigger else "all triggers",
            "trigger": trigger}
