"""`trigger-engine`: the control plane from the command line.

Exit codes: 0 success, 1 the rule packs have problems (printed as file:line:column),
2 a usage error or an unavailable store.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from edge_module.edge_store import LocalFolderStore, StoreError

from . import config as config_module
from . import publishing
from .pack_registry import PackRegistry
from .rulepack import Pack, RulePackError, compile_snapshot, load_pack_dir, load_pack_file

EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def _load(paths: tuple[Path, ...]) -> list[Pack]:
    """Packs from files and folders; prints every problem and exits 1 if there are any."""
    packs: list[Pack] = []
    problems = []
    for path in paths:
        try:
            packs.extend(load_pack_dir(path) if path.is_dir() else [load_pack_file(path)])
        except RulePackError as exc:
            problems.extend(exc.problems)
    if not problems:
        try:
            compile_snapshot(packs, "check", 0)
        except RulePackError as exc:
            problems.extend(exc.problems)
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(EXIT_PROBLEMS)
    return packs


def _store(store_dir: str | None) -> LocalFolderStore:
    return LocalFolderStore(store_dir or config_module.load()["STORE_DIR"])


PATHS = click.argument("paths", nargs=-1, required=True,
                       type=click.Path(exists=True, path_type=Path))
STORE = click.option("--store", "store_dir", envvar="TRIGGERS_STORE_DIR",
                     help="Edge store folder [env TRIGGERS_STORE_DIR; default .var/edge-store].")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Validate, compile and publish rule packs for the edge trigger engine."""


@cli.command()
@PATHS
def validate(paths: tuple[Path, ...]) -> None:
    """Check rule packs (files or folders of *.yaml); every problem is reported at once."""
    packs = _load(paths)
    triggers = sum(len(p.triggers) for p in packs)
    click.echo(f"ok: {len(packs)} pack(s), {triggers} trigger(s)")


@cli.command("compile")
@PATHS
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Write here instead of stdout.")
def compile_cmd(paths: tuple[Path, ...], out: Path | None) -> None:
    """Compile rule packs into a snapshot (JSON) without publishing it."""
    text = json.dumps(compile_snapshot(_load(paths), "local", 0), indent=1)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


@cli.command()
@PATHS
@STORE
@click.option("--registry", "registry_dir", envvar="CONTROL_DATA_DIR",
              help="Control plane data folder whose packs/ will hold the published packs.")
def publish(paths: tuple[Path, ...], store_dir: str | None, registry_dir: str | None) -> None:
    """Compile rule packs, publish them as the next revision, and record them in the registry."""
    packs = _load(paths)
    try:
        published = publishing.publish(_store(store_dir), packs)
    except (StoreError, OSError) as exc:
        click.echo(f"error: edge store: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    registry = PackRegistry(Path(registry_dir or config_module.load()["DATA_DIR"]) / "packs")
    registry.root.mkdir(parents=True, exist_ok=True)
    for pack in packs:
        shutil.copyfile(pack.file, registry.path(pack.name))
    click.echo(f"published revision {published.revision}: {published.triggers} trigger(s) "
               f"from {', '.join(published.packs)} ({published.sha256[:12]})")


@cli.command()
@STORE
def revisions(store_dir: str | None) -> None:
    """List published revisions, newest first."""
    try:
        rows = publishing.revisions(_store(store_dir))
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if not rows:
        click.echo("nothing published yet")
    for row in rows:
        click.echo(f"{row['revision']:>5}  {row['sha256'][:12]}  {row['triggers']:>4} triggers  "
                   f"{', '.join(row['packs'])}")


@cli.command()
def serve() -> None:
    """Run the control plane's HTTP API (waitress) on CONTROL_HOST:CONTROL_PORT."""
    import logging

    from waitress import serve as waitress_serve

    from .app import create_app

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    click.echo(f"control plane on http://{app.config['HOST']}:{app.config['PORT']}", err=True)
    waitress_serve(app, host=app.config["HOST"], port=int(app.config["PORT"]), threads=4,
                   ident="control-plane")


def main() -> None:
    cli(prog_name="trigger-engine")


if __name__ == "__main__":
    main()
