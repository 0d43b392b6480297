"""A fixed pool of component instances sharing one current snapshot.

wasmtime-py releases the GIL while the guest runs, so N instances serve N requests in
parallel. A snapshot is installed by loading it into one instance first (a snapshot the
guest refuses never becomes current); the others load it on their next checkout, so each
decision uses exactly one revision. An instance that traps is replaced by a fresh one.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from .component import GuestResult, GuestTrap, Instance


class PoolBusy(Exception):
    """No instance became free in time: the host is saturated."""


class SnapshotRejected(Exception):
    """The guest refused a snapshot (or trapped loading it); the previous one stays."""

    def __init__(self, revision_hint: str, reason: str) -> None:
        super().__init__(reason)
        self.revision_hint = revision_hint
        self.reason = reason


@dataclass(frozen=True)
class LoadedSnapshot:
    revision: str
    text: str


class InstancePool:
    def __init__(self, factory: Callable[[], Instance], size: int, *,
                 decide_deadline_ms: int = 50, load_deadline_ms: int = 5000,
                 acquire_timeout_s: float = 1.0) -> None:
        self._factory = factory
        self._free: queue.LifoQueue[Instance] = queue.LifoQueue()
        self._size = size
        self._current: LoadedSnapshot | None = None
        self._install_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.decide_deadline_ms = decide_deadline_ms
        self.load_deadline_ms = load_deadline_ms
        self.acquire_timeout_s = acquire_timeout_s
        self.traps = 0
        self.replaced = 0
        for _ in range(size):
            self._free.put(factory())

    @property
    def size(self) -> int:
        return self._size

    @property
    def current(self) -> LoadedSnapshot | None:
        return self._current

    def install(self, text: str, label: str = "") -> str:
        """Make `text` the current snapshot if the guest accepts it; returns its revision."""
        with self._install_lock:
            inst = self._acquire()
            try:
                result = inst.load_snapshot(text, self.load_deadline_ms)
            except GuestTrap as trap:
                inst = self._replace(inst)
                raise SnapshotRejected(label, f"loading trapped the guest: {trap}") from None
            finally:
                self._free.put(inst)
            if not result.ok:
                raise SnapshotRejected(label, _error_message(result.text))
            self._current = LoadedSnapshot(result.text, text)
            return result.text

    def decide(self, envelope: str) -> GuestResult:
        """Run one decision (packed envelope) on a free instance; GuestTrap if the guest
        had to be stopped."""
        inst = self._acquire()
        try:
            current = self._current
            if current is not None and inst.revision != current.revision:
                inst.load_snapshot(current.text, self.load_deadline_ms)
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

    def _replace(self, broken: Instance) -> Instance:
        """A fresh instance (with the current snapshot) for one whose Store is unusable."""
        with self._stats_lock:
            self.traps += 1
            self.replaced += 1
        del broken
        fresh = self._factory()
        current = self._current
        if current is not None:
            try:
                fresh.load_snapshot(current.text, self.load_deadline_ms)
            except GuestTrap:
                fresh = self._factory()  # serve without a snapshot rather than not at all
        return fresh


def _error_message(error_json: str) -> str:
    try:
        return str(json.loads(error_json).get("message", error_json))
    except ValueError:
        return error_json
