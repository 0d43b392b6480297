"""A fixed pool of component instances sharing one current snapshot.

wasmtime-py releases the GIL while the guest runs, so N instances serve N requests in
parallel. A snapshot is installed by loading it into one instance first (a snapshot the
guest refuses never becomes current); the others load it on their next checkout, so each
decision uses exactly one revision. Which snapshot an instance holds is tracked by content
hash, not by revision label: two snapshots with one label (a store started afresh) are two
snapshots. An instance that traps is replaced by a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .component import GuestResult, GuestTrap, Instance


class PoolBusy(Exception):
    """No instance became free in time: the host is saturated."""


class SnapshotRejected(Exception):
    """The guest refused a snapshot (or trapped loading it); the previous one stays.
    `trapped`: the load was stopped (deadline, memory), which a later try may survive."""

    def __init__(self, reason: str, trapped: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.trapped = reason, trapped


@dataclass(frozen=True)
class LoadedSnapshot:
    revision: str
    text: str
    sha256: str  # what identifies it: labels may repeat, contents do not


class InstancePool:
    def __init__(self, factory: Callable[[], Instance], size: int, *,
                 decide_deadline_ms: int = 50, load_deadline_ms: int = 5000,
                 acquire_timeout_s: float = 1.0) -> None:
        self._factory = factory
        self._free: queue.LifoQueue[Instance] = queue.LifoQueue()
        self._size = size
        self._current: LoadedSnapshot | None = None
        self._holds: dict[Instance, str] = {}  # instance -> sha256 of the snapshot it loaded
        self._install_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.decide_deadline_ms = decide_deadline_ms
        self.load_deadline_ms = load_deadline_ms
        self.acquire_timeout_s = acquire_timeout_s
        self.traps = 0  # instances replaced after a trap
        for _ in range(size):
            self._free.put(factory())

    @property
    def size(self) -> int:
        return self._size

    @property
    def current(self) -> LoadedSnapshot | None:
        return self._current

    def install(self, text: str) -> str:
        """Make `text` the current snapshot if the guest accepts it; returns its revision."""
        sha = hashlib.sha256(text.encode()).hexdigest()
        with self._install_lock:
            inst = self._acquire()
            try:
                result = inst.load_snapshot(text, self.load_deadline_ms)
            except GuestTrap as trap:
                inst = self._replace(inst)
                raise SnapshotRejected(f"loading trapped the guest: {trap}",
                                       trapped=True) from None
            finally:
                self._free.put(inst)
            if not result.ok:
                raise SnapshotRejected(_error_message(result.text))
            self._holds[inst] = sha
            self._current = LoadedSnapshot(result.text, text, sha)
            return result.text

    def decide_packed(self, envelope: str) -> GuestResult:
        """Run one decision (packed envelope) on a free instance; GuestTrap if the guest
        had to be stopped."""
        return self._decide_on(self._acquire(), envelope)

    def decide_packed_now(self, envelope: str) -> GuestResult:
        """`decide_packed` on an instance that is free now; PoolBusy instead of waiting (for a
        caller that must never block, the granian server's event loop)."""
        try:
            inst = self._free.get_nowait()
        except queue.Empty:
            raise PoolBusy(f"all {self._size} instances busy") from None
        return self._decide_on(inst, envelope)

    def idle(self) -> int:
        """Instances free right now."""
        return self._free.qsize()

    def _decide_on(self, inst: Instance, envelope: str) -> GuestResult:
        try:
            current = self._current
            if current is not None and self._holds.get(inst) != current.sha256:
                self._load(inst, current)
            return inst.decide_packed(envelope, self.decide_deadline_ms)
        except GuestTrap:
            inst = self._replace(inst)
            raise
        finally:
            self._free.put(inst)

    def _acquire(self) -> Instance:
        try:
            return self._free.get(timeout=self.acquire_timeout_s)
        except queue.Empty:
            raise PoolBusy(f"all {self._size} instances busy") from None

    def _load(self, inst: Instance, snapshot: LoadedSnapshot) -> None:
        if inst.load_snapshot(snapshot.text, self.load_deadline_ms).ok:
            self._holds[inst] = snapshot.sha256

    def _replace(self, broken: Instance) -> Instance:
        """A fresh instance (with the current snapshot) for one whose Store is unusable."""
        with self._stats_lock:
            self.traps += 1
        self._holds.pop(broken, None)
        del broken
        fresh = self._factory()
        current = self._current
        if current is not None:
            try:
                self._load(fresh, current)
            except GuestTrap:
                fresh = self._factory()  # serve without a snapshot rather than not at all
        return fresh


def _error_message(error_json: str) -> str:
    try:
        return str(json.loads(error_json).get("message", error_json))
    except ValueError:
        return error_json
