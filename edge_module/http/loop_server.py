"""The loop server (EDGE_SERVER=loop, the default): HTTP/1.1 parsed by httptools (llhttp,
Node.js's parser) on a uvloop event loop in the worker process itself, serving the same
RSGI application as granian (`granian_server.RsgiEdge`).

Why a second transport: under granian a request crosses threads four times before its
answer leaves (the Rust runtime hands the head to the loop, the body read goes back to the
runtime and returns to the loop, the loop hands the request to a decision thread, the answer
goes back to the runtime); on an idle edge each crossing wakes a sleeping core, and a
sequential client waited 75-140 us more per answer than under granian's WSGI interface
(docs/performance.md, History). Here the loop that reads the bytes parses them: a body that
came with its head is complete when the application asks for it, the request crosses to a
decision thread once, and the thread writes its answer to the socket itself (under the
connection's lock, to a duplicate of the socket that only the loop closes, so an answer
never reaches a connection that replaced a closed one). Under load the loop decides too,
as under granian, but while it decides nothing is read: the decision threads keep up to
QUEUE_AHEAD requests queued so they never wait for it, and the loop decides at most one
request between two polls of its sockets (`RsgiEdge.loop_turn`), so connections whose
requests are parsed ahead cannot keep it from reading everyone else's.

The guarantees are granian's under RsgiEdge: a head must arrive within EDGE_HEADER_TIMEOUT_S
of the connection's opening or of the previous answer (else the connection is closed), a
body within EDGE_BODY_TIMEOUT_S (408; RsgiEdge's sweep). Here besides: heads are bounded by
the bytes received (64 KiB) and by 100 fields (431); a request starts only once the previous
answer has left whole (the transport's high-water mark is 0, so it says when it holds
bytes), so answers never interleave and a client that does not read meets back-pressure;
a connection parses at most MAX_PIPELINED requests ahead of its answers, the worker about
EDGE_MAX_PENDING for all its connections together (`LoopServer.max_ahead`; past it, a
connection parses one PIPELINED_SLICE more only when its queue is empty), and a
connection holds at most READ_AHEAD body bytes the application has not asked for (its
reader woken once that much is held or the body is complete, not per chunk); a chunked
body may have FREE_CHUNKS chunks and one more per CHUNK_BYTES of body (400
too_many_chunks); request trailers are refused
(400), HTTP versions other than 1.0 and 1.1 too (505); an Upgrade offer is ignored;
connections beyond EDGE_MAX_CONNECTIONS (fewer where the open-files limit says so:
FD_RESERVE) are closed at once.
EDGE_WORKERS=N forks N such processes on one listening socket (`_supervise`)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
from granian.rsgi import ProtocolClosed

from ..host.config import EdgeConfig
from .app import error_body
from .granian_server import BodyRefused

log = logging.getLogger("edge.host")

MAX_HEAD_BYTES = 64 * 1024  # request line and header fields together
MAX_HEADER_FIELDS = 100
READ_AHEAD = 64 * 1024  # body bytes held for the application before the socket is paused
SWEEP_S = 0.25
# decisions queued for the decision threads before the loop decides one itself: while the
# loop decides, nothing is read, so the threads keep work at hand (measured: 0 -> 2 took the
# wrk maximum from 4,000 to 4,400-4,500 decisions/s; docs/performance.md, History)
QUEUE_AHEAD = 2
MAX_PIPELINED = 32  # requests parsed ahead of the one being answered (then: back-pressure)
PIPELINED_SLICE = 2048  # bytes of heads parsed at a time (bounds the overshoot of the above)
BODY_SLICE = 64 * 1024  # bytes of a body parsed at a time
# a chunked body's chunks: each costs Python calls on the loop, whatever its size (1-byte
# chunks cost 1.6 us a byte of body, 200 KB 0.3 s: a reviewer's 8 such senders held every
# visitor up to 1.9 s), so a body may have FREE_CHUNKS, then one more per CHUNK_BYTES it
# carries (its cost then bounded by its bytes, not by how it is cut); beyond, 400
FREE_CHUNKS = 1024
CHUNK_BYTES = 256
# descriptors a worker keeps beside its connections' (two each): files, and sockets to the
# session store, the control plane and the sinks (an idle worker with LMDB, metrics and a
# webhook sink holds about 40)
FD_RESERVE = 256

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Headers(dict):  # type: ignore[type-arg]
    """A request's header fields by lower-case name (a repeated field: its first value, as
    granian's `get` gives it); `all` keeps each, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.all: list[tuple[str, str]] = []


