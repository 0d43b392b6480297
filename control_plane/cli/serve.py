"""`trigger-engine serve`: the control plane's HTTP API under waitress (`http_server.py`),
with the recalibration and telemetry retention schedules."""

from __future__ import annotations

import click

from .group import Unavailable, cli


@cli.command()
def serve() -> None:
    """Run the control plane's HTTP API on CONTROL_HOST:CONTROL_PORT."""
    import logging

    from ..app import create_app
    from ..http_server import make_server

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import signal

    from control_plane.learning.scheduler import RecalibrationScheduler
    from control_plane.telemetry.retention import RetentionScheduler

    app = create_app()
    RecalibrationScheduler(app).start()  # CONTROL_RECALIBRATE_INTERVAL_S; 0 = off
    RetentionScheduler(app).start()  # CONTROL_TELEMETRY_RETENTION_DAYS; 0 = keep all
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
        server = make_server(app, app.config["HOST"], int(app.config["PORT"]))
    except ValueError as exc:  # waitress: a host name that does not resolve
        raise Unavailable(f"CONTROL_HOST={app.config['HOST']!r}, CONTROL_PORT="
                          f"{app.config['PORT']}: {exc}") from None
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
