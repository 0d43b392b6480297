"""`trigger-engine`: rule packs from the command line, for people and for scripts."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from edge_module.edge_store import EdgeStore, StoreError, open_store

from . import config as config_module
from . import publishing
from .auth import ROLES, ensure_token_file
from .authoring import case_runner, pack_diff
from .authoring import lint as linting
from .authoring import simulate as simulation
from .keys import KeyRing, KeyRingError
from .pack_registry import PackRegistry
from .rulepack import PackSet, RulePackError, compile_snapshot, load_catalog, load_pack_set
from .rulepack.content_catalog import find_catalog
from .rulepack.schema import schema_text

EXIT_FINDINGS = 1
EXIT_USAGE = 2


class Unavailable(click.ClickException):
    """Something outside the packs is missing or unreachable (a store, an edge, a file)."""

    exit_code = EXIT_USAGE


def _exit_on_findings(found: bool) -> None:
    if found:
        sys.exit(EXIT_FINDINGS)


class _Group(click.Group):
    """Turns the errors commands raise into messages and exit codes, in this one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RulePackError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            click.echo(f"{len(exc.problems)} problem(s)", err=True)
            sys.exit(EXIT_FINDINGS)
        except publishing.RevisionError as exc:
            raise Unavailable(exc.message) from None
        except (KeyRingError, publishing.PublishError) as exc:
            raise Unavailable(str(exc)) from None
        except StoreError as exc:
            raise Unavailable(f"edge store: {exc}") from None
        except UnicodeDecodeError as exc:  # a recording read as text
            raise Unavailable(f"the input is not UTF-8 text: {exc}") from None
        except OSError as exc:
            raise Unavailable(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) \
                from None


def _store(store_dir: str | None) -> EdgeStore:
    config = config_module.load()
    return open_store(store_dir or config["STORE_DIR"], config["S3_ENDPOINT_URL"] or None)


def _key_ring(data_dir: str | None = None) -> KeyRing:
    config = config_module.load({"DATA_DIR": data_dir} if data_dir else None)
    return KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"])


DATA_DIR = click.option("--data-dir", "--registry", "data_dir", envvar="CONTROL_DATA_DIR",
                        metavar="DIR",
                        help="The control plane's data folder: the pack registry (DIR/packs), "
                             "keys (DIR/keys unless CONTROL_KEYS_DIR), telemetry "
                             "[env CONTROL_DATA_DIR; default .var/control; --registry is an "
                             "older name].")


def _packs(paths: tuple[Path, ...], catalog: Path | None, check_content: bool = True) -> PackSet:
    return load_pack_set(paths, catalog, check_content)


PATHS = click.argument("paths", nargs=-1, required=True,
                       type=click.Path(exists=True, path_type=Path))
STORE = click.option("--store", "store_dir", envvar=list(config_module.SHARED["STORE_DIR"]),
                     metavar="DIR|s3://BUCKET/PREFIX",
                     help="Edge store: a folder or an S3 URL [env "
                          f"{config_module.SHARED['STORE_DIR'][0]}; "
                          f"default {config_module.DEFAULTS['STORE_DIR']}].")
