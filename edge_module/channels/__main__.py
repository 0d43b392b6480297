"""`python -m edge_module.channels list|requeue [--state-dir DIR]`: the deliveries an edge
set aside (refused, gave up, expired), and sending them again once the receiver is fixed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .outbox import Limits, Outbox, OutboxError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_module.channels",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("list", "requeue"))
    parser.add_argument("--state-dir", type=Path, default=Path(".var/edge"),
                        help="the edge's EDGE_STATE_DIR (default: .var/edge)")
    args = parser.parse_args(argv)
    path = args.state_dir / "channels.sqlite3"
    if not path.exists():
        print(f"no channel outbox at {path}", file=sys.stderr)
        return 1
    try:
        if args.command == "list":  # read only: never the write lock a decision waits for
            outbox = Outbox(path, create=False, read_only=True)
            for record, reason in outbox.set_aside_records():  # a str: a body not JSON
                print(json.dumps({"reason": reason, "record": record}, ensure_ascii=False))
            return 0
        outbox = Outbox(path, create=False, open_wait_s=30.0)  # not another SQLite file
        moved, kept = outbox.requeue(int(time.time() * 1000), _limits())
    except (OutboxError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{moved} delivery record(s) will be sent again by the running edge")
    if kept:
        print(f"{sum(kept.values())} delivery record(s) stay set aside, the outbox's bounds "
              "leave them no room: " + ", ".join(f"{n} {why}" for why, n in sorted(kept.items()))
              + " (EDGE_CHANNEL_MAX_OUTBOX, EDGE_CHANNEL_ANONYMOUS_SHARE, "
              "EDGE_CHANNEL_MAX_PER_SESSION, EDGE_CHANNEL_MAX_PER_RECIPIENT); requeue again "
              "once the outbox has room", file=sys.stderr)
    return 0


def _limits() -> Limits:
    """The bounds a decision's records meet, from the edge's settings (the environment)."""
    from ..host.config import ConfigError, EdgeConfig
    from .dispatcher import limits

    try:
        config = EdgeConfig.from_env()
    except ConfigError as exc:
        raise ValueError(f"the edge's settings, for the outbox's bounds: {exc}") from None
    return limits(config.channel_max_outbox, config.channel_anonymous_share,
                  config.channel_max_per_session, config.channel_max_per_recipient)

if __name__ == "__main__":
    sys.exit(main())
