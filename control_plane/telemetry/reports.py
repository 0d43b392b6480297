"""Trigger reports from the telemetry store: per trigger x device x revision, what fired and
what visitors did next; and per trigger x content variant, the same counts for the
variant each firing showed.

An outcome counts for a firing when it comes from the same session and names the same
trigger (a conversion naming no trigger counts for every trigger fired before it). Clicks,
impressions and dismissals are the reports made (one per decision and trigger); a
conversion is a session's: a trigger's `conversions` are the sessions it fired in that
converted after it, once however many decisions (or the decision and the action both)
report it. A firing is a false trigger when no click or conversion follows it within
`window_s`. A channel firing the edge never sent (`undelivered`: no signed recipient...)
reached nobody: it is counted apart, never as a fire.

Longer than most modules on purpose: the trigger, experiment and recalibration reports and
the statistics they share (intervals, lift, the sample-ratio test) are the one
implementation behind both the CLI and the console, kept together so the two cannot drift.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import operator
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .telemetry_store import TelemetryStore, consistent

DAY_MS = 86_400_000
# The periods the console offers and the CLI's --period takes: days back from now
PERIODS = {"24h": 1, "7d": 7, "30d": 30, "90d": 90}


def period_start(name: str, now_ms: int) -> int:
    """Where a named period starts (ms); "all" (or any other name) is the whole store."""
    return now_ms - PERIODS[name] * DAY_MS if name in PERIODS else 0


TIME_TO_FIRE_MS = (1000, 2000, 5000, 10_000, 30_000, 60_000)  # upper bounds; then "+inf"
LATENCY_US = (100, 250, 500, 1000, 2500, 5000)
ENGAGED = ("click", "conversion")


@dataclass(kw_only=True)
class Counts:
    """What followed a trigger's firings; shared by the report's two tables."""

    fires: int = 0  # firings that reached the visitor (or their channel's receiver)
    sessions: int = 0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    dismissals: int = 0
    false_triggers: int = 0
    undelivered: int = 0  # channel firings the edge never sent: in no other count

    def counts(self) -> dict[str, Any]:
        return {"fires": self.fires, "undelivered": self.undelivered,
                "sessions": self.sessions,
                "impressions": self.impressions, "clicks": self.clicks,
                "conversions": self.conversions, "dismissals": self.dismissals,
                "false_triggers": self.false_triggers,
                "false_trigger_rate": round(self.false_triggers / self.fires, 4)
                if self.fires else None}


@dataclass
class Row(Counts):
    trigger: str
    device: str
    revision: str
    time_to_fire_ms: list[int] = field(default_factory=lambda: [0] * (len(TIME_TO_FIRE_MS) + 1))
    latency_us: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_US) + 1))

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "device": self.device, "revision": self.revision,
                **self.counts(),
                "time_to_fire_ms": _hist(TIME_TO_FIRE_MS, self.time_to_fire_ms),
                "latency_us": _hist(LATENCY_US, self.latency_us)}


@dataclass
class VariantRow(Counts):
    """One trigger x content variant: a session's outcomes count for the variant its
    first firing of the trigger showed."""

    trigger: str
    variant: str

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "variant": self.variant, **self.counts()}


# How many distinct values a report lists, per kind: the most fired in the period; the
# others are summed into one OTHER row (counted in the report's `folded`). Telemetry names
# whatever a client made up: a visitor's context.device is any string, an edge token's
# holder may name any trigger, revision or variant; 13,694 made-up devices made the
# console's Triggers page 5.7 MB, and 20,000 made-up triggers 70 MB.
OTHER = "(other)"
LIMITS = {"triggers": 100, "devices": 10, "revisions": 10, "variants": 100}


@dataclass
class Fold:
    """The values of one kind a report lists (the `limit` most fired), and how many other
    distinct values there were (summed into OTHER; `trigger_report` reads `kept` in its
    loop over every firing)."""

    kept: frozenset[Any]
    folded: int


def most_fired(store: TelemetryStore, column: str, since_ms: int, limit: int,
               where: str = "", label: str | None = None) -> Fold:
    """The `limit` values of `label` (an SQL expression over `column`, by default `column`
    itself: one or more columns of `fires`) fired most from `since_ms` on (ties: by value),
    counted and cut by SQLite, not here. Firings are counted per `column` first, in the
    order of the index that holds it (telemetry_store._v10) and without a sort of the
    table; only the distinct values are then labelled, ranked and counted (one query)."""
    label = label or column
    cond = f"ts_ms >= ?{' AND ' + where if where else ''}"
    found = store.query(
        f"SELECT {label}, sum(n), count(*) OVER () FROM (SELECT {column}, count(*) AS n "
        f"FROM fires WHERE {cond} GROUP BY {column}) GROUP BY {label} "
        f"ORDER BY sum(n) DESC, {label} LIMIT ?", (since_ms, limit))
    kept = frozenset(tuple(value) if len(value) > 1 else value[0]
                     for *value, _n, _distinct in found)
    distinct = found[0][-1] if found else 0
    return Fold(kept, distinct - len(kept))


@consistent
def trigger_report(store: TelemetryStore, window_s: float = 30.0,
                   since_ms: int | None = None) -> dict[str, Any]:
    """The report as a JSON-ready document: `rows` (one per trigger x device x revision),
    `variants` (one per trigger x content variant shown, for content with variants) and
    `holdout` (lift of firing over holding out, per trigger). `conversions` counts
    sessions (once per session and trigger); `undelivered` the firings never sent.

    Each kind lists at most LIMITS of its values, the most fired: the rest are summed into
    rows named OTHER (each count the sum of the rows it replaces; no holdout lift), and
    `folded` says how many distinct values of each kind were."""
    since = since_ms or 0
    fold_trigger = most_fired(store, "trigger", since, LIMITS["triggers"])
    # '' and NULL as the rows below count them: unknown
    fold_device = most_fired(store, "device", since, LIMITS["devices"],
                             label="coalesce(nullif(device, ''), 'unknown')")
    fold_revision = most_fired(store, "revision", since, LIMITS["revisions"],
                               label="coalesce(nullif(revision, ''), 'unknown')")
    fold_variant = most_fired(store, "trigger, variant", since, LIMITS["variants"],
                              "variant IS NOT NULL")
    # Firings and outcomes are read in session order and merged one session at a time, so
    # a month of them is never held at once; a session's start is its row in `sessions`.
    fires = store.rows(
        "SELECT f.session, f.trigger, f.ts_ms, f.revision, f.device, f.variant, f.latency_us, "
        "s.first_ts, f.undelivered FROM fires f LEFT JOIN sessions s ON s.session = f.session "
        "WHERE f.ts_ms >= ? ORDER BY f.session, f.ts_ms, f.rowid", (since,))
    outcomes = store.rows(
        "SELECT session, ts_ms, type, trigger FROM outcomes WHERE ts_ms >= ? ORDER BY session",
        (since,))
    rows: dict[tuple[str, str, str], Row] = {}
    by_variant: dict[tuple[str, str], VariantRow] = {}
    shown: dict[str, set[str]] = defaultdict(set)
    converted: set[str] = set()
    window_ms = int(window_s * 1000)
    # The loop runs once per firing of the period (hundreds of thousands): the folds'
    # sets are read directly, and a session with no click or conversion (most) builds no
    # Engagement: each of its firings is false.
    triggers, devices, revisions = fold_trigger.kept, fold_device.kept, fold_revision.kept
    variants = fold_variant.kept
    for session, session_fires, mine in _by_session(fires, outcomes):
        engaging = [(o_ts, o_trig) for _s, o_ts, kind, o_trig in mine if kind in ENGAGED]
        engaged = Engagement(engaging) if engaging else None
        if any(o[2] == "conversion" for o in mine):
            converted.add(session)
        first_fire: dict[str, tuple[int, tuple[str, str, str], VariantRow | None]] = {}
        for _s, trig, ts, revision, device, variant, lat, start, lost in session_fires:
            device, revision = device or "unknown", revision or "unknown"
            key = (trig if trig in triggers else OTHER, device if device in devices else OTHER,
                   revision if revision in revisions else OTHER)
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row(*key)
            if lost is not None:  # reached nobody: not a fire, nor a session shown it
                row.undelivered += 1
                continue
            vrow = None
            if variant is not None:
                vkey = (trig, variant) if (trig, variant) in variants else (key[0], OTHER)
                vrow = by_variant.get(vkey)
                if vrow is None:
                    vrow = by_variant[vkey] = VariantRow(*vkey)
            row.fires += 1
            if vrow is not None:
                vrow.fires += 1
            if trig not in first_fire:  # per trigger, folded or not: OTHER sums them
                first_fire[trig] = (ts, key, vrow)
                if trig in triggers:
                    shown[trig].add(session)
                row.sessions += 1
                if vrow is not None:
                    vrow.sessions += 1
            lead = 0 if start is None else ts - start
            row.time_to_fire_ms[bisect.bisect_left(TIME_TO_FIRE_MS, lead)] += 1
            if isinstance(lat, int):
                row.latency_us[bisect.bisect_left(LATENCY_US, lat)] += 1
            if engaged is None or not engaged.follows(trig, ts, window_ms):
                row.false_triggers += 1
                if vrow is not None:
                    vrow.false_triggers += 1
        if not first_fire or not mine:
            continue
        # what each trigger gets: the outcomes naming it, and whether the session converted
        # after its first firing, by a conversion naming it or naming none (grouped once: a
        # session's outcomes x its triggers stays linear however many of either a client
        # makes up)
        named: dict[str, list[str]] = defaultdict(list)
        first_unnamed: int | None = None  # the session's first conversion naming no trigger
        for _s, o_ts, kind, o_trig in mine:
            if o_trig is not None:
                named[o_trig].append(kind)
            elif kind == "conversion" and (first_unnamed is None or o_ts < first_unnamed):
                first_unnamed = o_ts
        for trig, (fire_ts, key, first_variant) in first_fire.items():
            kinds = named.get(trig, ())
            for kind in kinds:
                if kind != "conversion":
                    _count_outcome(rows[key], kind)
                    if first_variant is not None:
                        _count_outcome(first_variant, kind)
            # one session, one conversion: a decision-level report and the action's own
            # (or one per decision the client cited) are the same purchase
            if "conversion" in kinds or (first_unnamed is not None and
                                         first_unnamed >= fire_ts):
                rows[key].conversions += 1
                if first_variant is not None:
                    first_variant.conversions += 1
    def last(value: str) -> tuple[bool, str]:
        return value == OTHER, value

    ordered = sorted(rows.values(), key=lambda r: (last(r.trigger), last(r.device),
                                                   last(r.revision)))
    return {"window_s": window_s, "rows": [r.to_dict() for r in ordered],
            "variants": [by_variant[k].to_dict()
                         for k in sorted(by_variant, key=lambda k: (last(k[0]), last(k[1])))],
            "holdout": _lift_per_trigger(store, since, shown, converted, fold_trigger.kept),
            "limits": dict(LIMITS),
            "folded": {"triggers": fold_trigger.folded, "devices": fold_device.folded,
                       "revisions": fold_revision.folded, "variants": fold_variant.folded}}


class Engagement:
    """A session's clicks and conversions by the trigger they name (None: none), each list
    in time order: whether one follows a firing is a binary search, not a scan of them all
    per firing (a session with thousands of both made a report quadratic)."""

    def __init__(self, outcomes: Iterable[tuple[int, str | None]]) -> None:
        self._times: dict[str | None, list[int]] = defaultdict(list)
        for ts, trig in outcomes:
            self._times[trig].append(ts)
        for times in self._times.values():
            times.sort()

    def follows(self, trigger: str, ts: int, window_ms: int) -> bool:
        """A click or conversion naming `trigger` or none, within `window_ms` from `ts`."""
        for key in (trigger, None):
            times = self._times.get(key)
            if times:
                i = bisect.bisect_left(times, ts)
                if i < len(times) and times[i] <= ts + window_ms:
                    return True
        return False


def _by_session(fires: Iterator[tuple[Any, ...]], outcomes: Iterator[tuple[Any, ...]]
                ) -> Iterator[tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Two row streams, each ordered by its first column (a session), merged: each session
    in either with its fires and its outcomes."""
    by_session = operator.itemgetter(0)
    fire_groups = itertools.groupby(fires, by_session)
    outcome_groups = itertools.groupby(outcomes, by_session)
    fire, outcome = next(fire_groups, None), next(outcome_groups, None)
    while fire is not None or outcome is not None:
        if outcome is None or (fire is not None and fire[0] < outcome[0]):
            yield fire[0], list(fire[1]), []
            fire = next(fire_groups, None)
        elif fire is None or outcome[0] < fire[0]:
            yield outcome[0], [], list(outcome[1])
            outcome = next(outcome_groups, None)
        else:
            yield fire[0], list(fire[1]), list(outcome[1])
            fire, outcome = next(fire_groups, None), next(outcome_groups, None)