class Scope:
    __slots__ = ("headers", "http_version", "method", "path", "proto", "query_string")

    def __init__(self, method: str, path: str, query: str, headers: Headers,
                 version: str) -> None:
        self.proto = "http"
        self.method, self.path, self.query_string = method, path, query
        self.headers, self.http_version = headers, version


class Request:
    """One request: its scope, and the RSGI protocol object the application reads its body
    from and answers through (`response_bytes` may be called from any thread)."""

    __slots__ = ("answered", "broken", "canned", "chunks", "complete", "conn", "continued",
                 "expects_continue", "fault", "flushed", "framing", "head_only", "held",
                 "keep_alive", "parts", "received", "scope", "started", "waiter", "whole")

    def __init__(self, conn: Connection, scope: Scope, keep_alive: bool) -> None:
        self.conn, self.scope, self.keep_alive = conn, scope, keep_alive
        self.head_only = scope.method == "HEAD"
        self.parts: deque[bytes] = deque()
        self.held = 0  # bytes in parts
        self.received = self.chunks = 0  # body bytes and chunks parsed so far
        self.fault: tuple[int, bytes] | None = None  # why the body was refused mid-way
        self.complete = self.broken = self.answered = self.started = False
        self.flushed = False  # the whole answer is in the socket (none of it left buffered)
        self.whole = False  # the application waits for the whole body (bounded by its route)
        self.expects_continue = scope.http_version == "1.1" and scope.headers.get(
            "expect", "").lower() == "100-continue"
        self.continued = False
        self.framing = b""  # the body's framing fields, for an Upgrade request (see below)
        self.canned: tuple[int, bytes] | None = None  # the answer of a refusal
        self.waiter: asyncio.Future[None] | None = None

    # -- the body, as the application reads it (on the loop) --------------------------------
    def __call__(self) -> Any:
        """The whole body: called only for a declared length within the route's limit (the
        application checks it first), so holding all of it is bounded."""
        self.whole = True
        return self._whole()

    async def _whole(self) -> bytes:
        while not self.complete:
            await self._wait()
        body = b"".join(self.parts)
        self.parts.clear()
        self.held = 0
        self.conn.resume()
        return body

    def __aiter__(self) -> Request:
        return self

    async def __anext__(self) -> bytes:
        """All the body held so far, as one piece (not a piece per chunk received: a body
        in 1-byte chunks would cost a step of the reader per byte)."""
        while not self.parts:
            if self.complete:
                if self.held == -1:
                    raise StopAsyncIteration
                self.held = -1  # the empty chunk that says the body ended, once
                return b""
            await self._wait()
        parts = self.parts
        chunk = parts.popleft() if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self.held = 0
        self.conn.resume()
        return chunk

    async def _wait(self) -> None:
        if self.broken:
            self._raise_broken()
        if self.expects_continue and not self.continued:
            # the body is asked for: the client waiting for this may send it now (hyper
            # sends it at the same moment)
            self.continued = True
            self.conn._write(_CONTINUE)
        self.waiter = waiter = self.conn.loop.create_future()
        self.conn.resume()
        try:
            await waiter
        finally:
            self.waiter = None
        if self.broken and not self.complete:
            self._raise_broken()

    def _raise_broken(self) -> None:
        if self.fault is not None:
            status, body = self.fault
            raise BodyRefused((status, body, [("Connection", "close")]))
        raise ProtocolClosed("the client closed the connection mid-body")

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the answer -------------------------------------------------------------------------
    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if self.answered:
            return
        self.answered = True
        keep = self.keep_alive and self.complete and not any(
            k == "connection" and v.lower() == "close" for k, v in headers)
        self.keep_alive = keep
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")),
                 _date_line()]
        for name, value in headers:
            if name != "connection":
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if status >= 200 and status not in (204, 304):
            lines.append(b"content-length: %d\r\n" % len(body))
        if not keep:
            lines.append(b"connection: close\r\n")
        elif self.scope.http_version == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        if not self.head_only and status not in (204, 304):
            lines.append(body)
        self.conn.send(b"".join(lines), self)


