"""`trigger-engine`: rule packs from the command line, for people and for scripts.

The group is in `group`, the options its commands share in `options`; each module beside
them adds one family of commands (authoring, distribution, importing, learning, serve)."""

from __future__ import annotations

from . import authoring, distribution, importing, learning, serve
from .group import EXIT_FINDINGS, EXIT_USAGE, Unavailable, cli

__all__ = ["EXIT_FINDINGS", "EXIT_USAGE", "Unavailable", "cli", "main"]


def main() -> None:
    cli(prog_name="trigger-engine")
