"""Backtests: rule packs run natively over recorded sessions.

A recording is JSON Lines, one wire-contract decide request body per line, each session's
lines in time order (sessions may interleave). Each session's state is carried from one
decision to the next as the edge host does. Between two recorded requests of a session the
simulated client calls back at `next_check_ms`, as a real client would have under these
rules; after a session's last request it does not (the visitor may have left).

The report: per trigger, how often it fired, in how many sessions, and how long after the
session's start it first fired (p50/p90/max); and an overlap matrix, the number of sessions
in which both of two triggers fired.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from edge_module.core import DecisionError, Snapshot, decide
from edge_module.replay_client import Decide, ReplayClient

MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class TriggerStats:
    trigger: str
    fires: int
    sessions: int
    first_fire_ms: tuple[int, ...]  # per session it fired in: time from the session's start

    def percentile(self, q: float) -> int | None:
        """Nearest-rank percentile of the time to first fire."""
        if not self.first_fire_ms:
            return None
        ordered = sorted(self.first_fire_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "fires": self.fires, "sessions": self.sessions,
                "time_to_fire_ms": {"p50": self.percentile(0.5), "p90": self.percentile(0.9),
                                    "max": self.percentile(1.0)}}


@dataclass(frozen=True)
class SimulationReport:
    sessions: int
    requests: int
    callbacks: int  # next_check_ms calls the simulated clients added
    events: int
    errors: dict[str, int]  # refused requests, by error code
    first_errors: tuple[str, ...]  # "line N: message", the first few
    triggers: tuple[TriggerStats, ...]
    overlap: tuple[tuple[int, ...], ...]  # [i][j]: sessions in which triggers i and j fired
    elapsed_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        ids = [t.trigger for t in self.triggers]
        return {
            "sessions": self.sessions, "requests": self.requests, "callbacks": self.callbacks,
            "events": self.events, "errors": dict(self.errors),
            "first_errors": list(self.first_errors),
            "triggers": [t.to_dict() for t in self.triggers],
            "overlap": {"triggers": ids, "sessions": [list(row) for row in self.overlap]},
            "throughput": {"elapsed_s": round(self.elapsed_s, 3),
                           "events_per_s": round(self.events_per_s)},
        }


class _Visitor(ReplayClient):
    __slots__ = ("fired", "start")

    def __init__(self, decide: Decide, session_id: str, start: int) -> None:
        super().__init__(decide, session_id)
        self.start = start
        self.fired: dict[str, int] = {}  # trigger -> first fire, ms since start


def simulate(snap: Snapshot, trigger_ids: Sequence[str], lines: Iterable[str]) -> SimulationReport:
    """Run `snap` over a recording's lines; `trigger_ids` are the snapshot's, in order."""
    started = time.perf_counter()
    visitors: dict[str, _Visitor] = {}
    fires: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    first_errors: list[str] = []
    requests = callbacks = events = 0
    loads = json.loads
    core = partial(decide, snap)

    def refuse(lineno: int, code: str, message: str) -> None:
        errors[code] += 1
        if len(first_errors) < MAX_ERRORS_SHOWN:
            first_errors.append(f"line {lineno}: {message}")

    def record(visitor: _Visitor, now: int, response: dict[str, Any]) -> None:
        for action in response["actions"]:
            tid = action["trigger"]
            fires[tid] += 1
            if tid not in visitor.fired:
                visitor.fired[tid] = action.get("due_ms", now) - visitor.start

    for lineno, line in enumerate(lines, 1):
        if not line or line.isspace():
            continue
        try:
            request = loads(line)
        except ValueError as exc:
            refuse(lineno, "invalid_json", f"not JSON: {exc}")
            continue
        if type(request) is not dict or type(request.get("session_id")) is not str:
            refuse(lineno, "invalid_request", "not a decide request with a session_id")
            continue
        batch = request.get("events")
        batch = batch if type(batch) is list else []
        stamps = [int(e["ts_ms"]) for e in batch
                  if type(e) is dict and _finite(e.get("ts_ms"))]
        raw_now = request.get("now_ms")
        if _finite(raw_now):
            now = int(raw_now)
        elif stamps:
            now = max(stamps)
        else:
            refuse(lineno, "invalid_request", "neither now_ms nor event times")
            continue
        sid = request["session_id"]
        visitor = visitors.get(sid)
        if visitor is None:
            visitor = visitors[sid] = _Visitor(core, sid, min([now, *stamps]))
        try:
            if visitor.next_check is not None:  # most requests have no call-back due
                for at, response in visitor.call_backs(now):
                    callbacks += 1
                    record(visitor, at, response)
            record(visitor, now, visitor.send(request, now))
        except DecisionError as exc:
            where = f" ({exc.field})" if exc.field else ""
            refuse(lineno, exc.code, exc.message + where)
            continue
        requests += 1
        events += len(batch)
        visitor.context = request.get("context")

    elapsed = time.perf_counter() - started
    index = {tid: i for i, tid in enumerate(trigger_ids)}
    matrix = [[0] * len(trigger_ids) for _ in trigger_ids]
    first: dict[str, list[int]] = {tid: [] for tid in trigger_ids}
    for visitor in visitors.values():
        fired = [index[t] for t in visitor.fired if t in index]
        for t, ms in visitor.fired.items():
            first.setdefault(t, []).append(ms)
        for i in fired:
            for j in fired:
                matrix[i][j] += 1
    stats = tuple(TriggerStats(tid, fires[tid], len(first[tid]), tuple(first[tid]))
                  for tid in trigger_ids)
    return SimulationReport(len(visitors), requests, callbacks, events, dict(errors),
                            tuple(first_errors), stats, tuple(tuple(r) for r in matrix), elapsed)


def render_text(report: SimulationReport) -> str:
    """The report for people: totals, a table per trigger, the overlap matrix."""
    totals = (f"{report.sessions} session(s), {report.requests} request(s) "
              f"(+ {report.callbacks} next_check callback(s)), {report.events} event(s) "
              f"in {report.elapsed_s:.2f}s ({report.events_per_s:,.0f} events/s)")
    out = [totals]
    refused = sum(report.errors.values())
    if refused:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(report.errors.items()))
        out.append(f"{refused} request(s) refused ({codes}); first:")
        out += [f"  {line}" for line in report.first_errors]
    width = max([len("trigger"), *(len(t.trigger) for t in report.triggers)])
    out.append("")
    out.append(f"{'#':>3}  {'trigger':<{width}}  {'fires':>7}  {'sessions':>8}  "
               f"{'first fire p50':>14}  {'p90':>8}  {'max':>8}")
    for n, t in enumerate(report.triggers, 1):
        p50, p90, top = (t.percentile(q) for q in (0.5, 0.9, 1.0))
        out.append(f"{n:>3}  {t.trigger:<{width}}  {t.fires:>7}  {t.sessions:>8}  "
                   f"{_ms(p50):>14}  {_ms(p90):>8}  {_ms(top):>8}")
    if report.triggers:
        out.append("")
        out.append("overlap: sessions in which both triggers fired (by # above)")
        cells = max(4, *(len(str(v)) for row in report.overlap for v in row))
        header = "".join(f"{n:>{cells + 2}}" for n in range(1, len(report.triggers) + 1))
        out.append(f"{'':>3}{header}")
        for n, row in enumerate(report.overlap, 1):
            out.append(f"{n:>3}" + "".join(f"{v:>{cells + 2}}" for v in row))
    return "\n".join(out)


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}s"


def _finite(value: Any) -> bool:
    """A JSON number a time can be made of (1e999 reads as inf, NaN as nan: neither is)."""
    return type(value) is int or (type(value) is float and math.isfinite(value))