class Connection(asyncio.Protocol):
    """One client connection: parses what arrives, runs one request at a time (the next
    waits, with the socket paused, until the previous answer has left whole), enforces the
    head deadline and bounds."""

    def __init__(self, server: LoopServer) -> None:
        self.server, self.loop = server, server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.lock = threading.Lock()  # a thread's write against the loop's close
        self.fd = -1
        self.closed = False
        self.paused = False
        self.final = False  # no more requests are read on this connection
        # the transport holds bytes it could not send yet (its high-water mark is 0, so it
        # says so at once): a thread must not write past them, nor the next answer start
        self.write_blocked = False
        self.current: Request | None = None  # being parsed
        self.running: Request | None = None  # started, its answer not yet out whole
        self.queued: deque[Request] = deque()
        self.upgrading: Request | None = None  # an Upgrade request whose body llhttp skips
        self.continuing: Request | None = None  # its body, parsed after a made-up head
        self.head_deadline = server.loop.time() + server.config.header_timeout_s
        self.head_seen = 0  # bytes received since the last head ended (a head's bound)
        self.stash = b""  # received, not parsed yet: MAX_PIPELINED requests are waiting
        self.eof = False  # the client half-closed with requests in the stash
        self._reset_head()

    def _reset_head(self) -> None:
        self.url = b""
        self.head_bytes = 0
        self.headers = Headers()
        self.in_head = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        if len(server.connections) >= server.max_connections:
            transport.abort()
            self.closed = True
            return
        sock = transport.get_extra_info("socket")
        # the decision threads write to a duplicate of the socket, closed only here (under
        # the lock), so its number cannot be reused by another client's connection while a
        # thread still holds it
        try:
            self.fd = os.dup(sock.fileno()) if sock is not None else -1
        except OSError as exc:  # out of descriptors: this connection only is given up
            transport.abort()
            self.closed = True
            server.short_of_descriptors(exc)
            return
        server.connections.add(self)
        transport.set_write_buffer_limits(high=0)

    def connection_lost(self, exc: Exception | None) -> None:
        with self.lock:
            self.closed = True
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        self.server.connections.discard(self)
        for request in (self.current, self.running, *self.queued):
            if request is not None and not request.complete:
                request.broken = True
                request._wake()
        self.server.ahead -= len(self.queued)
        self.queued.clear()  # never started now
        # a decision under way finishes; its answer goes nowhere

    def data_received(self, data: bytes) -> None:
        if self.final:
            return
        if self.stash:  # requests read ahead are waiting: keep the order
            self.stash += data
            self.pause()
            return
        if self.in_head or self.current is None:
            # httptools holds a header field until it ends: bound the head by bytes
            # received, not by fields seen
            self.head_seen += len(data)
        # A pipelining client may send many requests in one read: heads are parsed in
        # slices, and once MAX_PIPELINED wait, the rest is kept unparsed with the socket
        # paused (the client feels TCP's back-pressure) until they have been answered.
        buf, at = memoryview(data), 0
        while at < len(buf) and not self.final:
            if self.queued and self.server.ahead >= self.server.max_ahead:
                # the worker holds its bound of requests parsed ahead (all connections'):
                # this one waits for its own answers, unread (see LoopServer.max_ahead)
                self.stash = bytes(buf[at:])
                self.pause()
                break
            step = self._slice()
            after_upgrade = self._feed(bytes(buf[at:at + step]))
            at += step
            if after_upgrade is not None:  # parse on with a fresh parser, not recursively
                buf, at = memoryview(after_upgrade + bytes(buf[at:])), 0
            if ((len(self.queued) >= MAX_PIPELINED
                 or (self.queued and self.server.ahead >= self.server.max_ahead))
                    and at < len(buf)):
                self.stash = bytes(buf[at:])
                self.pause()
                break
        if self.in_head and self.head_seen > MAX_HEAD_BYTES and not self.final:
            self._refuse(431, "head_too_large", f"request head over {MAX_HEAD_BYTES} bytes")

    def _slice(self) -> int:
        """How many bytes to parse next: heads PIPELINED_SLICE at a time, and a body with a
        length BODY_SLICE at a time but never past its end (a slice that ran on past it
        parsed the requests pipelined behind it too: 170 queued where MAX_PIPELINED is
        32); a chunked body, whose end is not known, as heads."""
        current = self.current
        if current is None or self.in_head:
            return PIPELINED_SLICE
        try:
            left = int(current.scope.headers.get("content-length", "")) - current.received
        except ValueError:
            return PIPELINED_SLICE
        return max(PIPELINED_SLICE, min(BODY_SLICE, left))

    def _unstash(self) -> None:
        """Parse what a pipelining client sent ahead, once there is room for it."""
        stash, self.stash = self.stash, b""
        if stash and not self.closed:
            self.data_received(stash)
            if self.eof and not self.stash:  # the client half-closed after sending these
                self._close_after_current()
            self.resume()

    def _feed(self, data: bytes) -> bytes | None:
        """Parse `data`; after an Upgrade offer, the bytes still to parse (with a fresh
        parser), else None."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            return self._after_upgrade(data[exc.args[0]:] if exc.args else b"")
        except _Refused:
            pass
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Refused):
                raise
        except httptools.HttpParserError as exc:
            self._refuse(400, "invalid_request", f"malformed HTTP request: {exc}")
        return None

    def _after_upgrade(self, rest: bytes) -> bytes | None:
        """llhttp stops at the head of a request that offers an Upgrade (h2c from `curl
        --http2`, websocket) and treats what follows as the new protocol's. The edge speaks
        HTTP/1.1 only: the offer is ignored, as granian does. A fresh parser reads on (the
        bytes returned); a body the request announced is parsed after a made-up head that
        carries the request's own framing fields, so it is framed exactly as it would be
        without the offer."""
        request, self.upgrading = self.upgrading, None
        self.parser = httptools.HttpRequestParser(self)
        if request is None or request.scope.method == "CONNECT":  # a tunnel: not for us
            self._close_after_current()
            return None
        if request.framing:
            self.continuing = request
            self.current = None  # until the made-up head has been parsed
            rest = b"POST / HTTP/1.1\r\n" + request.framing + b"\r\n" + rest
        return rest

    def eof_received(self) -> bool | None:
        # a half-close: the client sends no more; requests already complete are answered
        if self.current is not None and not self.current.complete:
            self.current.broken = True
            self.current._wake()
        if self.running is None and not self.queued:
            return False  # nothing to answer: close
        if self.stash:  # requests still unparsed are answered too (`_unstash`)
            self.eof = True
            return True
        self._close_after_current()
        return True

    def pause_writing(self) -> None:
        self.write_blocked = True

    def resume_writing(self) -> None:
        self.write_blocked = False
        running = self.running
        if running is not None and running.answered and not running.flushed:
            running.flushed = True
            self._advance()

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        # the head deadline runs from the connection's opening or the previous answer
        self._reset_head()
        self.in_head = self.continuing is None

    def on_url(self, url: bytes) -> None:
        if self.continuing is not None:
            return
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, "head_too_large", f"request head over {MAX_HEAD_BYTES} bytes")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.continuing is not None:
            if self.current is self.continuing:  # past the made-up head: a trailer
                self._refuse(400, "invalid_request", "request trailers are not accepted")
                raise _Refused
            return
        if not self.in_head:  # a trailer field after a chunked body
            self._refuse(400, "invalid_request", "request trailers are not accepted")
            raise _Refused
        self.head_bytes += len(name) + len(value) + 4
        headers = self.headers
        if self.head_bytes > MAX_HEAD_BYTES or len(headers.all) >= MAX_HEADER_FIELDS:
            self._refuse(431, "head_too_large", f"request head over {MAX_HEAD_BYTES} bytes "
                         f"or {MAX_HEADER_FIELDS} fields")
            raise _Refused
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers.all.append((key, text))
        if key not in headers:
            headers[key] = text

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_seen = 0
        if self.continuing is not None:  # the made-up head: the body is the request's
            self.current = self.continuing
            return
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.0", "1.1"):
            self._refuse(505, "http_version_not_supported", "HTTP/1.1 or HTTP/1.0 only")
            raise _Refused
        codings = [v for k, v in self.headers.all if k == "transfer-encoding"]
        if codings and [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
            # llhttp would refuse one not ending in chunked only mid-body (as a broken
            # body), and pass a gzip one on undecoded: refused here, before it is started
            self._refuse(400, "unsupported_transfer_coding", "Transfer-Encoding must be "
                         "chunked alone; send the body chunked or with a Content-Length")
            raise _Refused
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self._refuse(400, "invalid_request", "malformed request target")
            raise _Refused from None
        path = (url.path or b"/").decode("latin-1")
        if "%" in path:  # routed decoded, as granian does (/heal%74hz is /healthz)
            path = unquote(path, errors="replace")
        query = (url.query or b"").decode("latin-1")
        method = parser.get_method().decode("latin-1")
        scope = Scope(method, path, query, self.headers, version)
        request = Request(self, scope, parser.should_keep_alive())
        if parser.should_upgrade():
            self.upgrading = request
            if method == "CONNECT":
                request.keep_alive = False
            else:  # its own framing fields, as llhttp checked them above: never rewritten
                request.framing = b"".join(
                    b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in self.headers.all if k in ("transfer-encoding", "content-length"))
        self.current = request
        running = self.running
        if running is not None and running.flushed and not self.queued:
            self._advance()  # the previous answer is out; its task may still be ending
            if self.closed or self.final:
                raise _Refused
        if self.running is None and not self.queued:
            self._start(request)
        else:
            self.queued.append(request)
            self.server.ahead += 1
            self.pause()

    def on_chunk_header(self) -> None:
        request = self.current
        if request is None:
            return
        request.chunks += 1
        if request.chunks > FREE_CHUNKS + request.received // CHUNK_BYTES:
            message = (f"chunked request body in too many chunks: at most {FREE_CHUNKS}, "
                       f"then one per {CHUNK_BYTES} bytes of body; send larger chunks or "
                       "a Content-Length")
            request.fault = (400, error_body("too_many_chunks", message))
            self._refuse(400, "too_many_chunks", message)
            raise _Refused

    def on_body(self, body: bytes) -> None:
        # the reader is woken when the body is complete (`on_message_complete`) or when
        # READ_AHEAD is held, not for each piece: a body cut in tiny chunks costs no step
        # of the reader per chunk
        request = self.current
        if request is None:
            return
        request.parts.append(body)
        request.held += len(body)
        request.received += len(body)
        if request.held > READ_AHEAD and not request.whole:
            self.pause()
            request._wake()

    def on_message_complete(self) -> None:
        request = self.current
        if request is None:
            return
        if request is self.upgrading and request.framing:
            return  # its body comes after the upgrade (`_after_upgrade`)
        self.continuing = None
        request.complete = True
        self.current = None
        self.head_deadline = float("inf")
        request._wake()

    # -- running requests -------------------------------------------------------------------
    def _start(self, request: Request) -> None:
        self.running = request
        request.started = True
        self.head_deadline = float("inf")
        if request.canned is not None:  # a refusal of what could not be parsed
            status, body = request.canned
            request.response_bytes(status, [("content-type", "application/json")], body)
            self._advance()
            return
        self.server.tasks[request] = self.loop.create_task(self._run(request))

    async def _run(self, request: Request) -> None:
        try:
            await self.server.edge.__rsgi__(request.scope, request)
        except Exception:
            log.exception("request %s %s failed", request.scope.method, request.scope.path)
            if not request.answered:
                request.keep_alive = False
                request.response_bytes(500, [("content-type", "application/json")],
                                       error_body("internal", "the edge host failed"))
        finally:
            self.server.tasks.pop(request, None)
            if self.running is request:
                if not request.answered:  # no answer (the client left): nothing to wait for
                    request.keep_alive = False
                    request.flushed = True
                self._advance()

    def _advance(self) -> None:
        """On the loop: once the running request's answer is out whole, close if it was the
        last, else start the next one read, else wait for the next head."""
        running = self.running
        if running is not None:
            if not running.flushed:
                return  # the answer is still in the transport; resume_writing comes back
            self.running = None
            if not running.keep_alive or not running.complete:
                self._close()
                return
        if self.closed:
            return
        if self.queued:
            self._start(self.queued.popleft())
            self.server.ahead -= 1
            if self.stash and len(self.queued) < MAX_PIPELINED:
                self.loop.call_soon(self._unstash)  # not from inside a parser callback
            return
        if self.stash:
            self.loop.call_soon(self._unstash)
            return
        self.head_deadline = self.loop.time() + self.server.config.header_timeout_s
        self.resume()

    # -- writing ----------------------------------------------------------------------------
    def send(self, data: bytes, request: Request) -> None:
        """The answer of `request`, from the loop or a decision thread."""
        close = not request.keep_alive
        if threading.get_ident() == self.server.loop_thread:
            self._write(data)
            if not self.write_blocked:
                request.flushed = True
            if close:
                self._close_later()
            return
        with self.lock:  # a decision thread: write what the socket takes now
            if self.closed:
                return
            sent = 0
            if self.fd >= 0 and not self.write_blocked:
                sent = _write_keeping_gil(self.fd, data)
                if sent < 0:
                    if ctypes.get_errno() not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        # the peer is gone; the loop may not be reading this socket (paused
                        # for queued requests, or after its EOF), so it is told
                        self.loop.call_soon_threadsafe(self._abort)
                        return
                    sent = 0
        if sent < len(data) or close:
            self.loop.call_soon_threadsafe(self._write_rest, data[sent:], close, request)
        else:
            request.flushed = True

    def _write_rest(self, data: bytes, close: bool, request: Request) -> None:
        """On the loop: the part of a thread's answer the socket did not take."""
        if data:
            self._write(data)
        if not self.write_blocked:
            request.flushed = True
        if close:
            self._close_later()
        elif self.running is request and request.flushed:
            self._advance()

    def _abort(self) -> None:
        if self.transport is not None:
            with self.lock:
                self.closed = True
            self.transport.abort()  # connection_lost follows

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _close_later(self) -> None:
        """After the answer was handed to the transport: close once it is sent."""
        if self.transport is not None and not self.closed:
            with self.lock:
                self.closed = True
            self.transport.close()  # flushes the buffer, then closes

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            with self.lock:
                self.closed = True
            self.transport.close()

    def _close_after_current(self) -> None:
        """Read no more: answer the requests already taken, in order, then close."""
        self.final = True
        last = self.queued[-1] if self.queued else self.running
        if last is not None and not last.flushed:
            last.keep_alive = False
        else:
            self._close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """What was received cannot be parsed, or is out of bounds: read no more, answer it
        after the answers already due (in order), then close."""
        current = self.current
        if current is not None and (current is self.running or current in self.queued):
            # the fault is in a body being read: its request answers (400 incomplete_body)
            current.broken = True
            current._wake()
            self._close_after_current()
            return
        self.final = True
        if self.closed:
            return
        refusal = Request(self, Scope("GET", "/", "", Headers(), "1.1"), keep_alive=False)
        refusal.complete = True
        refusal.canned = (status, error_body(code, message))
        running = self.running
        if running is not None and running.flushed and not self.queued:
            self._advance()
            if self.closed:
                return
        if self.running is None and not self.queued:
            self._start(refusal)
        else:
            self.queued.append(refusal)
            self.server.ahead += 1

    # -- flow ----------------------------------------------------------------------------------
    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if not self.paused or self.closed or self.final or self.transport is None:
            return
        current = self.current
        if self.queued or self.stash or (current is not None and current.held > READ_AHEAD
                                         and not current.whole):
            return
        self.paused = False
        self.transport.resume_reading()


