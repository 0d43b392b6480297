"""Import commands: other tools' recordings turned into sessions for `simulate`, `test` and
`evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..authoring import rrweb_import
from .group import Unavailable, cli
from .options import OUTPUT


@cli.group("import")
def import_group() -> None:
    """Turn other tools' recordings into sessions (JSON Lines of decide requests)."""


def _mapping(_ctx: click.Context, _param: click.Parameter,
             values: tuple[str, ...]) -> list[rrweb_import.CustomMapping]:
    try:
        return [rrweb_import.CustomMapping.parse(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@import_group.command("rrweb")
@click.argument("recordings", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=OUTPUT, required=True,
              help="The sessions file to write ('-': stdout).")
@click.option("--custom", "mappings", multiple=True, callback=_mapping,
              metavar="EVENT:SELECTOR=NAME",
              help="Also send custom event NAME on such an event on that target, as the site's "
                   "own nudge('track', NAME) would (repeatable), e.g. "
                   "click:#abandon-cart=cart_abandon.")
@click.option("--device", type=click.Choice(["desktop", "mobile", "tablet"]), default="desktop",
              show_default=True, help="The context's device (rrweb records no user agent).")
@click.option("--report", "report_path", type=OUTPUT,
              help="Also write what was converted and what not (counts by kind) as JSON.")
def import_rrweb(recordings: tuple[Path, ...], out: Path, mappings: list[rrweb_import.CustomMapping],
                 device: str, report_path: Path | None) -> None:
    """Convert rrweb recordings into sessions, one per file.

    Each file is an rrweb event stream (a JSON array, {"events": [...]} or JSON Lines).
    Page loads (Meta) become page views, scrolls a depth (the document height comes from
    an rrweb custom event tagged document-height), mouse moves are sampled every 50 ms,
    clicks, focus, blur and input (never its text) name their target as the SDK does, and
    the events are batched as the SDK sends them. What is not converted, unknown or
    malformed is counted on stderr (and in --report), never fatal.
    """
    try:
        requests, report = rrweb_import.import_recordings(recordings, device=device,
                                                          mappings=mappings)
    except rrweb_import.RecordingError as exc:
        raise Unavailable(str(exc)) from None
    lines = "".join(rrweb_import.jsonl(requests))
    if str(out) == "-":
        click.echo(lines, nl=False)
    else:
        out.write_text(lines)
    if report_path is not None:
        report_path.write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    click.echo(report.summary(), err=True)
