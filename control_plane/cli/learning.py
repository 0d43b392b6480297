"""Telemetry and learning commands: reports, the recalibration job and its log, the offline
evaluation of the learning loop, and the retirement audit."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import click

from .. import config
from ..rulepack import load_pack_set
from ..telemetry.reports import PERIODS, period_start
from .group import Unavailable, cli, exit_on_findings
from .options import (
    DATA_DIR,
    FORMAT,
    OUTPUT,
    PATHS,
    STORE,
    key_ring,
    open_edge_store,
    open_telemetry,
    utc_time,
)

# the console's periods, so a page's numbers can be printed here too
PERIOD = click.option("--period", type=click.Choice(["all", *PERIODS]), default="all",
                      show_default=True, help="Only records from this far back.")



class _FiniteSeconds(click.FloatRange):
    """Seconds, more than 0 and at most a day; NaN (which FloatRange lets through) refused."""

    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


FINITE_SECONDS = _FiniteSeconds(min=0, min_open=True, max=86_400)

@cli.command()
@DATA_DIR
@STORE
@FORMAT
@click.option("--window", "window_s", type=FINITE_SECONDS,
              default=lambda: float(config.load()["FALSE_TRIGGER_WINDOW_S"]),
              show_default="CONTROL_FALSE_TRIGGER_WINDOW_S, or 30",
              help="Seconds within which a click or conversion makes a firing not false.")
@click.option("--experiment", is_flag=True,
              help="The adaptive-threshold experiment instead: per arm, and the lifts.")
@click.option("--min-sessions", type=click.IntRange(min=2), default=30, show_default=True,
              help="With --experiment: sessions each arm needs before an interval is given.")
@PERIOD
def report(data_dir: str | None, store_dir: str | None, fmt: str, window_s: float,
           experiment: bool, min_sessions: int, period: str) -> None:
    """Per trigger x device x revision: fires, impressions, clicks, conversions,
    dismissals, false-trigger rate; holdout lift with its 95 % interval.

    With --experiment: per arm of settings.experiment (adaptive, static, holdout) sessions,
    conversion and false-trigger rates, the lift of adaptive vs static and of each arm
    vs holdout with its 95 % interval, and a sample-ratio check of the arms' sessions
    against the split the published snapshot (--store) declares."""
    from control_plane.telemetry.reports import (
        experiment_report,
        experiment_split,
        format_experiment,
        format_table,
        trigger_report,
    )

    from ..distribution import publishing

    since_ms = period_start(period, int(time.time() * 1000))
    if experiment:
        served = publishing.served(open_edge_store(store_dir, data_dir))
        doc = experiment_report(open_telemetry(data_dir), window_s, since_ms,
                                min_sessions=min_sessions,
                                split=experiment_split(served[1] if served else None))
        click.echo(json.dumps(doc, indent=1) if fmt == "json" else format_experiment(doc))
        return
    doc = trigger_report(open_telemetry(data_dir), window_s, since_ms)
    click.echo(json.dumps(doc, indent=1) if fmt == "json" else format_table(doc))


@cli.command()
@DATA_DIR
@STORE
@FORMAT
@click.option("--dry-run", is_flag=True, help="Show what would move; publish nothing.")
@click.option("--over-rollback", is_flag=True,
              help="Run even while a rollback is current (re-tunes the rolled-back "
                   "snapshot and publishes it as a new revision, ending the rollback).")
def recalibrate(data_dir: str | None, store_dir: str | None, fmt: str, dry_run: bool,
                over_rollback: bool) -> None:
    """Learn intent models and adaptive thresholds from telemetry and publish them.

    For every trigger with `mode: adaptive` conditions: an intent model per segment and the
    least-firing thresholds that reach the trigger's recall target (CONTROL_LEARN_*
    settings), checked against the rule in force on held-out sessions of the last hour.
    Re-tunes the snapshot being served (its packs, not the registry's) and publishes the
    result as the next revision when anything moved. Does nothing while a rollback is
    current unless --over-rollback. Every decision is recorded with its numbers
    (`trigger-engine recalibrations`)."""
    from control_plane.learning.recalibration import recalibrate as run

    from ..config import load
    from ..learning.proposal import Settings

    result = run(open_edge_store(store_dir, data_dir), open_telemetry(data_dir),
                 None if dry_run else key_ring(data_dir).active(),
                 Settings.from_config(load()), publish=not dry_run,
                 over_rollback=over_rollback)
    if fmt == "json":
        click.echo(json.dumps({"changes": [c.to_dict() for c in result.changes],
                               "thresholds": result.thresholds,
                               "learned": result.learned,
                               "source": result.source.revision if result.source else None,
                               "note": result.note,
                               "published": result.published.revision
                               if result.published else None}, indent=1))
        return
    if result.note:
        click.echo(result.note)
    for c in result.changes:
        click.echo(f"{c.model_key:<24} {c.segment:<10} {_num(c.old):>8} -> {_num(c.new):<8} "
                   f"n={c.samples:<6} {c.reason}")
    click.echo(f"published revision {result.published.revision}" if result.published
               else "nothing published" + (" (dry run)" if dry_run else ""))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@cli.command()
@DATA_DIR
@FORMAT
@click.option("--trigger", default=None, help="Only this trigger's decisions.")
@click.option("--since-ms", type=int, default=0, help="Only decisions from this moment.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def recalibrations(data_dir: str | None, fmt: str, trigger: str | None, since_ms: int,
                   limit: int) -> None:
    """What the learning loop decided, newest first, with its numbers."""
    from control_plane.telemetry.reports import recalibration_log

    doc = recalibration_log(open_telemetry(data_dir), since_ms, trigger, limit)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1))
        return
    for row in doc["recalibrations"]:
        published = f"published r{row['published_revision']}" \
            if row["published_revision"] is not None else "not published"
        click.echo(f"{utc_time(row['ts_ms'])} {row['trigger']:<20} {row['segment']:<10} "
                   f"{_num(row['old']):>8} -> {_num(row['new']):<8} n={row['samples']:<6} "
                   f"{published}: {row['reason']}")
    if not doc["recalibrations"]:
        click.echo("no recalibrations recorded")


class _Files(click.Option):
    """A repeatable option that also takes several values after one flag
    (`--train a.jsonl b.jsonl`), up to the next option."""

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        option = parser._long_opt.get(self.opts[0])  # click has no public hook for this
        process = option.process

        def greedy(value: Any, state: Any) -> None:
            process(value, state)
            while state.rargs and not state.rargs[0].startswith("-"):
                process(state.rargs.pop(0), state)

        option.process = greedy


@cli.command()
@PATHS
@click.option("--trigger", required=True, metavar="ID", help="The trigger to evaluate.")
@click.option("--train", cls=_Files, multiple=True, required=True, metavar="FILE...",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Labelled session files, one hour of traffic each (JSON lines).")
@click.option("--judge", "judge_file", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out labelled sessions the final snapshot is judged on.")
@click.option("--rounds", type=click.IntRange(min=1), default=None,
              help="Hours to run [default: one per training file; more cycle through them].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the outcomes drawn from each session's probabilities.")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Recall target of best_static [default: the trigger's target.recall, "
                   "else 0.95].")
@click.option("--snapshot-out", type=OUTPUT,
              metavar="FILE", help="Also write the final served snapshot (what was learned).")
@FORMAT
def evaluate(paths: tuple[Path, ...], trigger: str, train: tuple[Path, ...], judge_file: Path,
             rounds: int | None, seed: int, target: float | None, snapshot_out: Path | None,
             fmt: str) -> None:
    """Run the learning loop offline for one trigger and judge it on held-out sessions.

    PATHS (packs, as for publish) are published into a temporary edge store. Each
    training file is one hour: its sessions (as new visitors) are replayed through the
    decision core with the served snapshot, logged, given outcomes drawn from their
    probabilities (seeded), ingested, and recalibrated (CONTROL_LEARN_* settings), which
    publishes the next snapshot. The final snapshot is judged on --judge: recall (share of
    intent=high sessions the trigger fired for, holdouts included) and false triggers
    (intent=low sessions fired for), next to the best per-device static dwell/depth
    thresholds found on the training files at the same recall target (best_static).

    \b
    A session file has one JSON object a line:
      {"session_id", "intent": "high"|"low", "requests": [decide requests in time order],
       "convert_p_if_nudged", "convert_p_baseline"}
    Exit 0 when it ran (however well the loop did; a failing recalibration is reported in
    its round), 2 on bad input (file:line and what was expected).
    """
    from control_plane.learning.evaluate import evaluate as run
    from control_plane.learning.evaluate import format_text
    from control_plane.learning.labelled_sessions import EvaluationInputError

    from ..rulepack import RulePackError

    try:
        packs = load_pack_set(paths, None).packs
        doc = run(packs, trigger, list(train), judge_file, rounds, seed, target, snapshot_out)
    except RulePackError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise Unavailable(f"{len(exc.problems)} problem(s) in the packs") from None
    except EvaluationInputError as exc:
        raise Unavailable(str(exc)) from None
    for r in doc["rounds"]:
        if r.get("error"):
            click.echo(f"warning: round {r['round']}: {r['error']}", err=True)
    click.echo(json.dumps(doc, indent=1) if fmt == "json" else format_text(doc))


@cli.command()
@DATA_DIR
@FORMAT
@click.option("--min-sessions", type=click.IntRange(min=1), default=30, show_default=True)
@PERIOD
def audit(data_dir: str | None, fmt: str, min_sessions: int, period: str) -> None:
    """Flag triggers for retirement: redundant (firings correlated |r| > 0.9 with another
    trigger's across sessions) or low-confidence (few sessions, wide interval)."""
    from control_plane.telemetry.audit import audit as run

    doc = run(open_telemetry(data_dir), min_sessions=min_sessions,
              since_ms=period_start(period, int(time.time() * 1000)))
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1))
    else:
        for flag in doc["flags"]:
            click.echo(" ".join(f"{k}={v}" for k, v in flag.items()))
        click.echo(f"{len(doc['flags'])} flag(s) over {len(doc['triggers'])} trigger(s), "
                   f"{doc['sessions']} session(s)")
    exit_on_findings(bool(doc["flags"]))