def _count_outcome(row: Row | VariantRow, kind: str) -> None:
    if kind == "impression":
        row.impressions += 1
    elif kind == "click":
        row.clicks += 1
    elif kind == "conversion":
        row.conversions += 1
    elif kind == "dismiss":
        row.dismissals += 1


@consistent
def holdout_lift(store: TelemetryStore, since_ms: int = 0) -> list[dict[str, Any]]:
    """Per trigger: conversion rate of sessions it fired for against sessions held out of it
    (the snapshot's `holdout`), and the lift with a 95 % normal-approximation interval."""
    converted = {s for (s,) in store.query(
        "SELECT DISTINCT session FROM outcomes WHERE type = 'conversion' AND ts_ms >= ?",
        (since_ms,))}
    kept = most_fired(store, "trigger", since_ms, LIMITS["triggers"]).kept
    shown: dict[str, set[str]] = defaultdict(set)
    for trig, session in store.rows("SELECT DISTINCT trigger, session FROM fires "
                                    "WHERE ts_ms >= ? AND undelivered IS NULL", (since_ms,)):
        if trig in kept:
            shown[trig].add(session)
    return _lift_per_trigger(store, since_ms, shown, converted, kept)


def _lift_per_trigger(store: TelemetryStore, since_ms: int, shown: Mapping[str, set[str]],
                      converted: set[str], kept: frozenset[str]) -> list[dict[str, Any]]:
    """`holdout_lift` given the sessions each trigger fired in and those that converted,
    for the triggers in `kept` only (the report's most fired)."""
    held: dict[str, set[str]] = defaultdict(set)
    for session, suppressed in store.rows("SELECT session, suppressed FROM decisions WHERE "
                                          "ts_ms >= ? AND suppressed != '[]'", (since_ms,)):
        for entry in json.loads(suppressed):
            if isinstance(entry, dict) and entry.get("reason") == "holdout" and \
                    entry.get("trigger") in kept:
                held[entry["trigger"]].add(session)
    out = []
    for trig in sorted(held):
        treated = shown.get(trig, set()) - held[trig]
        out.append({"trigger": trig, **lift(len(treated & converted), len(treated),
                                            len(held[trig] & converted), len(held[trig]))})
    return out


