"""The `trigger-engine` command group: its exit codes, the one place errors become messages,
and the options and openers the commands share."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edge_module.distribution.edge_store import EdgeStore, StoreError, open_store

from .. import config as config_module
from ..distribution import publishing
from ..distribution.keys import KeyRing, KeyRingError
from ..rulepack import RulePackError

EXIT_FINDINGS = 1
EXIT_USAGE = 2


class Unavailable(click.ClickException):
    """Something outside the packs is missing or unreachable (a store, an edge, a file)."""

    exit_code = EXIT_USAGE


def exit_on_findings(found: bool) -> None:
    """Exit 1 when a check found something, for scripts."""
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


def open_edge_store(store_dir: str | None) -> EdgeStore:
    """The edge store named by --store, else by the configuration."""
    config = config_module.load()
    return open_store(store_dir or config["STORE_DIR"], config["S3_ENDPOINT_URL"] or None)


def key_ring(data_dir: str | None = None) -> KeyRing:
    """The signing keys of the data folder named by --data-dir, else by the configuration."""
    config = config_module.load({"DATA_DIR": data_dir} if data_dir else None)
    return KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"])


DATA_DIR = click.option("--data-dir", "--registry", "data_dir", envvar="CONTROL_DATA_DIR",
                        metavar="DIR",
                        help="The control plane's data folder: the pack registry (DIR/packs), "
                             "keys (DIR/keys unless CONTROL_KEYS_DIR), telemetry "
                             "[env CONTROL_DATA_DIR; default .var/control; --registry is an "
                             "older name].")



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


def open_telemetry(data_dir: str | None) -> Any:
    """The telemetry store of the data folder; Unavailable before any telemetry arrived."""
    from control_plane.telemetry.telemetry_store import TelemetryStore

    root = Path(data_dir or config_module.load()["DATA_DIR"])
    path = root / "telemetry.sqlite3"
    if not path.exists():
        raise Unavailable(f"no telemetry yet in {root} (edges send it to the running "
                          "control plane; --data-dir names another data folder)")
    return TelemetryStore(path)
