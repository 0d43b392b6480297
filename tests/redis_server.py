"""A throwaway redis-server for tests: its own free port, no persistence, stopped at the end."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import redis

MISSING = ("redis-server is not installed; run ./build.sh test (it installs it), "
           "or apt-get install redis-server")


class RedisServer:
    """One redis-server process on a fixed port; `stop()` and `start()` simulate an outage."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(MISSING)
        log = self._workdir / "redis.log"
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._workdir), "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    if self._proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        text = log.read_text() if log.exists() else ""
                        raise RuntimeError(f"redis-server on port {self.port} did not come "
                                           f"up:\n{text[-2000:]}") from None
                    time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def client(self) -> redis.Redis:
        """A plain client, to look at (or tamper with) what the code under test stored."""
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A fresh redis-server on a free port, stopped (and its files removed) on exit."""
    with tempfile.TemporaryDirectory(prefix="redis-") as workdir:
        server = RedisServer(free_port(), Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()