def lift(conv_a: int, n_a: int, conv_b: int, n_b: int, z: float = 1.96) -> dict[str, Any]:
    """Difference of conversion rates a - b with its normal-approximation interval."""
    if not n_a or not n_b:
        return {"treated": n_a, "holdout": n_b, "lift": None, "ci95": None}
    pa, pb = conv_a / n_a, conv_b / n_b
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    d = pa - pb
    return {"treated": n_a, "holdout": n_b, "rate_treated": round(pa, 4),
            "rate_holdout": round(pb, 4), "lift": round(d, 4),
            "ci95": [round(d - z * se, 4), round(d + z * se, 4)]}


def rate_interval(part: int, whole: int, z: float = 1.96) -> list[float] | None:
    """Wilson score interval of the rate part/whole (sound at small counts and at 0 % or
    100 %, where the normal approximation collapses to a point); None without data."""
    if not whole:
        return None
    p = part / whole
    centre = (p + z * z / (2 * whole)) / (1 + z * z / whole)
    half = z * math.sqrt(p * (1 - p) / whole + z * z / (4 * whole * whole)) / (1 + z * z / whole)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _hist(bounds: tuple[int, ...], counts: list[int]) -> dict[str, int]:
    labels = [f"<={b}" for b in bounds] + [f">{bounds[-1]}"]
    return dict(zip(labels, counts))


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table for people."""
    head = (f"{'trigger':<24} {'device':<8} {'rev':>4} {'fires':>6} {'impr':>6} {'click':>6} "
            f"{'conv':>6} {'dism':>6} {'false%':>7} {'unsent':>6}")
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        rate = r["false_trigger_rate"]
        lines.append(f"{r['trigger'][:24]:<24} {r['device'][:8]:<8} {r['revision']:>4} "
                     f"{r['fires']:>6} {r['impressions']:>6} {r['clicks']:>6} "
                     f"{r['conversions']:>6} {r['dismissals']:>6} "
                     f"{'-' if rate is None else f'{rate * 100:.1f}':>7} "
                     f"{r.get('undelivered', 0):>6}")
    variants = report.get("variants") or ()
    if variants:
        head = (f"{'trigger':<24} {'variant':<16} {'fires':>6} {'impr':>6} {'click':>6} "
                f"{'conv':>6} {'dism':>6} {'false%':>7}")
        lines += ["", head, "-" * len(head)]
        for v in variants:
            rate = v["false_trigger_rate"]
            lines.append(f"{v['trigger'][:24]:<24} {v['variant'][:16]:<16} {v['fires']:>6} "
                         f"{v['impressions']:>6} {v['clicks']:>6} {v['conversions']:>6} "
                         f"{v['dismissals']:>6} "
                         f"{'-' if rate is None else f'{rate * 100:.1f}':>7}")
    for h in report.get("holdout", ()):
        if h["lift"] is not None:
            lines.append(f"holdout {h['trigger']}: lift {h['lift']:+.3f} "
                         f"(95% CI {h['ci95'][0]:+.3f}..{h['ci95'][1]:+.3f}; "
                         f"{h['treated']} treated, {h['holdout']} held out)")
    note = folded_note(report)
    if note:
        lines.append(note)
    return "\n".join(lines)


def folded_note(report: Mapping[str, Any]) -> str | None:
    """What a trigger report left out, in words (None: nothing)."""
    folded, limits = report.get("folded") or {}, report.get("limits") or LIMITS
    parts = [f"{n} more {kind} (the {limits[kind]} most fired are listed)"
             for kind, n in folded.items() if n]
    if not parts:
        return None
    return f"Summed into the rows named {OTHER}: " + "; ".join(parts) + "."


# The adaptive-threshold experiment (snapshot `experiment`, decision log `arm`)

ARMS = ("adaptive", "static", "holdout")
_ARM_LIST = "(" + ", ".join(f"'{arm}'" for arm in ARMS) + ")"  # for SQL's IN
COMPARISONS = (("adaptive", "static"), ("adaptive", "holdout"), ("static", "holdout"))
MIN_ARM_SESSIONS = 30  # below this in either arm, no interval is given


@consistent
def experiment_report(store: TelemetryStore, window_s: float = 30.0, since_ms: int = 0,
                      min_sessions: int = MIN_ARM_SESSIONS,
                      split: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Per arm: sessions, sessions with a conversion, conversion rate, fires and the
    false-trigger rate; then the lift (difference of conversion rates) of adaptive vs
    static and of each arm vs holdout, with a 95 % normal-approximation interval, or
    "not enough data" while either arm has fewer than `min_sessions` sessions; and, given
    the declared `split` (arm -> percent, `experiment_split`), the sample-ratio check.

    A session belongs to the arm of its first decision that names one; sessions whose
    later decisions name another arm (the salt or shares changed) are counted in
    `switched_sessions` and stay in their first arm."""
    sessions = dict.fromkeys(ARMS, 0)
    converted = dict.fromkeys(ARMS, 0)
    mixed_arm, switched = _mixed_sessions(store, since_ms)
    for arm in mixed_arm.values():
        sessions[arm] += 1
    for arm, n in store.query(
            f"SELECT arm, count(*) FROM sessions WHERE arm_ts >= ? AND NOT mixed AND arm IN "
            f"{_ARM_LIST} GROUP BY arm", (since_ms,)):
        sessions[arm] += n
    for session, arm, mixed in store.query(
            "SELECT DISTINCT o.session, s.arm, s.mixed FROM outcomes o JOIN sessions s ON "
            "s.session = o.session AND s.arm_ts >= ? WHERE o.type = 'conversion' AND "
            "o.ts_ms >= ?", (since_ms, since_ms)):
        arm = mixed_arm.get(session) if mixed else arm
        if arm in converted:
            converted[arm] += 1
    outcomes: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for session, ts, trig in store.query(
            "SELECT session, ts_ms, trigger FROM outcomes WHERE ts_ms >= ? AND type IN "
            "('click', 'conversion')", (since_ms,)):
        outcomes[session].append((ts, trig))
    engagement = {session: Engagement(these) for session, these in outcomes.items()}
    nothing = Engagement(())
    fires = dict.fromkeys(ARMS, 0)
    false = dict.fromkeys(ARMS, 0)
    window_ms = int(window_s * 1000)
    for trig, session, ts, arm, mixed in store.rows(
            "SELECT f.trigger, f.session, f.ts_ms, s.arm, s.mixed FROM fires f JOIN sessions s "
            "ON s.session = f.session AND s.arm_ts >= ? WHERE f.ts_ms >= ? AND "
            "f.undelivered IS NULL",
            (since_ms, since_ms)):
        arm = mixed_arm.get(session) if mixed else arm
        if arm not in fires:
            continue
        fires[arm] += 1
        if not engagement.get(session, nothing).follows(trig, ts, window_ms):
            false[arm] += 1
    arms = []
    for arm in ARMS:
        n = sessions[arm]
        conv = converted[arm]
        arms.append({"arm": arm, "sessions": n, "converted_sessions": conv,
                     "conversion_rate": round(conv / n, 4) if n else None,
                     "conversion_ci95": rate_interval(conv, n),
                     "fires": fires[arm], "false_triggers": false[arm],
                     "false_trigger_rate": round(false[arm] / fires[arm], 4)
                     if fires[arm] else None})
    by_arm = {a["arm"]: a for a in arms}
    comparisons = []
    for a, b in COMPARISONS:
        n_a, n_b = by_arm[a]["sessions"], by_arm[b]["sessions"]
        entry: dict[str, Any] = {"arm": a, "against": b, "sessions": n_a,
                                 "sessions_against": n_b}
        if min(n_a, n_b) < min_sessions:
            entry.update(lift=None, ci95=None, significant=None,
                         note=f"not enough data: {min_sessions} sessions needed in each arm "
                              f"({a} {n_a}, {b} {n_b})")
        else:
            diff = lift(by_arm[a]["converted_sessions"], n_a,
                        by_arm[b]["converted_sessions"], n_b)
            low, high = diff["ci95"]
            entry.update(lift=diff["lift"], ci95=diff["ci95"],
                         significant=low > 0 or high < 0, note=None)
        comparisons.append(entry)
    srm = (sample_ratio_mismatch({a["arm"]: a["sessions"] for a in arms}, split)
           if split is not None else None)
    return {"window_s": window_s, "min_sessions": min_sessions,
            "sessions": sum(sessions.values()), "switched_sessions": len(switched),
            "arms": arms, "comparisons": comparisons, "srm": srm}


