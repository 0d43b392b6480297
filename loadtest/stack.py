"""The stack a load test needs: an edge host serving a published, signed snapshot.

Everything lives in a throwaway folder (keys, edge store, edge state) and the host listens
on a free loopback port, so a load test never touches `./build.sh up`'s `.var/` nor its
ports. The host is `edge-host` started as a user starts it (a subprocess, configured by
EDGE_* variables), with status reports off (EDGE_CONTROL_URL="").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from loadtest.bench import bench_pack

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SHIPPED_PACKS = ("pricing-discount.yaml", "checkout-reminder.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_packs(folder: Path, packs: str) -> Path:
    """The packs a run publishes: `shipped` (rules/), `bench` (the 30-trigger pack of
    `./build.sh bench`) or `both` (default: the journeys meet the shipped nudges, and each
    decision also evaluates the 30 bench triggers)."""
    folder.mkdir(parents=True, exist_ok=True)
    if packs in ("shipped", "both"):
        for name in SHIPPED_PACKS:
            shutil.copy(ROOT / "rules" / name, folder / name)
    if packs in ("bench", "both"):
        # No catalog.yaml beside them: the bench pack's content ids (c-0...) are synthetic.
        (folder / "bench.yaml").write_text(bench_pack(30))
    if packs not in ("shipped", "bench", "both"):
        raise ValueError(f"packs={packs!r}: expected shipped, bench or both")
    return folder


@dataclass
class EdgeStack:
    url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log: Path


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@contextmanager
def edge_stack(packs: str = "both", env_overrides: dict[str, str] | None = None,
               workdir: Path | None = None, startup_s: float = 60.0) -> Iterator[EdgeStack]:
    """Keys, a published snapshot and a running edge host; stopped (SIGTERM) on exit."""
    owned = workdir is None
    work = Path(tempfile.mkdtemp(prefix="loadtest-")) if workdir is None else workdir
    port = free_port()
    env = {**os.environ,
           "CONTROL_DATA_DIR": str(work / "control"), "TRIGGERS_STORE": str(work / "store"),
           "TRIGGERS_TRUSTED_KEYS": str(work / "trusted"),
           "EDGE_HOST": "127.0.0.1", "EDGE_PORT": str(port), "EDGE_CONTROL_URL": "",
           "EDGE_STATE_DIR": str(work / "edge"),
           "EDGE_COMPONENT": str(ROOT / "build" / "decision-engine.wasm"),
           "EDGE_CACHE_DIR": str(ROOT / "build" / "cache"),
           "EDGE_LOG_LEVEL": os.environ.get("EDGE_LOG_LEVEL", "WARNING"),
           **(env_overrides or {})}
    trigger_engine = str(BIN / "trigger-engine")
    _run([trigger_engine, "keys", "generate"], env)
    _run([trigger_engine, "publish", str(write_packs(work / "packs", packs))], env)
    log = work / "edge-host.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "edge-host")], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log, startup_s)
        yield EdgeStack(url, work, proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edge-host exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"edge-host at {url} not healthy after {timeout_s:.0f} s:\n"
                       f"{log.read_text()}")


def main() -> None:
    """`python -m loadtest.stack`: start the stack and keep it up until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--packs", default="both", choices=("shipped", "bench", "both"))
    args = parser.parse_args()

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Started in the background by a shell, a process inherits SIGINT ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with edge_stack(args.packs) as stack:
        print(stack.url, flush=True)
        try:
            while stack.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