# write(2) called with the GIL held: os.write lets it go, and taking it back waits for the
# loop's next release (a whole guest call, often), which made the thread's decisions look
# busy for twice their time. A write to a non-blocking socket does not block.
_libc = ctypes.PyDLL(None, use_errno=True)
_libc_write = _libc.write
_libc_write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
_libc_write.restype = ctypes.c_ssize_t


def _write_keeping_gil(fd: int, data: bytes) -> int:
    return _libc_write(fd, data, len(data))  # type: ignore[no-any-return]


class _Refused(Exception):
    """Raised from a parser callback to stop parsing what is left of the data."""


_date = [0, b""]


def _date_line() -> bytes:
    now = int(time.time())
    if _date[0] != now:
        _date[0], _date[1] = now, b"date: %s\r\n" % formatdate(now, usegmt=True).encode()
    return _date[1]  # type: ignore[return-value]


class LoopServer:
    """The listening socket, its connections, the head deadline sweep and the stop."""

    def __init__(self, config: EdgeConfig, edge: Any) -> None:
        self.config, self.edge = config, edge
        self.max_connections = connections_within_open_files(
            config.max_connections, asked="EDGE_MAX_CONNECTIONS" in os.environ)
        self.short_logged_at = float("-inf")
        self.connections: set[Connection] = set()
        self.tasks: dict[Request, asyncio.Task[None]] = {}
        # requests parsed ahead of their connection's answers (queued), all connections
        # together, and their bound: EDGE_MAX_PENDING, the bound of decisions admitted. Each
        # is held (parsed, in memory) and started in its turn; 200 connections pipelining 32
        # each once kept 6,400, and parsing them and their garbage collection held the
        # loop for 1-2 s. Past the bound a connection with requests queued is read no
        # further until its own answers are out (TCP's back-pressure); a connection's
        # first request is always read, and admitted or refused 503 as any other.
        self.ahead = 0
        self.max_ahead = max(1, config.max_pending)
        self.stopping: asyncio.Event | None = None

    async def serve(self, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.stopping = asyncio.Event()
        self.edge.__rsgi_init__(self.loop)
        server = await self.loop.create_server(lambda: Connection(self), sock=sock,
                                               backlog=2048)
        self.loop.call_later(SWEEP_S, self._sweep)
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(signum, self._on_signal)
        try:
            await self.stopping.wait()
        finally:
            server.close()
            sock.close()  # no connection is taken into the backlog while draining
            self.edge.stop_reading()
            deadline = self.loop.time() + self.config.drain_timeout_s
            while self.tasks and self.loop.time() < deadline:
                await asyncio.sleep(0.01)
            for conn in list(self.connections):
                conn._close()
            await asyncio.sleep(0)
            self.edge.__rsgi_del__(self.loop)

    def short_of_descriptors(self, exc: OSError) -> None:
        """A connection was given up for want of a descriptor: said once a minute at most."""
        now = time.monotonic()
        if now - self.short_logged_at >= 60:
            self.short_logged_at = now
            log.warning("a connection was closed at once: %s (%d connections open; the "
                        "open files limit is %d)", exc.strerror, len(self.connections),
                        resource.getrlimit(resource.RLIMIT_NOFILE)[0])

    def _on_signal(self) -> None:
        assert self.stopping is not None
        self.stopping.set()

    def _sweep(self) -> None:
        """Close the connections whose head is overdue (idle keep-alive ones included)."""
        now = self.loop.time()
        for conn in [c for c in self.connections if c.head_deadline <= now]:
            if conn.running is None:
                conn._close()
        self.loop.call_later(SWEEP_S, self._sweep)


def serve_loop(config: EdgeConfig) -> None:
    """Serve until SIGTERM or Ctrl-C: in this process, or with EDGE_WORKERS=N in N forked
    worker processes accepting on one listening socket (`_supervise`)."""
    from .open_files import raise_open_files_limit

    # each connection holds two descriptors (the transport's and the threads' duplicate);
    # the limit is per process, each worker's own
    raise_open_files_limit(2 * config.max_connections + FD_RESERVE)
    sock = _listen(config)
    if config.workers == 1:
        _serve_worker(config, sock, 1)
    else:
        _supervise(config, sock)


def connections_within_open_files(wanted: int, asked: bool = True) -> int:
    """How many connections a worker takes at once: `wanted` (EDGE_MAX_CONNECTIONS), or
    fewer where the open-files limit would run out first (two descriptors each, beside
    FD_RESERVE); then a visitor beyond them is refused cleanly and the worker's own files
    and sockets still open. A warning only when the operator `asked` for `wanted`: the
    default's 10,000 is more than many machines' limit, and every start warned."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return wanted
    allowed = max(1, (soft - FD_RESERVE) // 2)
    if allowed >= wanted:
        return wanted
    log.log(logging.WARNING if asked else logging.INFO,
            "at most %d connections at once, not EDGE_MAX_CONNECTIONS=%d: the open files "
            "limit is %d (two descriptors a connection, %d kept for files and sockets); "
            "raise the hard limit (ulimit -Hn) to take more", allowed, wanted, soft,
            FD_RESERVE)
    return allowed


def _listen(config: EdgeConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.create_server((config.host.strip("[]"), config.port), family=family,
                                backlog=2048)
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is not None:  # inherited by accepted connections (see limit_stalled_sends)
        sock.setsockopt(socket.IPPROTO_TCP, option, int(config.send_timeout_s * 1000))
    return sock


def _serve_worker(config: EdgeConfig, sock: socket.socket, worker: int) -> None:
    import uvloop

    from .granian_server import _worker_app

    edge = _worker_app(config, worker=worker, server="loop")
    edge.queue_ahead = QUEUE_AHEAD
    uvloop.run(LoopServer(config, edge).serve(sock))


def _forget_metrics_of(pid: int) -> None:
    from .metrics import forget_worker_metrics  # the supervisor loads it only once needed

    forget_worker_metrics(pid)


def _supervise(config: EdgeConfig, sock: socket.socket) -> None:
    """Fork the workers (before any thread exists here), pass SIGTERM / SIGINT on to them,
    start again a worker that dies while not stopping (after a second), and after a stop
    kill a worker that has not finished its drain within EDGE_DRAIN_TIMEOUT_S + 5 s."""
    children: dict[int, int] = {}  # pid -> worker number
    stopping: list[int] = []  # the signal, once one came

    def spawn(worker: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _serve_worker(config, sock, worker)
            except BaseException:
                log.exception("worker %d failed", worker)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = worker

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping:
            stopping.append(signum)
            sock.close()  # else the kernel takes new connections that nobody will answer
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for worker in range(1, config.workers + 1):
        spawn(worker)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    kill_at = None
    restart_at: dict[int, float] = {}  # worker -> when to start it again
    while children or (restart_at and not stopping):
        if restart_at and not stopping:
            for worker, due in sorted(restart_at.items()):
                if time.monotonic() < due:
                    continue
                try:
                    spawn(worker)
                    del restart_at[worker]
                except OSError as exc:  # out of processes or memory: the others go on
                    log.error("could not start worker %d again (%s); trying again in a "
                              "second", worker, exc)
                    restart_at[worker] = time.monotonic() + 1
        pid, status = os.waitpid(-1, os.WNOHANG) if children else (0, 0)
        if pid == 0:
            if stopping and kill_at is None:
                kill_at = time.monotonic() + config.drain_timeout_s + 5
            if kill_at is not None and time.monotonic() > kill_at:
                for child in children:
                    os.kill(child, signal.SIGKILL)
            time.sleep(0.1)
            continue
        worker = children.pop(pid, 0)
        _forget_metrics_of(pid)  # at once, so that no scrape meets its remains meanwhile
        if not stopping and worker:
            how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exit status {os.waitstatus_to_exitcode(status)}")
            log.error("worker %d (pid %d) ended (%s): the part of its telemetry not yet "
                      "spooled (at most the last EDGE_TELEMETRY_INTERVAL_S of decisions) is "
                      "lost; starting it again in a second", worker, pid, how)
            restart_at[worker] = time.monotonic() + 1
    sock.close()