def _mixed_sessions(store: TelemetryStore, since_ms: int) -> tuple[dict[str, str], set[str]]:
    """The sessions whose decisions name more than one arm: each one's arm in the period
    (that of its first decision there naming one), and those that changed arm within it."""
    arm_of: dict[str, str] = {}
    switched: set[str] = set()
    for session, arm in store.query(
            "SELECT d.session, d.arm FROM sessions s JOIN decisions d ON d.session = s.session "
            f"WHERE s.mixed AND s.arm_ts >= ? AND d.ts_ms >= ? AND d.arm IN {_ARM_LIST} "
            "ORDER BY d.ts_ms, d.id", (since_ms, since_ms)):
        if arm_of.setdefault(session, arm) != arm:
            switched.add(session)
    return arm_of, switched


SRM_P = 0.001  # below this the arms' sizes are not chance: the split itself is broken
SRM_MIN_EXPECTED = 5  # sessions an arm must expect before the chi-square approximation holds


def experiment_split(snapshot: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The arms' declared shares (percent) of a compiled snapshot; None: no experiment."""
    arms = ((snapshot or {}).get("experiment") or {}).get("arms")
    return {arm: float(arms.get(arm, 0.0)) for arm in ARMS} if arms else None


def sample_ratio_mismatch(sessions: Mapping[str, int],
                          split: Mapping[str, float]) -> dict[str, Any]:
    """Pearson's chi-square test of the arms' session counts against the declared split
    (percent per arm). `mismatch` when p < SRM_P; p is None (with a note) while an arm
    expects fewer than SRM_MIN_EXPECTED sessions. An arm declared at 0 % that has
    sessions is a mismatch outright."""
    total = sum(sessions.get(arm, 0) for arm in split)
    share = sum(split.values())
    expected = {arm: total * pct / share if share else 0.0 for arm, pct in split.items()}
    observed = {arm: sessions.get(arm, 0) for arm in split}
    out: dict[str, Any] = {"split": dict(split), "observed": observed,
                           "expected": {a: round(e, 1) for a, e in expected.items()},
                           "chi2": None, "df": None, "p": None, "mismatch": False,
                           "threshold": SRM_P, "note": None}
    stray = [arm for arm in split if expected[arm] == 0 and observed[arm]]
    if stray:
        out.update(p=0.0, mismatch=True,
                   note=f"sessions in arm(s) declared at 0 %: {', '.join(stray)}")
        return out
    drawn = [arm for arm in split if expected[arm] > 0]
    if len(drawn) < 2:
        out["note"] = "one arm takes every session: nothing to compare"
        return out
    if min(expected[arm] for arm in drawn) < SRM_MIN_EXPECTED:
        out["note"] = (f"not enough sessions: every arm should expect {SRM_MIN_EXPECTED} "
                       f"or more ({total} sessions in all)")
        return out
    chi2 = sum((observed[a] - expected[a]) ** 2 / expected[a] for a in drawn)
    p = chi2_sf(chi2, len(drawn) - 1)
    out.update(chi2=round(chi2, 3), df=len(drawn) - 1, p=p, mismatch=p < SRM_P)
    return out


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with integer `df` degrees of freedom (closed forms)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term = total = 1.0
        for j in range(1, df // 2):
            term *= half / j
            total += term
        return min(1.0, math.exp(-half) * total)
    total, term = 0.0, math.sqrt(2 * x / math.pi)
    for j in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * j + 1)
    return min(1.0, math.erfc(math.sqrt(half)) + math.exp(-half) * total)


def format_experiment(report: dict[str, Any]) -> str:
    """The experiment report as a fixed-width table for people."""
    if not report["sessions"]:
        return "no experiment data: no decision names an arm (settings.experiment)"
    head = (f"{'arm':<9} {'sessions':>8} {'conv':>6} {'conv%':>7} {'95% CI':>11} "
            f"{'fires':>6} {'false%':>7}")
    lines = [head, "-" * len(head)]
    for a in report["arms"]:
        conv, false, ci = a["conversion_rate"], a["false_trigger_rate"], a["conversion_ci95"]
        span = "-" if ci is None else f"{ci[0] * 100:.1f}..{ci[1] * 100:.1f}"
        lines.append(f"{a['arm']:<9} {a['sessions']:>8} {a['converted_sessions']:>6} "
                     f"{'-' if conv is None else f'{conv * 100:.1f}':>7} {span:>11} "
                     f"{a['fires']:>6} {'-' if false is None else f'{false * 100:.1f}':>7}")
    for c in report["comparisons"]:
        what = f"{c['arm']} vs {c['against']}:"
        if c["lift"] is None:
            lines.append(f"{what:<20} {c['note']}")
        else:
            lines.append(f"{what:<20} lift {c['lift'] * 100:+.2f} pts (95% CI "
                         f"{c['ci95'][0] * 100:+.2f}..{c['ci95'][1] * 100:+.2f})"
                         + (" significant" if c["significant"] else ""))
    if report["switched_sessions"]:
        lines.append(f"{report['switched_sessions']} session(s) changed arm (salt or shares "
                     "changed); counted in their first arm")
    if report.get("srm") is not None:
        lines.append(format_srm(report["srm"]))
    return "\n".join(lines)


def format_srm(srm: dict[str, Any]) -> str:
    """The sample-ratio check in words: what was declared, what came, and what it means."""
    split = ", ".join(f"{arm} {pct:g}%" for arm, pct in srm["split"].items())
    came = ", ".join(f"{arm} {n}" for arm, n in srm["observed"].items())
    if srm["p"] is None:
        return f"sample ratio: not tested ({srm['note']}); declared {split}"
    stat = (f"chi-square {srm['chi2']:.2f}, df {srm['df']}, p {srm['p']:.2g}"
            if srm["chi2"] is not None else srm["note"])
    if not srm["mismatch"]:
        return f"sample ratio: as declared ({split}; sessions {came}; {stat})"
    return (f"SAMPLE RATIO MISMATCH: sessions {came} against the declared {split} ({stat}, "
            f"below {srm['threshold']:g}). The arms are not the random split the experiment "
            "declares, so their comparison is biased: check that every edge serves the same "
            "snapshot (experiment salt and shares), that no arm's sessions lose their "
            "telemetry, and whether the split changed within the period.")


MAX_RECALIBRATIONS = 1000  # rows one report lists, newest first


@consistent
def recalibration_log(store: TelemetryStore, since_ms: int = 0, trigger: str | None = None,
                      limit: int = 200) -> dict[str, Any]:
    """What the learning loop decided, newest first: per trigger, model key and segment the
    old and new value, the sessions, the estimated recall, why, and its numbers (the
    guardrail's comparison included)."""
    sql = ("SELECT ts_ms, trigger, model_key, segment, old, new, samples, objective, reason, "
           "revision, source, details FROM recalibrations WHERE ts_ms >= ?")
    params: list[Any] = [since_ms]
    if trigger is not None:
        sql += " AND trigger = ?"
        params.append(trigger)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(min(max(limit, 1), MAX_RECALIBRATIONS))
    rows = []
    for (ts, trig, key, seg, old, new, samples, recall, reason, revision, source,
         details) in store.query(sql, tuple(params)):
        rows.append({"ts_ms": ts, "trigger": trig, "model_key": key, "segment": seg,
                     "old": old, "new": new, "samples": samples, "recall": recall,
                     "reason": reason, "published_revision": revision,
                     "source": json.loads(source) if source else None,
                     "details": json.loads(details) if details else None})
    return {"recalibrations": rows}


HOUR_MS = 3_600_000


@consistent
def hourly_activity(store: TelemetryStore, since_ms: int = 0,
                    trigger: str | None = None) -> dict[str, list[tuple[int, int]]]:
    """Fires and conversions per hour (the hour's start, ms), oldest first: of one trigger
    (conversions counted as the trigger report counts them: a session once, in the hour of
    its first conversion naming the trigger, or naming none after it fired), or of all
    triggers (each converting session once, in the hour of its first conversion). Firings
    never sent (`undelivered`) are not fires."""
    if trigger is None:
        fires = store.query("SELECT ts_ms / ? * ?, count(*) FROM fires WHERE ts_ms >= ? "
                            "AND undelivered IS NULL GROUP BY 1 ORDER BY 1",
                            (HOUR_MS, HOUR_MS, since_ms))
        conv = store.query("SELECT first / ? * ?, count(*) FROM (SELECT min(ts_ms) AS first "
                           "FROM outcomes WHERE ts_ms >= ? AND type = 'conversion' "
                           "GROUP BY session) GROUP BY 1 ORDER BY 1",
                           (HOUR_MS, HOUR_MS, since_ms))
    else:
        fires = store.query("SELECT ts_ms / ? * ?, count(*) FROM fires WHERE trigger = ? "
                            "AND ts_ms >= ? AND undelivered IS NULL GROUP BY 1 ORDER BY 1",
                            (HOUR_MS, HOUR_MS, trigger, since_ms))
        # as `trigger_report`: only in sessions where it fired in the period, naming it,
        # or naming none and after one of those firings; one per session
        conv = store.query(
            "SELECT first / ? * ?, count(*) FROM (SELECT min(o.ts_ms) AS first FROM outcomes o "
            "WHERE o.type = 'conversion' AND o.ts_ms >= ? AND EXISTS (SELECT 1 FROM fires f "
            "WHERE f.trigger = ? AND f.session = o.session AND f.ts_ms >= ? AND "
            "f.undelivered IS NULL AND (o.trigger = ? OR (o.trigger IS NULL AND "
            "f.ts_ms <= o.ts_ms))) GROUP BY o.session) GROUP BY 1 ORDER BY 1",
            (HOUR_MS, HOUR_MS, since_ms, trigger, since_ms, trigger))
    return {"fires": [(int(h), int(n)) for h, n in fires],
            "conversions": [(int(h), int(n)) for h, n in conv]}
