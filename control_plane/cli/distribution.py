"""Distribution commands: publish and roll back revisions, see what is served, and manage
the signing keys and access tokens publishing relies on."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from .. import config as config_module
from ..auth import ROLES, ensure_token_file
from ..distribution import publishing
from ..distribution.pack_registry import PackRegistry
from ..rulepack import load_pack_set
from ..rulepack.pack_set import resolve_catalog
from .group import EXIT_FINDINGS, Unavailable, cli
from .options import CATALOG, DATA_DIR, PATHS, STORE, key_ring, open_edge_store, utc_time


@cli.command()
@PATHS
@CATALOG
@STORE
@DATA_DIR
@click.option("--allow-empty", is_flag=True,
              help="publish even when PATHS hold no rule pack (every trigger goes off, "
                   "the live packs leave the registry)")
@click.option("--replace", is_flag=True,
              help="switch off the packs the current revision serves that PATHS do not "
                   "hold (they leave the control plane's registry too)")
@click.option("--skip-if-dropping", is_flag=True,
              help="publish nothing, and exit 0, when the current revision serves packs "
                   "PATHS do not hold (`./build.sh up` at every start)")
def publish(paths: tuple[Path, ...], catalog: Path | None, store_dir: str | None,
            data_dir: str | None, allow_empty: bool, replace: bool,
            skip_if_dropping: bool) -> None:
    """Publish rule packs as the next revision.

    Compiles them into a snapshot, writes it to the edge store and points the manifest at
    it; copies the packs (and the catalog) into the control plane's registry. The snapshot
    holds exactly the packs in PATHS: when the current revision serves others (published
    through the API or the console), publishing is refused and names them, unless
    --replace switches them off on purpose. Content ids are checked against the catalog in
    PATHS (or --catalog), else against the control plane's. PATHS with no rule pack in
    them (an empty folder, only tests) are refused unless --allow-empty: the snapshot
    would switch every trigger off across the fleet.
    """
    settings = config_module.load()
    registry = PackRegistry(Path(data_dir or settings["DATA_DIR"]) / "packs",
                            settings.get("CATALOG_FILE") or None)
    if catalog is None and resolve_catalog(paths) is None and registry.catalog_path.is_file():
        catalog = registry.catalog_path  # a folder without one: the control plane's catalog
    pack_set = load_pack_set(paths, catalog)
    if not pack_set.packs and not allow_empty:
        raise Unavailable(f"no rule packs in {', '.join(map(str, paths))}: publishing nothing "
                          "would switch every trigger off (--allow-empty does that on purpose)")
    store = open_edge_store(store_dir, data_dir)
    live = publishing.current_entry(store, fresh=True)
    left_out = sorted(set(live.packs) - {p.name for p in pack_set.packs}) if live else []
    replace = replace or (allow_empty and not pack_set.packs)  # every trigger off: asked
    if left_out and not replace:
        message = (f"revision {live.revision} serves pack(s) {', '.join(left_out)}, which "
                   f"{', '.join(map(str, paths))} do not hold: publishing would switch their "
                   "triggers off. Add them to PATHS (`GET /v1/packs/<name>` gives a pack's "
                   "source), or pass --replace to switch them off")
        if skip_if_dropping:
            click.echo(f"not published: {message}")
            return
        raise Unavailable(message)
    published = publishing.publish(store, pack_set.packs, key_ring(data_dir).active(),
                                   catalog=pack_set.catalog)
    registry.root.mkdir(parents=True, exist_ok=True)
    for pack in pack_set.packs:
        shutil.copyfile(pack.file, registry.path(pack.name))
    if pack_set.catalog is not None and \
            Path(pack_set.catalog.file).resolve() != registry.catalog_path.resolve():
        shutil.copyfile(pack_set.catalog.file, registry.catalog_path)
    for name in left_out:  # --replace: the next publish from the registry leaves them off
        registry.delete(name)
    click.echo(f"published revision {published.revision}: {published.triggers} trigger(s) "
               f"from {', '.join(published.packs)} ({published.sha256[:12]}, signed by key "
               f"{published.key_id})" + (f"; switched off: {', '.join(left_out)}"
                                         if left_out else ""))


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
    done = publishing.rollback(open_edge_store(store_dir, data_dir), revision,
                               key_ring(data_dir).active())
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
    rows = publishing.revisions(open_edge_store(store_dir))
    if not rows:
        click.echo("nothing published yet")
    for row in rows:
        note = f"  (rollback from {row['rollback_from']})" if "rollback_from" in row else (
            f"  (recalibrated from {row['recalibrated_from']})"
            if "recalibrated_from" in row else "")
        click.echo(f"{row['revision']:>5}  {row['sha256'][:12]}  {utc_time(row['published_ms'])}  "
                   f"{row['triggers']:>4} triggers  {', '.join(row['packs'])}{note}")


@cli.command()
@STORE
@click.option("--edge", metavar="URL", help="Also ask this edge host (its /healthz) which "
                                            "revision it serves, e.g. http://127.0.0.1:8700.")
def status(store_dir: str | None, edge: str | None) -> None:
    """Show the published revision (and what an edge serves)."""
    current = publishing.current(open_edge_store(store_dir))
    if current is None:
        click.echo("published: nothing yet")
    else:
        note = (f", a rollback from revision {current['rollback_from']}"
                if "rollback_from" in current else "")
        click.echo(f"published: revision {current['revision']} ({current['sha256'][:12]}), "
                   f"{current['triggers']} trigger(s) from {', '.join(current['packs'])}, "
                   f"{utc_time(current['published_ms'])}{note}")
    for reason in (current or {}).get("untrusted", ()):
        click.echo(f"set aside (not signed by this control plane's keys; edges refuse it "
                   f"too; the next publish drops it): {reason}")
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
    key = key_ring(data_dir).ensure()
    click.echo(f"signing key {key.id}")


@keys.command("rotate")
@DATA_DIR
def keys_rotate(data_dir: str | None) -> None:
    """Make a new key the signing key; the old ones stay trusted until retired."""
    key = key_ring(data_dir).rotate()
    click.echo(f"new signing key {key.id}; retire the old one once every edge has moved on")


@keys.command("retire")
@click.argument("key_id")
@DATA_DIR
def keys_retire(key_id: str, data_dir: str | None) -> None:
    """Stop trusting an old key (edges reject what it signed from their next poll)."""
    key_ring(data_dir).retire(key_id)
    click.echo(f"retired key {key_id}")


@keys.command("list")
@DATA_DIR
def keys_list(data_dir: str | None) -> None:
    """Key ids, which one signs and which ones edges trust."""
    rows = key_ring(data_dir).listing()
    if not rows:
        click.echo("no keys yet: trigger-engine keys generate")
    for row in rows:
        flags = [f for f, on in (("active", row["active"]), ("trusted", row["trusted"]),
                                 ("private", row["private"])) if on]
        click.echo(f"{row['key_id']}  {' '.join(flags)}")


@cli.command("tokens")
@DATA_DIR
def tokens_init(data_dir: str | None) -> None:
    """Create the token files of every role (publisher, edge, author, viewer, metrics) in the
    data folder if missing; print where they are (used when CONTROL_<ROLE>_TOKENS is unset)."""
    data_dir = data_dir or config_module.load()["DATA_DIR"]
    for role in ROLES:
        ensure_token_file(data_dir, role)
        click.echo(f"{role} token: {Path(data_dir) / f'{role}.token'}")
