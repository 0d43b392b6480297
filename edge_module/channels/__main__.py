"""`python -m edge_module.channels list|requeue [--state-dir DIR]`: the deliveries an edge
set aside (refused, gave up, expired), and sending them again once the receiver is fixed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .outbox import Outbox, OutboxError


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
        outbox = Outbox(path, create=False)  # another SQLite file is not made an outbox
        if args.command == "list":
            for record, reason in outbox.set_aside_records():  # a str: a body not JSON
                print(json.dumps({"reason": reason, "record": record}, ensure_ascii=False))
            return 0
        moved = outbox.requeue(int(time.time() * 1000))
    except OutboxError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{moved} delivery record(s) will be sent again by the running edge")
    return 0


if __name__ == "__main__":
    sys.exit(main())