CATALOG = click.option("--catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       help="Content catalog to check content ids against [default: the "
                            "catalog.yaml beside the first pack or folder given, if any].")
FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="json: one JSON document on stdout, for scripts.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
def cli() -> None:
    """Write, check, test and publish rule packs for the edge trigger engine.

    A PATH is a rule pack file or a folder of them (*.yaml; *.test.yaml files are rule-pack
    tests and catalog.yaml is the content catalog, not packs). Problems are reported all at
    once as file:line:column, with what was expected and, for a near-miss name, a
    suggestion.

    \b
    Exit codes, for scripts:
      0  success: packs valid, no lint findings, every test passed, edge up to date
      1  findings: rule-pack problems, lint findings, failing tests, an edge
         serving another revision than the published one (status --edge)
      2  usage or environment error: bad arguments, a missing file, no test
         files, an unknown revision, an unavailable store or edge host
    """


@cli.command()
@PATHS
@CATALOG
def validate(paths: tuple[Path, ...], catalog: Path | None) -> None:
    """Check rule packs: alone, together and against the catalog."""
    pack_set = _packs(paths, catalog)
    triggers = sum(len(p.triggers) for p in pack_set.packs)
    checked = f", content ids checked against {pack_set.catalog.file}" if pack_set.catalog else ""
    click.echo(f"ok: {len(pack_set.packs)} pack(s), {triggers} trigger(s){checked}")


@cli.command("compile")
@PATHS
@CATALOG
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of stdout.")
def compile_cmd(paths: tuple[Path, ...], catalog: Path | None, out: Path | None) -> None:
    """Compile rule packs into a snapshot (JSON), unpublished."""
    text = json.dumps(compile_snapshot(_packs(paths, catalog).packs, "local", 0), indent=1)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n")
        click.echo(f"wrote {out}", err=True)


@cli.command("test")
@PATHS
@CATALOG
@FORMAT
def test_cmd(paths: tuple[Path, ...], catalog: Path | None, fmt: str) -> None:
    """Run rule-pack tests (*.test.yaml files, or folders of them).

    Each case replays a visitor's events against the packs in the test file's folder,
    compiled as the edge would hold them, calling back at next_check_ms like a real
    client, and compares the actions shown (and when) with the case's expect list.
    """
    suites = case_runner.load_suites(paths, catalog)
    results = [case_runner.run_case(s.snapshot, case, f"test-{n}")
               for s in suites for n, case in enumerate(s.cases)]
    if not results:
        raise Unavailable("no rule-pack tests (*.test.yaml) in "
                          + ", ".join(str(p) for p in paths))
    failed = [r for r in results if not r.passed]
    if fmt == "json":
        click.echo(json.dumps({"passed": len(results) - len(failed), "failed": len(failed),
                               "cases": [_case_json(r) for r in results]}, indent=1))
    else:
        for result in results:
            click.echo(f"{'PASS' if result.passed else 'FAIL'} {result.where}  {result.case.name}")
            if not result.passed:
                click.echo(result.explain())
        click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    _exit_on_findings(bool(failed))


def _case_json(result: case_runner.CaseResult) -> dict[str, Any]:
    return {"name": result.case.name, "file": result.case.file, "line": result.case.line,
            "column": result.case.column, "passed": result.passed, "error": result.error,
            "seen": [{"at_ms": s.at_ms, "trigger": s.trigger, "content": s.content}
                     for s in result.seen],
            "comparison": [{"mark": m, "action": a} for m, a in result.comparison()]}


@cli.command()
@PATHS
@CATALOG
@FORMAT
@click.option("--ignore", multiple=True, metavar="CODE", type=click.Choice(list(linting.RULES)),
              help="Skip a rule (repeatable).")
def lint(paths: tuple[Path, ...], catalog: Path | None, fmt: str, ignore: tuple[str, ...]) -> None:
    """Audit packs for trigger sprawl (duplicates, dead triggers...).

    Findings are printed as file:line:column CODE [trigger] message.

    \b
    L001  duplicate: same pages, event and conditions as another trigger
    L002  overlap: wherever and whenever it fires, another trigger can fire too
    L003  never fires: contradictory or unreachable conditions
    L004  no per_session cap
    L005  content id missing from the content catalog

    Shadowing by priority is not checked: without exclusive groups (not in the
    language yet) a higher-priority trigger does not suppress a lower one; triggers
    alike in all but priority are L001.
    """
    try:
        pack_set = _packs(paths, catalog, check_content=False)
    except RulePackError as exc:
        if fmt != "json":
            raise
        click.echo(json.dumps({"problems": [p.to_dict() for p in exc.problems],
                               "findings": []}, indent=1))
        sys.exit(EXIT_FINDINGS)
    findings = linting.lint(pack_set.packs, pack_set.catalog, ignore)
    if fmt == "json":
        click.echo(json.dumps({"problems": [], "findings": [f.to_dict() for f in findings]},
                              indent=1))
    else:
        for finding in findings:
            click.echo(str(finding))
        triggers = sum(len(p.triggers) for p in pack_set.packs)
        click.echo(f"{len(findings)} finding(s) in {triggers} trigger(s)", err=True)
    _exit_on_findings(bool(findings))


@cli.command()
@click.argument("old")
@click.argument("new")
@STORE
@FORMAT
@click.option("--exit-code", is_flag=True, help="Exit 1 when there are differences.")
def diff(old: str, new: str, store_dir: str | None, fmt: str, exit_code: bool) -> None:
    """Say what changed from OLD to NEW, in plain words.

    Each side is a pack file, a folder of packs, a published revision number of the edge
    store, or "current" (the published revision the edge serves). Example:

    \b
      trigger-engine diff current rules/     # what publishing rules/ would change
      trigger-engine diff 3 5
    """
    changes = pack_diff.diff_snapshots(_side(old, store_dir), _side(new, store_dir))
    if fmt == "json":
        click.echo(json.dumps({"old": old, "new": new,
                               "changes": [c.to_dict() for c in changes]}, indent=1))
    elif changes:
        for change in changes:
            click.echo(str(change))
    else:
        click.echo("no differences")
    _exit_on_findings(exit_code and bool(changes))


def _side(spec: str, store_dir: str | None) -> dict[str, Any]:
    path = Path(spec)
    if path.exists():
        return compile_snapshot(load_pack_set([path], check_content=False).packs, spec, 0)
    if spec == "current":
        return publishing.published_snapshot(_store(store_dir))
    if spec.isdigit():
        return publishing.published_snapshot(_store(store_dir), int(spec))
    raise click.BadParameter(f"{spec!r} is neither a pack file or folder, a revision number, "
                             "nor 'current'", param_hint="OLD/NEW")


@cli.command()
@PATHS
@CATALOG
@FORMAT
@click.option("--sessions", "recording", required=True, type=click.File("r"), metavar="FILE",
              help="Recorded sessions: JSON Lines, one decide request body per line ('-': "
                   "stdin).")
def simulate(paths: tuple[Path, ...], catalog: Path | None, fmt: str, recording: Any) -> None:
    """Backtest packs over recorded sessions.

    Reports per trigger how often it fired, in how many sessions, how long after the
    session started (p50/p90/max of the first fire), and which triggers fired in the same
    sessions (an overlap matrix).

    Each line of the recording is one wire-contract decide request; each session's lines
    are in time order. Session state is carried between a session's requests as at the
    edge, and between them the simulated client calls back at next_check_ms. Requests the
    edge would refuse are counted by error code, not fatal.
    """
    packs = _packs(paths, catalog).packs
    ids = [t.id for p in packs for t in p.triggers]
    report = simulation.simulate(case_runner.compiled_snapshot(packs), ids, recording)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(simulation.render_text(report))


@cli.command()
@CATALOG
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of stdout; the catalog.yaml beside it is used by "
                   "default.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 if --out differs from what would be written.")
