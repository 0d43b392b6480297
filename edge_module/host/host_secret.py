"""Secrets a host makes for itself once and keeps in its state folder (the telemetry salt,
the outcome-token key), shared by its worker processes."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


def host_secret(path: Path, nbytes: int) -> str:
    """The hex secret in `path`, made (`nbytes` random bytes) if it is not there yet.

    Worker processes may start together: each writes its own temporary file and links it
    into place; the first link wins and every process reads that secret."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(nbytes))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: last writer wins
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path.read_text().strip()
