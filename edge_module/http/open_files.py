"""The open-files limit a server raises so it can hold the connections it promises."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files_limit(wanted: int) -> None:
    """Let the process hold `wanted` connections (and its files): raise the soft limit on
    open files toward the hard one (a common soft default, 1024, is a cheap way to refuse
    every visitor for whoever opens a thousand idle connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open files limit raised from %d to %d", soft, target)
