"""The end-of-run summary of a load test: the figures docs/performance.md quotes, as JSON and text.

Samples are plain lists so a Locust worker can ship them to the master with its regular
report (`drain` / `merge`). Percentiles are nearest-rank over every sample (no histogram
rounding), so p99 and max are the values actually observed.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Samples:
    client_ms: list[float] = field(default_factory=list)  # 2xx decide round trips
    server_us: list[int] = field(default_factory=list)  # the answers' latency_us
    component_us: list[int] = field(default_factory=list)  # ... and their component_us
    timing_error_ms: list[float] = field(default_factory=list)  # callback arrival - due
    statuses: Counter[int] = field(default_factory=Counter)  # every request; 0: no answer
    actions: int = 0
    outcomes_sent: int = 0  # POST /v1/outcome calls ...
    outcomes_ok: int = 0  # ... answered 2xx (recorded by the edge)

    def count(self, status: int) -> None:
        self.statuses[status] += 1

    def drain(self) -> dict[str, Any]:
        """This process's samples since the last drain (a worker's report)."""
        out = {"client_ms": self.client_ms, "server_us": self.server_us,
               "component_us": self.component_us, "timing_error_ms": self.timing_error_ms,
               "statuses": {str(k): v for k, v in self.statuses.items()},
               "actions": self.actions, "outcomes_sent": self.outcomes_sent,
               "outcomes_ok": self.outcomes_ok}
        self.client_ms, self.server_us, self.timing_error_ms = [], [], []
        self.component_us = []
        self.statuses = Counter()
        self.actions = self.outcomes_sent = self.outcomes_ok = 0
        return out

    def merge(self, data: dict[str, Any]) -> None:
        self.client_ms.extend(data["client_ms"])
        self.server_us.extend(data["server_us"])
        self.component_us.extend(data.get("component_us", ()))
        self.timing_error_ms.extend(data["timing_error_ms"])
        for k, v in data["statuses"].items():
            self.statuses[int(k)] += v
        self.actions += data["actions"]
        self.outcomes_sent += data.get("outcomes_sent", 0)
        self.outcomes_ok += data.get("outcomes_ok", 0)


def percentiles(values: list[float], digits: int = 2) -> dict[str, Any] | None:
    """count, p50, p95, p99, max and mean (nearest rank), or None without samples."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"count": len(ordered), "p50": round(rank(0.50), digits),
            "p95": round(rank(0.95), digits), "p99": round(rank(0.99), digits),
            "max": round(ordered[-1], digits),
            "mean": round(sum(ordered) / len(ordered), digits)}


def summarize(environment: Any, samples: Samples) -> dict[str, Any]:
    """The run's figures from Locust's totals and the edge samples."""
    total = environment.stats.total
    duration = max(1e-9, (total.last_request_timestamp or total.start_time) - total.start_time)
    requests = sum(samples.statuses.values())
    ok = sum(v for k, v in samples.statuses.items() if 200 <= k < 300)
    decisions = len(samples.server_us)
    options = environment.parsed_options
    users = sorted(cls.__name__ for cls in environment.user_classes)
    return {
        "scenario": "+".join(users),
        "users": getattr(options, "num_users", None),
        "duration_s": round(duration, 2),
        "requests": requests,
        "decisions": decisions,
        "decisions_per_s": round(decisions / duration, 1),
        "client_latency_ms": percentiles(samples.client_ms),
        "server_latency_us": percentiles([float(v) for v in samples.server_us], 0),
        "component_call_us": percentiles([float(v) for v in samples.component_us], 0),
        "timing_error_ms": percentiles(samples.timing_error_ms),
        "delivery_success_pct": round(100.0 * ok / requests, 3) if requests else None,
        "statuses": {str(k): v for k, v in sorted(samples.statuses.items())},
        "actions": samples.actions,
        "outcomes_reported": bool(getattr(options, "report_outcomes", False)),
        "outcomes": {"sent": samples.outcomes_sent, "answered_2xx": samples.outcomes_ok},
        "generator": f"locust {_locust_version()}, "
                     f"{getattr(options, 'processes', None) or 1} process(es)",
    }


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.machine()}"}


