"""The control plane's HTTP server: waitress, bounded against slow and idle clients.

waitress's own timeout counts only silence: a client sending one header byte every few
seconds held its connection for ever, and at its connection limit (100 by default)
waitress stops accepting, so a hundred such sockets, no token needed, stalled the edges'
telemetry, the publishers and the console. Here a request must arrive whole, head and
body, within CONTROL_REQUEST_TIMEOUT_S of its first byte (a connection's first request,
of its opening), else its connection is closed, and empty requests (bare CRLFs) do not
stop that clock; an idle connection is closed after CONTROL_IDLE_TIMEOUT_S; one client address holds at most
CONTROL_MAX_CONNECTIONS_PER_CLIENT connections, and the server
CONTROL_MAX_CONNECTIONS (poll, not select, so past 1,024 descriptors); and a response its
client stops reading is dropped by the kernel after the request timeout
(TCP_USER_TIMEOUT), freeing the thread that writes it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server

from edge_module.http.open_files import raise_open_files_limit

CLEANUP_INTERVAL_S = 1  # how often waitress looks for idle connections (their precision)


class _NotingParser(HTTPRequestParser):
    """waitress's request parser, telling its connection when a whole request with content
    is in (a bare CRLF also completes a request, an empty one)."""

    def __init__(self, adj: Any, on_whole: Any) -> None:
        super().__init__(adj)
        self._on_whole = on_whole

    def received(self, data: bytes) -> int:
        taken = super().received(data)
        if self.completed and not self.empty:
            self._on_whole()
        return taken


class DeadlineChannel(HTTPChannel):
    """A request must arrive whole `request_timeout_s` after its first byte (or after the
    connection opened, for its first), and a client holds at most `per_client`
    connections at once. Empty requests (bare CRLFs) do not stop the clock: a re-review
    kept a thousand connections, and the server, with a CRLF every 10 s. While a request is
    answered, its answer still being sent included, there is no clock (a steady reader of
    a large answer was cut), and silence after an answer is the idle timeout's. asyncore
    asks every channel `readable()` at each turn of the loop (at least once a second):
    that is where an overdue one is marked to close."""

    request_timeout_s = 30.0
    per_client = 0  # 0: no bound (behind a proxy, every connection is the proxy's)
    clients: dict[str, int] = {}  # connections held per client address (one server's)
    clients_lock = threading.Lock()
    _client: str | None = None  # its address while counted

    def __init__(self, server: Any, sock: socket.socket, addr: Any, *args: Any,
                 **kwargs: Any) -> None:
        super().__init__(server, sock, addr, *args, **kwargs)
        self.parser_class = lambda adj: _NotingParser(adj, self._whole_request)
        self._since: float | None = time.monotonic()  # the request arriving began then
        self._serving = False  # a whole request is being answered
        self._client = str(addr[0]) if isinstance(addr, tuple) and addr else ""
        with self.clients_lock:
            held = self.clients.get(self._client, 0) + 1
            self.clients[self._client] = held
        if self.per_client and held > self.per_client:
            self.will_close = True  # closed at the loop's next turn, unread
        option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux
        if option is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, int(self.request_timeout_s * 1000))
            except OSError:  # not every kernel takes it: the idle timeout still applies
                pass

    def _whole_request(self) -> None:
        self._since, self._serving = None, True

    def received(self, data: bytes) -> bool:
        if data and self._since is None and not self._serving:
            self._since = time.monotonic()  # the next request's first byte
        return super().received(data)

    def readable(self) -> bool:
        if self._serving:
            if not self.requests and not self.total_outbufs_len:  # answered, all sent
                self._serving = False
        elif self._since is not None and time.monotonic() - self._since > self.request_timeout_s:
            self.will_close = True  # writable() is now true: handle_write closes it
            return False
        return super().readable()

    def del_channel(self, map: Any = None) -> None:  # noqa: A002 - waitress's name
        """Every way a channel closes goes through here (waitress calls the dispatcher's
        close() directly, never this class's)."""
        if self._client is not None:
            with self.clients_lock:
                held = self.clients.pop(self._client, 0) - 1
                if held > 0:
                    self.clients[self._client] = held
            self._client = None
        super().del_channel(map)


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
                   {"request_timeout_s": float(app.config["REQUEST_TIMEOUT_S"]),
                    "per_client": int(app.config["MAX_CONNECTIONS_PER_CLIENT"]),
                    "clients": {}, "clients_lock": threading.Lock()})
    for listener in list(sockets.values()):
        listener.channel_class = channel
    return server
