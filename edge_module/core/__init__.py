"""The decision core: standard library only, so it runs unchanged inside the component."""

from .api import decide_json, error_json
from .engine import decide
from .errors import BatchTooLarge, DecisionError, SnapshotError
from .snapshot import Snapshot, load_snapshot

__all__ = [
    "BatchTooLarge",
    "DecisionError",
    "Snapshot",
    "SnapshotError",
    "decide",
    "decide_json",
    "error_json",
    "load_snapshot",
]
