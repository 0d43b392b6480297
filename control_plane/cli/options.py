"""The options and openers the `trigger-engine` commands share: which packs, which store,
which data folder, and how to open each."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from edge_module.distribution.edge_store import EdgeStore, open_store

from .. import config as config_module
from ..distribution.keys import KeyRing
from ..distribution.manifest_trust import LEDGER_FILE, Ledger, ManifestKeys, VouchedStore
from .group import Unavailable


class OutputFile(click.Path):
    """A file a command will write: its folder must exist now, not when the command has
    done its work (an evaluation ran to the end, or one of two outputs was written, before
    a missing folder was noticed)."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        path = super().convert(value, param, ctx)
        folder = Path(path).parent
        if not folder.is_dir():
            self.fail(f"{path}: its folder {folder} does not exist", param, ctx)
        return path


OUTPUT = OutputFile()

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


def open_edge_store(store_dir: str | None, data_dir: str | None = None) -> EdgeStore:
    """The edge store named by --store, else by the configuration; its manifest is read
    as far as the keys and the ledger of the data folder (--data-dir, else the
    configuration's) vouch for it (`manifest_trust`)."""
    config = config_module.load()
    keys = config_module.load({"DATA_DIR": data_dir} if data_dir else None)
    return VouchedStore(open_store(store_dir or config["STORE_DIR"],
                                   config["S3_ENDPOINT_URL"] or None),
                        ManifestKeys.of_ring(keys["KEYS_DIR"], keys["TRUSTED_KEYS"]),
                        Ledger(Path(keys["DATA_DIR"]) / LEDGER_FILE))


def key_ring(data_dir: str | None = None) -> KeyRing:
    """The signing keys of the data folder named by --data-dir, else by the configuration."""
    config = config_module.load({"DATA_DIR": data_dir} if data_dir else None)
    return KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"])


def open_telemetry(data_dir: str | None) -> Any:
    """The telemetry store of the data folder; Unavailable before any telemetry arrived."""
    from control_plane.telemetry.telemetry_store import TelemetryStore

    root = Path(data_dir or config_module.load()["DATA_DIR"])
    path = root / "telemetry.sqlite3"
    if not path.exists():
        raise Unavailable(f"no telemetry yet in {root} (edges send it to the running "
                          "control plane; --data-dir names another data folder)")
    return TelemetryStore(path)


def utc_time(ms: int) -> str:
    """A moment in epoch milliseconds as people read it: 2026-12-07 15:30:00 UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
