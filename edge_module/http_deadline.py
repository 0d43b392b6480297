"""One deadline over an outgoing HTTP exchange (http.client), for the edge's own calls:
the telemetry shipper's and the webhook sink's.

A socket's timeout bounds each step (each address tried, each read), never the call: a
peer trickling its status line, headers or answer a byte at a time, or sending
'100 Continue' again and again, held a caller for hours. Here connecting has the whole
deadline, and what is left of it then bounds the rest: when it runs out, the socket is shut
down and the blocked read returns at once.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def connected_within(conn: http.client.HTTPConnection, seconds: float) -> Iterator[None]:
    """Connect `conn` (its own timeout bounds that), then run the body of the `with` within
    what is left of `seconds`; TimeoutError if connecting took them all."""
    started = time.monotonic()
    conn.connect()
    left = seconds - (time.monotonic() - started)
    if left <= 0:
        raise TimeoutError(f"connecting took the whole {seconds:g} s deadline")
    deadline = threading.Timer(left, _cut, (conn,))
    deadline.daemon = True
    deadline.start()
    try:
        yield
    finally:
        deadline.cancel()


def _cut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError:
            pass
