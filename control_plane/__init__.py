"""The control plane: rule packs in, validated snapshots out, to the edge store."""

from .app import create_app

__all__ = ["create_app"]
