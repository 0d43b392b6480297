"""The waitress server: pure Python, one event loop thread and `threads` worker threads
running the WSGI app (`EdgeApp.__call__`). waitress reads a body whole before a thread runs
the app, so a slow body holds no decision thread; it runs one worker process."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from ..host.config import EdgeConfig
from ..host.edge_host import EdgeHost, settle_heap

log = logging.getLogger("edge.host")


def serve_waitress(config: EdgeConfig) -> None:
    """Serve until SIGTERM (drain, then stop) or Ctrl-C."""
    from waitress.server import create_server

    host = EdgeHost.build(config)
    settle_heap()
    # A channel that sends nothing for the header timeout is closed. Bodies up to the
    # discard bound reach the app, whose 413 is JSON with the CORS headers a page needs to
    # read it (waitress's own is plain text); as under granian, the excess is dropped.
    server = create_server(host.app, host=config.host, port=config.port, threads=config.threads,
                           ident="edge-host",
                           max_request_body_size=max(config.max_body_bytes,
                                                     config.max_discard_bytes),
                           connection_limit=config.max_connections,
                           channel_timeout=config.header_timeout_s)

    def drain(signum: int, _frame: object) -> None:
        """SIGTERM: stop accepting, let in-flight decisions finish, then stop the loop."""
        log.info("signal %s: draining (at most %.0f s)", signum, config.drain_timeout_s)
        host.app.draining = True
        server.accepting = False  # the loop stops polling the listening socket

        def finish() -> None:
            deadline = time.monotonic() + config.drain_timeout_s
            while host.app.pending and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)  # let the loop flush the last responses
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=finish, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, drain)
    # A process started in the background by a shell inherits SIGINT ignored; Ctrl-C (and
    # the end of a drain) must still stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    log.info("edge host %s on http://%s:%s (revision %s)", host.app.edge_id, config.host,
             server.effective_port, host.sync.status.revision)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        host.close()
        log.info("edge host stopped")
