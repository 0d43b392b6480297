"""Authoring commands: check, compile, test, lint, diff and backtest rule packs, and write
their JSON Schema; nothing here publishes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..authoring import case_runner, pack_diff
from ..authoring import lint as linting
from ..authoring import simulate as simulation
from ..distribution import publishing
from ..rulepack import RulePackError, compile_snapshot, load_catalog, load_pack_set
from ..rulepack.content_catalog import find_catalog
from ..rulepack.schema import schema_text
from .group import EXIT_FINDINGS, EXIT_USAGE, Unavailable, cli, exit_on_findings
from .options import CATALOG, FORMAT, OUTPUT, PATHS, STORE, open_edge_store


@cli.command()
@PATHS
@CATALOG
def validate(paths: tuple[Path, ...], catalog: Path | None) -> None:
    """Check rule packs: alone, together and against the catalog."""
    pack_set = load_pack_set(paths, catalog)
    triggers = sum(len(p.triggers) for p in pack_set.packs)
    checked = f", content ids checked against {pack_set.catalog.file}" if pack_set.catalog else ""
    click.echo(f"ok: {len(pack_set.packs)} pack(s), {triggers} trigger(s){checked}")


@cli.command("compile")
@PATHS
@CATALOG
@click.option("-o", "--out", type=OUTPUT,
              help="Write here instead of stdout.")
def compile_cmd(paths: tuple[Path, ...], catalog: Path | None, out: Path | None) -> None:
    """Compile rule packs into a snapshot (JSON), unpublished."""
    pack_set = load_pack_set(paths, catalog)
    text = json.dumps(compile_snapshot(pack_set.packs, "local", 0, pack_set.catalog), indent=1)
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
    exit_on_findings(bool(failed))


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
    L006  3+ windowed signals read at every event of a page (costly)

    Shadowing by priority is not checked: without exclusive groups (not in the
    language yet) a higher-priority trigger does not suppress a lower one; triggers
    alike in all but priority are L001.
    """
    try:
        pack_set = load_pack_set(paths, catalog, check_content=False)
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
    exit_on_findings(bool(findings))


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
    exit_on_findings(exit_code and bool(changes))


def _side(spec: str, store_dir: str | None) -> dict[str, Any]:
    path = Path(spec)
    if path.exists():
        return compile_snapshot(load_pack_set([path], check_content=False).packs, spec, 0)
    if spec == "current":
        return publishing.published_snapshot(open_edge_store(store_dir))
    if spec.isdigit():
        return publishing.published_snapshot(open_edge_store(store_dir), int(spec))
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
    edge would refuse are counted by error code, not fatal; a recording none of whose
    requests could be decided is an error (exit 2).
    """
    pack_set = load_pack_set(paths, catalog)
    ids = [t.id for p in pack_set.packs for t in p.triggers]
    report = simulation.simulate(case_runner.compiled_snapshot(pack_set.packs, pack_set.catalog),
                                 ids, recording)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(simulation.render_text(report))
    if report.requests == 0:
        refused = sum(report.errors.values())
        why = (f"all {refused} of its requests were refused (above: the first reasons)"
               if refused else "it has no request (one JSON decide request per line)")
        click.echo(f"error: {recording.name}: nothing was simulated: {why}", err=True)
        sys.exit(EXIT_USAGE)


@cli.command()
@CATALOG
@click.option("-o", "--out", type=OUTPUT,
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