def schema(catalog: Path | None, out: Path | None, check: bool) -> None:
    """Write the JSON Schema of rule packs, for editors.

    Regenerate the committed one with `trigger-engine schema -o rules/schema.json`.

    Packs refer to it with a first line `# yaml-language-server: $schema=./schema.json`.
    Generated from the validator's tables, the decision core's vocabulary and the content
    catalog (whose ids it offers as completions).
    """
    if catalog is None and out is not None:
        catalog = find_catalog(out.parent)
    text = schema_text(load_catalog(catalog) if catalog is not None else None)
    if check:
        if out is None:
            raise click.UsageError("--check needs --out, the file to compare")
        current = out.read_text() if out.exists() else ""
        if current != text:
            click.echo(f"{out} is stale: regenerate it with "
                       f"`trigger-engine schema -o {out}`", err=True)
            sys.exit(EXIT_FINDINGS)
        click.echo(f"{out} is up to date", err=True)
    elif out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


@cli.command()
@PATHS
@CATALOG
@STORE
@DATA_DIR
def publish(paths: tuple[Path, ...], catalog: Path | None, store_dir: str | None,
            data_dir: str | None) -> None:
    """Publish rule packs as the next revision.

    Compiles them into a snapshot, writes it to the edge store and points the manifest at
    it; copies the packs (and the catalog) into the control plane's registry.
    """
    pack_set = _packs(paths, catalog)
    published = publishing.publish(_store(store_dir), pack_set.packs,
                                   _key_ring(data_dir).active())
    registry = PackRegistry(Path(data_dir or config_module.load()["DATA_DIR"]) / "packs")
    registry.root.mkdir(parents=True, exist_ok=True)
    for pack in pack_set.packs:
        shutil.copyfile(pack.file, registry.path(pack.name))
    if pack_set.catalog is not None:
        shutil.copyfile(pack_set.catalog.file, registry.catalog_path)
    click.echo(f"published revision {published.revision}: {published.triggers} trigger(s) "
               f"from {', '.join(published.packs)} ({published.sha256[:12]}, signed by key "
               f"{published.key_id})")


@cli.command()
@click.argument("revision", type=click.IntRange(min=1))
@STORE
@DATA_DIR
def rollback(revision: int, store_dir: str | None, data_dir: str | None) -> None:
    """Serve an earlier revision again.

    The manifest points back at that revision's snapshot object, so edges serve it and
    report its number; the history records the rollback, and the next publish still gets
    a new number. Rolling back to the current revision does nothing. The rollback is signed
    with the active key: edges refuse a lower revision without such a statement.
    """
    done = publishing.rollback(_store(store_dir), revision, _key_ring(data_dir).active())
    entry = done.entry
    if not done.changed:
        click.echo(f"revision {revision} is already current; nothing to do")
    else:
        click.echo(f"rolled back to revision {entry.revision} (was {entry.rollback_from}): "
                   f"{entry.triggers} trigger(s) from {', '.join(entry.packs)}")


