"""Who published or rolled back, and when: the control plane's own audit trail.

A JSON-lines file in the data folder (`DATA_DIR/changes.jsonl`), one line per change that
took effect, naming the manifest entry it made by that entry's `sequence` (unique and
increasing). It is kept beside the manifest, not in it: the manifest is signed and read by
every edge, and who clicked a button is none of the edges' business.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .publishing import Published

FILE_NAME = "changes.jsonl"
API_ACTOR = "API (publisher token)"

_append_lock = threading.Lock()


@dataclass(frozen=True)
class Change:
    action: str  # "publish" or "rollback"
    revision: int  # the revision served after the change
    sequence: int | None  # the manifest entry the change made
    at_ms: int
    by: str  # a console user's name, or API_ACTOR
    role: str  # "publisher"
    via: str  # "console" or "api"
    rollback_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, action: str, entry: Published, by: str, role: str, via: str) -> Change:
        """The change that made manifest entry `entry`."""
        return cls(action, entry.revision, entry.sequence, entry.published_ms, by, role, via,
                   entry.rollback_from)


def log_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / FILE_NAME


def record(data_dir: str | os.PathLike[str], change: Change) -> None:
    """Append `change` (one line, written with a single append so lines never interleave)."""
    path = log_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(change.to_dict(), separators=(",", ":")) + "\n").encode()
    with _append_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def changes(data_dir: str | os.PathLike[str]) -> list[Change]:
    """Every recorded change, oldest first; a line that does not read (torn by a crash,
    edited by hand) is skipped rather than hiding the rest."""
    path = log_path(data_dir)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(Change(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return out


def by_sequence(data_dir: str | os.PathLike[str]) -> dict[int, Change]:
    """The recorded change behind each manifest entry, by the entry's sequence."""
    return {c.sequence: c for c in changes(data_dir) if c.sequence is not None}
