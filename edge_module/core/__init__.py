"""The decision core: standard library only, so it runs unchanged inside the component."""

from .api import decide_json, decide_packed, decide_parts, error_json, pack, pack_envelope, unpack
from .engine import decide
from .errors import BatchTooLarge, DecisionError, SnapshotError
from .snapshot import Snapshot
from .snapshot_loader import load_snapshot

__all__ = [
    "BatchTooLarge",
    "DecisionError",
    "Snapshot",
    "SnapshotError",
    "decide",
    "decide_json",
    "decide_packed",
    "decide_parts",
    "error_json",
    "load_snapshot",
    "pack",
    "pack_envelope",
    "unpack",
]