@cli.command()
@STORE
def revisions(store_dir: str | None) -> None:
    """List published revisions and rollbacks, newest first."""
    rows = publishing.revisions(_store(store_dir))
    if not rows:
        click.echo("nothing published yet")
    for row in rows:
        note = f"  (rollback from {row['rollback_from']})" if "rollback_from" in row else (
            f"  (recalibrated from {row['recalibrated_from']})"
            if "recalibrated_from" in row else "")
        click.echo(f"{row['revision']:>5}  {row['sha256'][:12]}  {_when(row['published_ms'])}  "
                   f"{row['triggers']:>4} triggers  {', '.join(row['packs'])}{note}")


@cli.command()
@STORE
@click.option("--edge", metavar="URL", help="Also ask this edge host (its /healthz) which "
                                            "revision it serves, e.g. http://127.0.0.1:8700.")
def status(store_dir: str | None, edge: str | None) -> None:
    """Show the published revision (and what an edge serves)."""
    current = publishing.current(_store(store_dir))
    if current is None:
        click.echo("published: nothing yet")
    else:
        note = (f", a rollback from revision {current['rollback_from']}"
                if "rollback_from" in current else "")
        click.echo(f"published: revision {current['revision']} ({current['sha256'][:12]}), "
                   f"{current['triggers']} trigger(s) from {', '.join(current['packs'])}, "
                   f"{_when(current['published_ms'])}{note}")
    if edge is None:
        return
    served = _edge_revision(edge)
    expected = None if current is None else str(current["revision"])
    if served == expected:
        click.echo(f"edge {edge}: serving revision {served} (up to date)")
        return
    click.echo(f"edge {edge}: serving {f'revision {served}' if served else 'no snapshot'}, "
               f"not the published revision {expected} (edges poll the store; check its "
               "last_error at /healthz if this lasts)")
    sys.exit(EXIT_FINDINGS)


def _edge_revision(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=5) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:  # 503 while it has no snapshot: still an answer
        raw = exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unavailable(f"cannot reach the edge host at {url}: "
                          f"{getattr(exc, 'reason', exc)}") from None
    try:
        revision = json.loads(raw).get("revision")
    except (ValueError, AttributeError):
        raise Unavailable(f"{url}/healthz did not answer edge host health JSON") from None
    return None if revision is None else str(revision)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


@cli.group()
def keys() -> None:
    """Snapshot signing keys (Ed25519).

    \b
    The control plane signs every snapshot with its active key; edges trust the public
    keys in TRIGGERS_TRUSTED_KEYS (default .var/trusted-keys). To rotate: `keys rotate`,
    let every edge pick up a snapshot signed by the new key, then `keys retire OLD_ID`.
    """


@keys.command("generate")
@DATA_DIR
def keys_generate(data_dir: str | None) -> None:
    """Create the first signing key (does nothing if there is one)."""
    key = _key_ring(data_dir).ensure()
    click.echo(f"signing key {key.id}")


@keys.command("rotate")
@DATA_DIR
def keys_rotate(data_dir: str | None) -> None:
    """Make a new key the signing key; the old ones stay trusted until retired."""
    key = _key_ring(data_dir).rotate()
    click.echo(f"new signing key {key.id}; retire the old one once every edge has moved on")


@keys.command("retire")
@click.argument("key_id")
@DATA_DIR
def keys_retire(key_id: str, data_dir: str | None) -> None:
    """Stop trusting an old key (edges reject what it signed from their next poll)."""
    _key_ring(data_dir).retire(key_id)
    click.echo(f"retired key {key_id}")


@keys.command("list")
@DATA_DIR
def keys_list(data_dir: str | None) -> None:
    """Key ids, which one signs and which ones edges trust."""
    rows = _key_ring(data_dir).listing()
    if not rows:
        click.echo("no keys yet: trigger-engine keys generate")
    for row in rows:
        flags = [f for f, on in (("active", row["active"]), ("trusted", row["trusted"]),
                                 ("private", row["private"])) if on]
        click.echo(f"{row['key_id']}  {' '.join(flags)}")


@cli.command("tokens")
@DATA_DIR
def tokens_init(data_dir: str | None) -> None:
    """Create the publisher, edge and author token files in the data folder if missing; print
    where they are (used when CONTROL_PUBLISHER_TOKENS / CONTROL_EDGE_TOKENS are unset)."""
    data_dir = data_dir or config_module.load()["DATA_DIR"]
    for role in ROLES:
        ensure_token_file(data_dir, role)
        click.echo(f"{role} token: {Path(data_dir) / f'{role}.token'}")


