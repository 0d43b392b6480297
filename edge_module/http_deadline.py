"""One deadline over an outgoing HTTP exchange (http.client), for the edge's own calls:
the telemetry shipper's, the status reporter's and the webhook sink's (`post`).

A socket's timeout bounds each step (each address tried, each read), never the call: a
peer trickling its status line, headers or answer a byte at a time, or sending
'100 Continue' again and again, held a caller for hours. Here connecting has the whole
deadline, and what is left of it then bounds the rest: when it runs out, the socket is shut
down and the blocked read returns at once.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple


class Answer(NamedTuple):
    status: int
    location: str | None
    body: bytes  # a 2xx's body, at most `read_limit` bytes; empty for any other status
    retry_after: float | None = None  # seconds the peer asked for (Retry-After), if any


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Retry-After's delay in seconds (RFC 9110: delay-seconds or an HTTP-date); None when
    absent or unreadable. The caller bounds it: a peer asking a year is not obeyed."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(min(int(value[:12]), 1 << 32))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP-date is always GMT; a date without a zone is not one
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float,
         read_limit: int = 64 * 1024) -> Answer:
    """POST `body` to `url` and read the answer, all within `timeout_s`. A redirect is
    never followed (urllib's urlopen followed a 301 to a POST as a GET, to wherever it
    pointed). Raises OSError (TimeoutError included) or http.client.HTTPException."""
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else \
        http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout_s)
    try:
        with connected_within(conn, timeout_s) as cut:
            conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query
                                                         else ""),
                         body=body, headers=dict(headers))
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                if cut.is_set():  # the shut socket reads as the peer hanging up: it did not
                    raise TimeoutError(f"no answer within the {timeout_s:g} s deadline "
                                       f"({type(exc).__name__})") from exc
                raise
            if cut.is_set():  # http.client takes headers cut short as complete
                raise TimeoutError(f"no whole answer head within the {timeout_s:g} s "
                                   "deadline")
            answer = bytearray()
            if 200 <= resp.status < 300:  # the status decides; a body cut short is partial
                try:
                    while len(answer) < read_limit:
                        piece = resp.read(read_limit - len(answer))
                        if not piece:
                            break
                        answer += piece
                except http.client.IncompleteRead as exc:
                    answer += exc.partial
                except OSError:
                    # a reset instead of an end, as when the deadline has shut the socket
                    # and the peer's next bytes are answered with one (ECONNRESET on the
                    # read after): still a 2xx cut short, not a failed exchange (it was
                    # retried, and delivered twice)
                    pass
            return Answer(resp.status, resp.getheader("Location"), bytes(answer),
                          retry_after_s(resp.getheader("Retry-After")))
    finally:
        conn.close()


@contextmanager
def connected_within(conn: http.client.HTTPConnection,
                     seconds: float) -> Iterator[threading.Event]:
    """Connect `conn` (its own timeout bounds that), then run the body of the `with` within
    what is left of `seconds` (TimeoutError if connecting took them all). The event it
    gives is set once the deadline has cut the exchange: what was read by then may look
    whole (http.client takes headers cut short by the shut socket as complete)."""
    started = time.monotonic()
    conn.connect()
    left = seconds - (time.monotonic() - started)
    if left <= 0:
        raise TimeoutError(f"connecting took the whole {seconds:g} s deadline")
    cut = threading.Event()
    deadline = threading.Timer(left, _cut, (conn, cut))
    deadline.daemon = True
    deadline.start()
    try:
        yield cut
    finally:
        deadline.cancel()


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError:
            pass
