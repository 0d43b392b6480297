"""`./build.sh loadtest [USERS] [SECONDS] [options]`: an edge host, a load, a summary.

Starts the stack (`loadtest.stack`: keys, the shipped packs plus the 30-trigger bench pack
published and signed, `edge-host` on a free port and, for the journeys, the control plane
collecting the edge's telemetry), runs Locust headless (or wrk for the throughput scenario)
for a fixed time, and writes into loadtest/reports/ (or --reports DIR):
  <name>_stats.csv, <name>_stats_history.csv, <name>_failures.csv, <name>_exceptions.csv,
  <name>.html and <name>-summary.json (Locust), or <name>-wrk.txt (wrk),
then prints the summary: decisions per second, client-side and server-side latency (and
the component call within it), the timing error of timed triggers, delivery success of
requests and of telemetry records, with the edge host's own counters and how busy the
rest of the machine was meanwhile (the load generator shares the cores). With wrk,
`--rate 70%` first measures the maximum, then offers 70 % of it on a fixed schedule.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from loadtest.stack import ROOT, edge_stack
from loadtest.summary import machine, render, write_summary

REPORTS = ROOT / "loadtest" / "reports"
SCENARIOS = {"journeys": "VisitorUser", "throughput": "ThroughputUser"}


def other_cpu_seconds(exclude: set[int]) -> float:
    """CPU seconds used so far by processes outside `exclude` (other people's work)."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["pid", "cpu_times"]):
        if proc.info["pid"] in exclude or proc.info["cpu_times"] is None:
            continue
        times = proc.info["cpu_times"]
        total += times.user + times.system
    return total


def our_pids(*roots: int) -> set[int]:
    import psutil

    pids = {os.getpid()}
    for root in roots:
        try:
            proc = psutil.Process(root)
            pids.add(root)
            pids.update(child.pid for child in proc.children(recursive=True))
        except psutil.Error:
            pass
    return pids


def _at_least_one(text: str) -> int:
    """A whole number of 1 or more (0 seconds ran for ever, -3 failed after the start)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected 1 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./build.sh loadtest", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("users", nargs="?", type=_at_least_one, default=200,
                        help="simulated users (default 200)")
    parser.add_argument("seconds", nargs="?", type=_at_least_one, default=30,
                        help="run time in seconds (default 30)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="journeys",
                        help="journeys: VisitorUser (default); throughput: ThroughputUser")
    parser.add_argument("--generator", choices=("locust", "wrk"), default="locust",
                        help="wrk (throughput only; `apt-get install wrk`): a generator in C "
                             "that leaves the cores to the edge host; writes <name>-wrk.txt "
                             "instead of Locust's CSV/HTML")
    parser.add_argument("--processes", type=int, default=1,
                        help="Locust processes (-1: one per core); one process tops out "
                             "around a core's worth of requests")
    parser.add_argument("--spawn-rate", type=float, default=0,
                        help="users started per second (default: all within 5 s)")
    parser.add_argument("--packs", choices=("shipped", "bench", "both"), default="both",
                        help="what the edge serves (default: rules/ + the 30-trigger pack)")
    parser.add_argument("--name", default="", help="report file prefix "
                        "(default: <scenario>-<users>u-<seconds>s)")
    parser.add_argument("--rate", type=parse_rate, default=(0.0, False),
                        help="throughput only: offered load in decisions/s over all users "
                             "(default: as fast as the edge answers). With wrk, P%% first "
                             "measures the maximum (SECONDS as fast as the edge answers), "
                             "then offers P%% of it on a fixed schedule (open loop) for "
                             "SECONDS more, on the same edge host")
    parser.add_argument("--telemetry", choices=("auto", "on", "off"), default="auto",
                        help="run the control plane too, the edge shipping its decision log "
                             "to it, the visitors reporting outcomes, and check how many "
                             "records were stored (auto: on for journeys, off for throughput, "
                             "whose decisions/s measure the decision path alone)")
    parser.add_argument("--reports", type=Path, default=REPORTS,
                        help="folder of the reports (default: loadtest/reports)")
    parser.add_argument("--host", default="",
                        help="an edge host already running (no stack is started)")
    args = parser.parse_args(argv)

    name = args.name or f"{args.scenario}-{args.users}u-{args.seconds}s"
    reports = args.reports = args.reports.resolve()
    reports.mkdir(parents=True, exist_ok=True)
    summary_path = reports / f"{name}-summary.json"
    summary_path.unlink(missing_ok=True)
    spawn = args.spawn_rate or max(1.0, args.users / 5)
    locust = [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/locustfile.py",
              "--headless", "-u", str(args.users), "-r", f"{spawn:g}",
              "-t", f"{args.seconds}s", "--stop-timeout", "5",
              "--csv", str(reports / name), "--html", str(reports / f"{name}.html"),
              "--summary-json", str(summary_path), "--only-summary", "--loglevel", "WARNING"]
    if args.processes != 1:
        locust += ["--processes", str(args.processes)]
    telemetry = (args.telemetry == "on" or (args.telemetry == "auto"
                                            and args.scenario == "journeys")) and not args.host
    if telemetry and args.generator == "locust":
        locust.append("--report-outcomes")
    rate, relative = args.rate
    if rate and relative and args.generator != "wrk":
        raise SystemExit("--rate P%: only with --generator wrk (Locust cannot reach the "
                         "maximum beside the edge host); give decisions/s instead")
    if rate and args.generator != "wrk":
        locust += ["--batch-rate", f"{rate / args.users:g}"]
    locust.append(SCENARIOS[args.scenario])

    def run_locust(url: str, *server_pids: int) -> dict[str, Any]:
        command = locust + ["--host", url]
        print(f"==> {shlex.join(command)}", file=sys.stderr, flush=True)
        before_health = _host_health(url)
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        exclude = our_pids(proc.pid, *server_pids)
        others_before, t0 = other_cpu_seconds(exclude), time.monotonic()
        time.sleep(min(3.0, args.seconds / 2))  # the workers exist by now
        exclude |= our_pids(proc.pid)
        code = proc.wait()
        elapsed = time.monotonic() - t0
        others = other_cpu_seconds(exclude) - others_before
        if not summary_path.exists():
            raise SystemExit(f"locust exited with {code} and wrote no summary")
        summary: dict[str, Any] = json.loads(summary_path.read_text())
        after = _host_health(url)
        summary["server"] = {
            "model": _server_model(),
            "decisions": after.get("decisions", 0) - before_health.get("decisions", 0),
            "busy_503": after.get("busy", 0) - before_health.get("busy", 0),
            "errors_500": after.get("errors", 0) - before_health.get("errors", 0),
            "instances": after.get("instances"), "traps": after.get("traps"),
        }
        summary["machine"] = machine()
        summary["other_cpu_pct"] = round(100 * max(0.0, others) / elapsed, 1)
        given = sys.argv[1:] if argv is None else argv
        summary["command"] = " ".join(["./build.sh loadtest", *map(shlex.quote, given)])
        summary["locust_exit_code"] = code
        return summary

    run = run_locust
    if args.generator == "wrk":
        if args.scenario != "throughput" or not shutil.which("wrk"):
            raise SystemExit("--generator wrk: needs --scenario throughput and wrk installed "
                             "(Debian/Ubuntu: apt-get install wrk)")
        run = partial(run_wrk, args, name)
    if args.host:
        summary = run(args.host.rstrip("/"))
    else:
        with edge_stack(args.packs, telemetry=telemetry) as stack:
            # the control plane is part of the stack, not "other processes"
            summary = run(stack.url, *[p.pid for p in (stack.process, stack.control_process)
                                       if p is not None])
            if telemetry:
                summary["telemetry"] = telemetry_delivery(stack, summary)
    write_summary(summary_path, summary)
    print(render(summary))
    made = [f"{name}-wrk.txt"] if args.generator == "wrk" else [f"{name}_stats.csv",
                                                               f"{name}.html"]
    shown = reports.relative_to(ROOT) if reports.is_relative_to(ROOT) else reports
    print(f"reports in {shown}/: {', '.join(made)}, {name}-summary.json")
    return 0 if summary["locust_exit_code"] == 0 else 1


def telemetry_delivery(stack: Any, summary: dict[str, Any],
                       timeout_s: float = 60.0) -> dict[str, Any]:
    """Once the edge has shipped every record it took (buffer and spool empty, in every
    worker process), how many the control plane stored (the stack is this run's own: all
    it holds), against what the edge recorded and the clients were answered."""
    started = time.monotonic()
    statuses: dict[str, dict[str, Any]] = {}  # per worker (edge id)
    while time.monotonic() - started < timeout_s:
        statuses = {edge: doc["telemetry"] for edge, doc in _worker_healths(stack.url).items()
                    if doc.get("telemetry")}
        if len(statuses) >= _workers() and all(
                t["buffered"] == 0 and t["spooled_files"] == 0 and
                # dropped also counts records lost after spooling (set aside, rejected)
                t["recorded"] <= t["spooled"] + t["dropped"] for t in statuses.values()):
            break
        time.sleep(0.25)
    recorded = sum(int(t.get("recorded", 0)) for t in statuses.values())
    outcomes = summary.get("outcomes") or {}
    req = urllib.request.Request(f"{stack.control_url}/v1/telemetry/counts",
                                 headers={"Authorization": f"Bearer {stack.publisher_token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            stored = json.loads(resp.read())
    except (OSError, ValueError) as exc:  # the run's other figures still get written
        return {"error": f"could not count the stored records: {exc}",
                "recorded_by_edge": recorded}
    return {
        "recorded_by_edge": recorded,
        "stored_decisions": stored["decisions"], "stored_outcomes": stored["outcomes"],
        "stored_pct": round(100.0 * (stored["decisions"] + stored["outcomes"]) / recorded, 3)
        if recorded else None,
        "dropped_by_edge": sum(int(t.get("dropped", 0)) for t in statuses.values()),
        "answered_decisions": summary.get("decisions"),
        "answered_outcomes": outcomes.get("answered_2xx", 0),
        "shipped_within_s": round(time.monotonic() - started, 2),
    }


def parse_rate(text: str) -> tuple[float, bool]:
    """`--rate`: decisions/s ("2800") or a share of the measured maximum ("70%")."""
    relative = text.endswith("%")
    try:
        value = float(text[:-1] if relative else text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected decisions/s (e.g. 2800) or a share of the maximum (e.g. 70%)")
    if value < 0 or (relative and not 0 < value <= 100):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a rate is a positive number, a share above 0% and at most 100%")
    return value, relative


def run_wrk(args: argparse.Namespace, name: str, url: str, *server_pids: int) -> dict[str, Any]:
    """The throughput batch driven by wrk (`loadtest/wrk_batch.lua`), one thread, USERS
    connections; the same summary fields as a Locust run (no timing error: no callbacks).
    With `--rate P%` two phases on the same host: the maximum, then P% of it paced."""
    rate, relative = args.rate
    maximum = None
    if relative:
        maximum = _wrk_phase(args, f"{name}-max", url, server_pids, 0.0)
        rate = maximum["decisions_per_s"] * rate / 100
    summary = _wrk_phase(args, name, url, server_pids, rate)
    if maximum is not None:
        summary["maximum"] = {k: maximum[k] for k in (
            "decisions_per_s", "client_latency_ms", "server_latency_us",
            "component_call_us", "delivery_success_pct")}
        summary["offered_pct_of_maximum"] = args.rate[0]
    return summary


def _wrk_phase(args: argparse.Namespace, name: str, url: str, server_pids: tuple[int, ...],
               rate: float) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{args.users}", f"-d{args.seconds}s", "--latency",
               "-s", "loadtest/wrk_batch.lua", f"{url}/v1/decide"]
    env = dict(os.environ)
    env.pop("WRK_RATE", None)
    if rate:
        env["WRK_RATE"] = f"{rate:.1f}"
    print(f"==> {'WRK_RATE=' + env['WRK_RATE'] + ' ' if rate else ''}{shlex.join(command)}",
          file=sys.stderr, flush=True)
    before = _settled_health(url)  # a previous phase's last requests are counted there
    exclude = our_pids(*server_pids)
    others_before, t0 = other_cpu_seconds(exclude), time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    exclude.add(proc.pid)
    out, _ = proc.communicate()
    elapsed = time.monotonic() - t0
    others = other_cpu_seconds(exclude) - others_before
    (args.reports / f"{name}-wrk.txt").write_text(out)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_SUMMARY ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk exited with {proc.returncode}:\n{out}")
    raw = json.loads(line.partition(" ")[2])
    duration = raw["duration_us"] / 1e6
    errors = sum(raw["errors"][k] for k in ("connect", "read", "write", "timeout"))
    ok = sum(v for k, v in raw["statuses"].items() if 200 <= int(k) < 300)
    answered = sum(raw["statuses"].values())
    client = {k: round(v / 1000, 2) for k, v in raw["client_us"].items()}
    server = raw["server_us"]
    after = _settled_health(url)
    paced = {"offered_per_s": round(rate, 1), "late_sends": raw["late_sends"],
             "late_ms_mean": raw["late_ms_mean"]} if rate else None
    return {
        "scenario": "ThroughputUser (wrk)", "users": args.users,
        "duration_s": round(duration, 2), "requests": answered + errors,
        "decisions": server["count"],
        "decisions_per_s": round(server["count"] / duration, 1),
        "paced": paced,
        "client_latency_ms": {"count": answered, **client},
        "server_latency_us": server,
        "component_call_us": raw["component_us"],
        "timing_error_ms": None,
        "delivery_success_pct": round(100.0 * ok / max(1, answered + errors), 3),
        "statuses": raw["statuses"], "actions": None, "outcomes_reported": False,
        "generator": "wrk 4.1 (C, 1 thread), loadtest/wrk_batch.lua",
        "server": {"model": _server_model(),
                   "decisions": after.get("decisions", 0) - before.get("decisions", 0),
                   "busy_503": after.get("busy", 0) - before.get("busy", 0),
                   "errors_500": after.get("errors", 0) - before.get("errors", 0),
                   "instances": after.get("instances"), "traps": after.get("traps")},
        "machine": machine(),
        "other_cpu_pct": round(100 * max(0.0, others) / elapsed, 1),
        "command": " ".join(["./build.sh loadtest", *map(shlex.quote, sys.argv[1:])]),
        "locust_exit_code": 0,
    }


def _health(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def _workers() -> int:
    return int(os.environ.get("EDGE_WORKERS") or 1)


def _worker_healths(url: str) -> dict[str, dict[str, Any]]:
    """/healthz of each worker process, by edge id: with EDGE_WORKERS=N each answers for
    itself, and a new connection per request lands on any of them."""
    workers = _workers()
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(50 * workers):
        doc = _health(url)
        if doc:
            seen[doc.get("edge_id", "")] = doc
        if len(seen) >= workers:
            break
    return seen


def _host_health(url: str) -> dict[str, Any]:
    """/healthz of the whole host: the workers' counters summed."""
    if _workers() == 1:
        return _health(url)
    seen = _worker_healths(url)
    if len(seen) < _workers():
        print(f"warning: only {len(seen)} of {_workers()} workers answered /healthz; the "
              "edge's counters in the summary are theirs alone", file=sys.stderr)
    total: dict[str, Any] = {"workers_seen": len(seen)}
    for key in ("decisions", "busy", "errors", "pending", "instances", "traps"):
        total[key] = sum(int(d.get(key) or 0) for d in seen.values())
    return total


def _settled_health(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """/healthz once no decision is in flight and the count stays put for 0.2 s: requests
    a generator left behind when it stopped are still decided (and counted) by the host."""
    deadline = time.monotonic() + timeout_s
    last = _host_health(url)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _host_health(url)
        if now.get("decisions") == last.get("decisions") and not now.get("pending"):
            return now
        last = now
    return last


def _server_model() -> str:
    server = os.environ.get("EDGE_SERVER", "granian")
    from edge_module.host.config import EdgeConfig

    threads = int(os.environ.get("EDGE_THREADS") or EdgeConfig.threads)
    workers = _workers()
    if workers > 1:
        return (f"{server}, {workers} processes x {threads} threads = {workers * threads} "
                f"component instances, sessions {os.environ.get('EDGE_SESSION_STORE')}")
    if server == "granian" and os.environ.get("EDGE_SESSION_STORE", "memory") == "memory":
        return (f"granian, 1 process, {threads} component instances ({threads - 1} decision "
                "threads and the event loop)")
    return f"{server}, 1 process, {threads} threads = {threads} component instances"


if __name__ == "__main__":
    sys.exit(main())
