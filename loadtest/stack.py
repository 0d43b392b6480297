"""The stack a load test needs: an edge host serving a published, signed snapshot, and
(with `telemetry=True`) the control plane collecting the edge's telemetry.

Everything lives in a throwaway folder (keys, tokens, edge store, edge state, the
control plane's data) and each server listens on a free loopback port, so a load test
never touches `./build.sh up`'s `.var/` nor its ports. Both are started as a user starts
them (`edge-host` and `trigger-engine serve` subprocesses, configured by environment
variables). Without telemetry the edge has no control plane (EDGE_CONTROL_URL="").
"""

from __future__ import annotations

import os
import resource
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
from typing import Any, Iterator

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
    `./build.sh bench`), `both` (default: the journeys meet the shipped nudges, and each
    decision also evaluates the 30 bench triggers) or `channels` (the pricing nudge as a
    push)."""
    folder.mkdir(parents=True, exist_ok=True)
    if packs in ("shipped", "both"):
        for name in SHIPPED_PACKS:
            shutil.copy(ROOT / "rules" / name, folder / name)
    if packs == "channels":  # the README's pricing nudge, sent as a push instead
        text = (ROOT / "rules" / "pricing-discount.yaml").read_text()
        (folder / "pricing-push.yaml").write_text(text.replace(
            "      content: discount-nudge-10\n",
            "      content: discount-nudge-10\n      channel: push\n"
            "      template: push-discount\n"))
        shutil.copy(ROOT / "rules" / "catalog.yaml", folder / "catalog.yaml")
        return folder
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
    control_url: str | None = None  # with telemetry: the control plane
    publisher_token: str | None = None
    control_process: subprocess.Popen[bytes] | None = None


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@contextmanager
def edge_stack(packs: str = "both", env_overrides: dict[str, str] | None = None,
               workdir: Path | None = None, startup_s: float = 60.0,
               telemetry: bool = False, open_files: int | None = None) -> Iterator[EdgeStack]:
    """Keys, a published snapshot and a running edge host (and with `telemetry` the control
    plane it ships its decision log to); stopped (SIGTERM) on exit. `open_files`: the edge
    host's open-files limit (soft and hard), to see it live within a small one."""
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
    started: list[tuple[subprocess.Popen[bytes], Any]] = []
    try:
        control_url = publisher = control = None
        if telemetry:
            _run([trigger_engine, "tokens"], env)
            control_port = free_port()
            control_url = f"http://127.0.0.1:{control_port}"
            publisher = (work / "control" / "publisher.token").read_text().strip()
            env.update({"CONTROL_HOST": "127.0.0.1", "CONTROL_PORT": str(control_port),
                        "EDGE_CONTROL_URL": control_url,
                        "EDGE_TOKEN": (work / "control" / "edge.token").read_text().strip()})
            control_log = work / "control-plane.log"
            control = _start([trigger_engine, "serve"], env, control_log)
            started.append((control, control_log))
            _wait_healthy(control_url, control, control_log, startup_s, "control plane")
        log = work / "edge-host.log"
        proc = _start([str(BIN / "edge-host")], env, log, open_files)
        started.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log, startup_s, "edge-host")
        yield EdgeStack(url, work, proc, log, control_url, publisher, control)
    finally:
        for proc, _ in reversed(started):  # the edge first: its last telemetry goes out
            stop_process(proc)
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (a server drains and sends its last telemetry), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(predicate: Any, timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy (servers start and sync asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def _start(args: list[str], env: dict[str, str], log: Path,
           open_files: int | None = None) -> subprocess.Popen[bytes]:
    def limit_open_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=None if open_files is None else limit_open_files)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float,
                  what: str = "edge-host", path: str = "/healthz") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + path, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} at {url} not healthy after {timeout_s:.0f} s:\n"
                       f"{log.read_text()}")


def main() -> None:
    """`python -m loadtest.stack`: start the stack and keep it up until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--packs", default="both", choices=("shipped", "bench", "both"))
    parser.add_argument("--telemetry", action="store_true",
                        help="also the control plane, collecting the edge's telemetry")
    args = parser.parse_args()

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Started in the background by a shell, a process inherits SIGINT ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with edge_stack(args.packs, telemetry=args.telemetry) as stack:
        print(stack.url, *([stack.control_url] if stack.control_url else []), flush=True)
        try:
            while stack.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
