"""`python -m loadtest.bench_simulate`: backtest throughput, in recorded events per second.

Generates a synthetic recording (`loadtest.synthetic_sessions`), writes it to a temporary
file and runs `trigger-engine simulate`'s engine over it, on one core, reading the file as
the command does. The throughput counts the recording's events; the simulated clients'
next_check callbacks are work done on top.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

from control_plane.authoring.case_runner import compiled_snapshot
from control_plane.authoring.simulate import SimulationReport, simulate
from control_plane.rulepack import load_pack_set
from loadtest.synthetic_sessions import generate

ROOT = Path(__file__).resolve().parent.parent


def run_once(recording: Path, packs_paths: list[Path]) -> SimulationReport:
    packs = load_pack_set(packs_paths).packs
    ids = [t.id for p in packs for t in p.triggers]
    with open(recording) as lines:
        return simulate(compiled_snapshot(packs), ids, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--packs", type=Path, nargs="+", default=[ROOT / "rules"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "sessions.jsonl"
        recording.write_text("".join(line + "\n" for line in generate(args.sessions)))
        runs = [run_once(recording, args.packs) for _ in range(args.repeat)]

    report = runs[0]
    rates = [r.events_per_s for r in runs]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; one core used")
    print(f"recording: {report.sessions} sessions, {report.requests} requests, "
          f"{report.events} events (+ {report.callbacks} next_check callbacks), "
          f"{recording.name} against {', '.join(str(p) for p in args.packs)}")
    print(f"simulate: {statistics.median(rates):,.0f} events/s median of {len(runs)} runs "
          f"(best {max(rates):,.0f}, {statistics.median(r.elapsed_s for r in runs):.2f} s "
          "per run)")


if __name__ == "__main__":
    main()
