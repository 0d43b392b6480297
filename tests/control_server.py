"""An in-process control plane on a real port (waitress in a thread) that a test can stop
and start again on the same port and data folder, as an outage would."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator


class ControlServer:
    def __init__(self, config: dict[str, Any], port: int = 0) -> None:
        self.config = config
        self.port = port
        self.app: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from control_plane import create_app
        from control_plane.http_server import make_server

        self.app = create_app(dict(self.config))
        self._server = make_server(self.app, "127.0.0.1", self.port)
        self.port = self._server.effective_port
        server = self._server

        def run() -> None:
            try:
                server.run()
            except OSError:  # closed from the test's thread while in select()
                pass

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            from tests.servers import stop_waitress

            stop_waitress(self._server)  # task threads first (see there)
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def telemetry(self) -> Any:
        return self.app.extensions["telemetry_store"]


@contextmanager
def running_control(config: dict[str, Any]) -> Iterator[ControlServer]:
    server = ControlServer(config)
    try:
        yield server
    finally:
        server.stop()
