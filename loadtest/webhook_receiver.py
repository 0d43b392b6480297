"""A webhook receiver on loopback for channel tests and benches: a real HTTP server that
checks each call's signature (`edge_module.channels.sinks.verify`, the documented recipe)
and keeps what it was sent, and when. It can answer with a chosen status, and be stopped
and started again on the same port (a receiver that is down)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_module.channels.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

SECRET = "0123456789abcdef0123456789abcdef-receiver"


@dataclass
class Call:
    key: str
    body: dict[str, Any]
    signed: bool  # the signature and timestamp check (`verify`)
    at: float  # time.perf_counter() when it arrived


@dataclass
class Receiver:
    port: int
    secret: str = SECRET
    calls: list[Call] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses to answer first, in order
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/nudges"

    def keys(self) -> list[str]:
        with self._lock:
            return [c.key for c in self.calls if c.signed]

    def fired(self) -> list[tuple[str, str]]:
        """(decision id, trigger) of each signed call, duplicates included."""
        with self._lock:
            return [(c.body["decision_id"], c.body["trigger"]) for c in self.calls if c.signed]

    def first(self, decision_id: str) -> Call | None:
        """The first signed call for a delivery of this decision."""
        with self._lock:
            return next((c for c in self.calls
                         if c.signed and c.body.get("decision_id") == decision_id), None)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.perf_counter()
                signed = verify(receiver.secret.encode(), self.headers.get(TIMESTAMP_HEADER),
                                self.headers.get(SIGNATURE_HEADER), raw)
                with receiver._lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    if status == 200:
                        receiver.calls.append(Call(self.headers.get("Idempotency-Key", ""),
                                                   json.loads(raw), signed, at))
                self.send_response(status if signed else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