@cli.command()
@DATA_DIR
@FORMAT
@click.option("--days", type=click.FloatRange(min=0, min_open=True, max=36_500),
              help="Delete what is older than this many days [default: "
                   "CONTROL_TELEMETRY_RETENTION_DAYS, 90].")
def prune(data_dir: str | None, fmt: str, days: float | None) -> None:
    """Delete telemetry (decisions, firings, outcomes, sessions) older than the retention,
    in short batches that let ingest go on; the recalibrations log stays. `serve` does this
    at start and every hour."""
    from control_plane.telemetry.retention import cutoff_ms
    from control_plane.telemetry.retention import prune as run

    if days is None:
        settings = config.load({"DATA_DIR": data_dir} if data_dir else None)
        days = float(settings["TELEMETRY_RETENTION_DAYS"])
    if days <= 0:
        raise Unavailable("CONTROL_TELEMETRY_RETENTION_DAYS is 0 (keep everything): pass "
                          "--days to delete older records anyway")
    before = cutoff_ms(days)
    deleted = run(open_telemetry(data_dir), days) or {}
    if fmt == "json":
        click.echo(json.dumps({"before_ms": before, "deleted": deleted}, indent=1))
    else:
        click.echo(f"deleted what was stamped before {utc_time(before or 0)}: " + ", ".join(
            f"{n} {table}" for table, n in deleted.items()))