def _locust_version() -> str:
    try:
        from locust import __version__
    except ImportError:  # pragma: no cover
        return "?"
    return str(__version__)


def write_summary(path: str | Path, summary: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(summary, indent=1) + "\n")


def render(summary: dict[str, Any]) -> str:
    """The summary as the few lines a person reads (and docs/performance.md quotes)."""

    def row(label: str, stats: dict[str, Any] | None, unit: str) -> str:
        if stats is None:
            return f"{label:<28} (no samples)"
        return (f"{label:<28} p50 {stats['p50']:g} {unit}, p95 {stats['p95']:g}, "
                f"p99 {stats['p99']:g}, max {stats['max']:g}  (n={stats['count']})")

    lines = [
        f"scenario {summary['scenario']}, {summary['users']} users, "
        f"{summary['duration_s']} s, generator: {summary['generator']}"]
    maximum = summary.get("maximum")
    if maximum is not None:
        lines += [
            f"{'maximum (closed loop)':<28} {maximum['decisions_per_s']:g} decisions/s; "
            f"client p50 {maximum['client_latency_ms']['p50']:g} ms, "
            f"p99 {maximum['client_latency_ms']['p99']:g}; "
            f"server p50 {maximum['server_latency_us']['p50']:g} us, "
            f"p99 {maximum['server_latency_us']['p99']:g}"]
    paced = summary.get("paced")
    if paced is not None:
        share = summary.get("offered_pct_of_maximum")
        lines.append(
            f"{'offered (open loop)':<28} {paced['offered_per_s']:g} decisions/s"
            + (f" = {share:g} % of the maximum" if share is not None else "")
            + f"; sends after their slot: {paced['late_sends']}"
            + (f" (mean {paced['late_ms_mean']:g} ms late)" if paced["late_sends"] else ""))
    lines += [
        f"{'decisions per second':<28} {summary['decisions_per_s']:g}  "
        f"({summary['decisions']} decisions"
        + (f", {summary['actions']} actions)" if summary.get("actions") is not None else ")"),
        row("client-side latency", summary["client_latency_ms"], "ms"),
        row("server-side latency", summary["server_latency_us"], "us"),
    ]
    inner = summary.get("component_call_us")
    if inner and inner.get("count"):
        lines.append(row("  of it the component call", inner, "us"))
        lines.append(f"{'  server / component p50':<28} "
                     f"{summary['server_latency_us']['p50'] / max(1, inner['p50']):.2f}x")
    lines += [
        row("timing error (timed)", summary["timing_error_ms"], "ms"),
        f"{'delivery success':<28} {summary['delivery_success_pct']} % answered 2xx "
        f"({summary['requests']} requests; statuses {summary['statuses']})",
    ]
    tel = summary.get("telemetry")
    if tel is not None and "error" in tel:
        lines.append(f"{'telemetry stored':<28} unknown: {tel['error']}")
    elif tel is not None:
        lines.append(
            f"{'telemetry stored':<28} {tel['stored_pct']} % of the records the edge took "
            f"({tel['stored_decisions']} decisions + {tel['stored_outcomes']} outcomes of "
            f"{tel['recorded_by_edge']}; clients were answered {tel['answered_decisions']} "
            f"decisions and {tel['answered_outcomes']} outcomes; all shipped within "
            f"{tel['shipped_within_s']:g} s of the end)")
    for key, label in (("server", "edge host"), ("machine", "machine"),
                       ("other_cpu_pct", "other processes' CPU %"), ("command", "command")):
        if key in summary:
            lines.append(f"{label:<28} {summary[key]}")
    return "\n".join(lines)
