"""`trigger-engine serve`: the control plane's HTTP API under waitress, with the
recalibration scheduler."""

from __future__ import annotations

from typing import Any

import click

from .group import Unavailable, cli


def server_options(app: Any) -> dict[str, Any]:
    """waitress's settings for the control plane (tests serve it with the same ones).
    waitress buffers a body (to disk past 512 KiB) before Flask or the token check sees
    it: bounded here at four times CONTROL_MAX_REQUEST_BYTES, a body far over the limit is
    refused as its head arrives (its client may see a reset), not after 1 GiB; one up to
    that is read and answered Flask's JSON 413, which every client can read."""
    return {"threads": 4, "ident": "control-plane",
            "max_request_body_size": 4 * int(app.config["MAX_REQUEST_BYTES"])}


@cli.command()
def serve() -> None:
    """Run the control plane's HTTP API on CONTROL_HOST:CONTROL_PORT."""
    import logging

    from waitress import serve as waitress_serve

    from ..app import create_app

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import signal

    from control_plane.learning.scheduler import RecalibrationScheduler

    app = create_app()
    RecalibrationScheduler(app).start()  # CONTROL_RECALIBRATE_INTERVAL_S; 0 = off
    click.echo(f"control plane on http://{app.config['HOST']}:{app.config['PORT']}", err=True)
    # Started in the background by a shell, a process inherits SIGINT ignored: Ctrl-C and
    # SIGTERM must still stop it (waitress ends on KeyboardInterrupt). Only the first one:
    # Ctrl-C in `./build.sh up` brings SIGINT and then SIGTERM, and a second interrupt in
    # the middle of the shutdown (atexit, thread joins) left the process hanging.
    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        waitress_serve(app, host=app.config["HOST"], port=int(app.config["PORT"]),
                       **server_options(app))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:  # waitress: a host name that does not resolve
        raise Unavailable(f"CONTROL_HOST={app.config['HOST']!r}, CONTROL_PORT="
                          f"{app.config['PORT']}: {exc}") from None
