"""The control plane's HTTP server: waitress, bounded against slow and idle clients.

waitress's own timeout counts only silence: a client sending one header byte every few
seconds held its connection for ever, and at its connection limit (100 by default)
waitress stops accepting, so a hundred such sockets, no token needed, stalled the edges'
telemetry, the publishers and the console. Here a request must arrive whole, head and
body, within CONTROL_REQUEST_TIMEOUT_S of its first byte (its connection is closed when
it does not); an idle connection is closed after CONTROL_IDLE_TIMEOUT_S; the server takes
CONTROL_MAX_CONNECTIONS at once (poll, not select, so past 1,024 descriptors); and a
response its client stops reading is dropped by the kernel after the request timeout
(TCP_USER_TIMEOUT), freeing the thread that writes it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import create_server

from edge_module.http.open_files import raise_open_files_limit

CLEANUP_INTERVAL_S = 1  # how often waitress looks for idle connections (their precision)


class DeadlineChannel(HTTPChannel):
    """A connection whose request in progress must be whole `request_timeout_s` after its
    first byte. asyncore asks every channel `readable()` at each turn of the loop (at least
    once a second), so that is where an overdue one is marked to close."""

    request_timeout_s = 30.0
    _request_since: float | None = None

    def __init__(self, server: Any, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, sock, *args, **kwargs)
        option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux
        if option is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, int(self.request_timeout_s * 1000))
            except OSError:  # not every kernel takes it: the idle timeout still applies
                pass

    def received(self, data: bytes) -> bool:
        partial = self.request
        taken = super().received(data)
        if self.request is None:  # every request it held is complete
            self._request_since = None
        elif self.request is not partial:  # a new one began in this data
            self._request_since = time.monotonic()
        return taken

    def readable(self) -> bool:
        since = self._request_since
        if since is not None and time.monotonic() - since > self.request_timeout_s:
            self.will_close = True  # writable() is now true: handle_write closes it
            self._request_since = None
            return False
        return super().readable()


def server_options(app: Any) -> dict[str, Any]:
    """waitress's settings for the control plane. waitress buffers a body (to disk past
    512 KiB) before Flask or the token check sees it: bounded here at four times
    CONTROL_MAX_REQUEST_BYTES, a body far over the limit is refused as its head arrives
    (its client may see a reset), not after 1 GiB; one up to that is read and answered
    Flask's JSON 413, which every client can read."""
    config = app.config
    return {"threads": int(config["THREADS"]), "ident": "control-plane",
            "max_request_body_size": 4 * int(config["MAX_REQUEST_BYTES"]),
            "connection_limit": int(config["MAX_CONNECTIONS"]),
            "channel_timeout": int(config["IDLE_TIMEOUT_S"]),
            "cleanup_interval": CLEANUP_INTERVAL_S, "asyncore_use_poll": True}


def make_server(app: Any, host: str, port: int) -> Any:
    """The control plane's waitress server on host:port (port 0: any free one), every
    listening socket of it (a host name may give several) with the deadline channel."""
    raise_open_files_limit(int(app.config["MAX_CONNECTIONS"]) + 1024)
    sockets: dict[int, Any] = {}
    server = create_server(app, map=sockets, host=host, port=port, **server_options(app))
    channel = type("DeadlineChannel", (DeadlineChannel,),
                   {"request_timeout_s": float(app.config["REQUEST_TIMEOUT_S"])})
    for listener in list(sockets.values()):
        listener.channel_class = channel
    return server