def _telemetry(data_dir: str | None) -> Any:
    from .telemetry_store import TelemetryStore

    root = Path(data_dir or config_module.load()["DATA_DIR"])
    path = root / "telemetry.sqlite3"
    if not path.exists():
        raise Unavailable(f"no telemetry yet in {root} (edges send it to the running "
                          "control plane; --data-dir names another data folder)")
    return TelemetryStore(path)


@cli.command()
@DATA_DIR
@FORMAT
@click.option("--window", "window_s", type=float, default=30.0, show_default=True,
              help="Seconds within which a click or conversion makes a firing not false.")
@click.option("--experiment", is_flag=True,
              help="The adaptive-threshold experiment instead: per arm, and the lifts.")
@click.option("--min-sessions", type=click.IntRange(min=2), default=30, show_default=True,
              help="With --experiment: sessions each arm needs before an interval is given.")
def report(data_dir: str | None, fmt: str, window_s: float, experiment: bool,
           min_sessions: int) -> None:
    """Per trigger x device x revision: fires, impressions, clicks, conversions,
    dismissals, false-trigger rate; holdout lift with its 95 % interval.

    With --experiment: per arm of settings.experiment (adaptive, static, holdout) sessions,
    conversion and false-trigger rates, and the lift of adaptive vs static and of each arm
    vs holdout with its 95 % interval."""
    from .reports import experiment_report, format_experiment, format_table, trigger_report

    if experiment:
        doc = experiment_report(_telemetry(data_dir), window_s, min_sessions=min_sessions)
        click.echo(json.dumps(doc, indent=1) if fmt == "json" else format_experiment(doc))
        return
    doc = trigger_report(_telemetry(data_dir), window_s)
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
    from .config import load
    from .recalibration import Settings
    from .recalibration import recalibrate as run

    result = run(_store(store_dir), _telemetry(data_dir),
                 None if dry_run else _key_ring(data_dir).active(),
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
    from .reports import recalibration_log

    doc = recalibration_log(_telemetry(data_dir), since_ms, trigger, limit)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1))
        return
    for row in doc["recalibrations"]:
        published = f"published r{row['published_revision']}" \
            if row["published_revision"] is not None else "not published"
        click.echo(f"{row['ts_ms']} {row['trigger']:<20} {row['segment']:<10} "
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
@click.option("--snapshot-out", type=click.Path(dir_okay=False, path_type=Path),
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
    from .evaluate import EvaluationInputError, format_text
    from .evaluate import evaluate as run
    from .rulepack import RulePackError

    try:
        packs = _packs(paths, None).packs
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
@click.option("--min-sessions", type=int, default=30, show_default=True)
def audit(data_dir: str | None, fmt: str, min_sessions: int) -> None:
    """Flag triggers for retirement: redundant (firings correlated |r| > 0.9 with another
    trigger's across sessions) or low-confidence (few sessions, wide interval)."""
    from .audit import audit as run

    doc = run(_telemetry(data_dir), min_sessions=min_sessions)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1))
    else:
        for flag in doc["flags"]:
            click.echo(" ".join(f"{k}={v}" for k, v in flag.items()))
        click.echo(f"{len(doc['flags'])} flag(s) over {len(doc['triggers'])} trigger(s), "
                   f"{doc['sessions']} session(s)")
    _exit_on_findings(bool(doc["flags"]))


@cli.command()
def serve() -> None:
    """Run the control plane's HTTP API on CONTROL_HOST:CONTROL_PORT."""
    import logging

    from waitress import serve as waitress_serve

    from .app import create_app

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import signal

    from .scheduler import RecalibrationScheduler

    app = create_app()
    RecalibrationScheduler(app).start()  # CONTROL_RECALIBRATE_INTERVAL_S; 0 = off
    click.echo(f"control plane on http://{app.config['HOST']}:{app.config['PORT']}", err=True)
    # Started in the background by a shell, a process inherits SIGINT ignored: Ctrl-C and
    # SIGTERM must still stop it (waitress ends on KeyboardInterrupt). Only the first one:
    # Ctrl-C in `./build.sh up` brings SIGINT and then SIGTERM, and a second interrupt in
    # the middle of the shutdown (atexit, thread joins) left the process hanging.
    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        waitress_serve(app, host=app.config["HOST"], port=int(app.config["PORT"]), threads=4,
                       ident="control-plane")
    except KeyboardInterrupt:
        pass


def main() -> None:
    cli(prog_name="trigger-engine")


if __name__ == "__main__":
    main()
