"""Session states in an LMDB file shared by the worker processes of one host
(`LmdbSessionStore`); the seam, limits and fencing are described in `session_store.py`."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import secrets
import struct
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .session_store import (
    DEFAULT_MAX_STATE_BYTES,
    SessionLeaseLost,
    SessionLeases,
    SessionStoreUnavailable,
    warn_too_big,
)

log = logging.getLogger("edge.sessions")


_EXPIRES = struct.Struct("<d")  # a state's value starts with when it expires (time.time())
_TOKEN = 16  # bytes of a lease's owner token, before its expiry
_SWEEPER = b"\x00sweeper"  # the lease of the worker sweeping (not a 16-byte session key)


class LmdbSessionStore:
    """Session states in an LMDB file shared by the worker processes of one host.

    What lets the granian server run several worker processes (no GIL between two of
    their decisions) while any worker serves any request of a session. Reads take no lock
    and writes are short transactions (LMDB serialises writers with a process-shared
    mutex), so a decision adds microseconds, not a network round trip. A state outlives a
    worker's crash or restart (commits reach the page cache; no fsync per write: a host
    crash costs only sessions, and a file it leaves damaged is set aside at the next start).

    Keys are a 128-bit hash of the session id (any id length fits LMDB's key limit). A
    state expires `ttl_s` after its last write and reads as absent from then on. One
    worker at a time (a lease in the file) sweeps every `sweep_interval_s` from a
    background thread, in small transactions: expired states go, then, beyond
    `max_sessions` or with the pages in use three quarters of `max_mb` (checked each
    1/64 of it written, and every write near it), the states closest to expiring (the
    least recently written); over the bound, a write makes room itself. The map is three
    times the bound and 64 MiB more: LMDB needs free pages to delete (a map filled to its
    last page could not evict, and refused every write after), and the reserve takes a
    burst of writes between two checks. It is address space: the file is sparse. A
    session's lock is a lease as in Redis: a waiter retries for at most
    `lock_wait_s`; a lease left by a killed worker expires after `lock_ttl_ms`.
    """

    def __init__(self, path: Path, max_sessions: int, ttl_s: float,
                 max_mb: int = 2048, lock_ttl_ms: int = 10_000,
                 lock_wait_s: float = 2.0, sweep_interval_s: float | None = 10.0,
                 clock: Callable[[], float] = time.time,
                 max_state_bytes: int = DEFAULT_MAX_STATE_BYTES) -> None:
        import lmdb

        self._lmdb = lmdb
        self.where = str(path)
        self._bound = max_mb << 20
        self._map_size = 3 * self._bound + (64 << 20)
        self._env = self._open(path)
        self._states = self._env.open_db(b"states")
        self._leases = self._env.open_db(b"leases")
        self._max = max_sessions
        self._ttl = ttl_s
        self._lock_ttl = lock_ttl_ms / 1000
        self._clock = clock
        self._sweep_lock = threading.Lock()
        self._locks = SessionLeases(
            self.where, self._lock_ttl, lock_wait_s, (0.0005, 0.02),
            lambda key, token: self._take_lease(key, token, self._lock_ttl), self._release,
            lmdb.Error)
        self._max_state = max_state_bytes
        self.refused = 0  # states over max_state_bytes, not kept
        self.fenced = 0  # writes refused because the lease had expired
        self._token = secrets.token_bytes(_TOKEN)  # this store's (process's) sweeper lease
        self.evicted = 0  # states removed before they expired (over the bound, or room)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when the map fills: sweep now
        self._unchecked = 0  # bytes written since the bound was last checked
        self._room_interval = sweep_interval_s or 10.0
        self._room_made = -math.inf  # when eviction for room last ran (monotonic)
        # states stored when room was last made, and the pages left after: evicting frees
        # slots inside pages without shrinking the tree, so over the bound room is made
        # again once those slots are refilled, or once the pages grew anyway (bigger states)
        self._room_entries = 0
        self._room_pages = 0
        self._near = False  # the last check found the pages near the bound: check each write
        self._sweeper: threading.Thread | None = None
        if sweep_interval_s:
            self._sweeper = threading.Thread(target=self._sweep_every, args=(sweep_interval_s,),
                                             name="session-sweep", daemon=True)
            self._sweeper.start()

    def _open(self, path: Path) -> Any:
        lmdb = self._lmdb

        def open_env() -> Any:
            path.mkdir(parents=True, exist_ok=True)
            # writemap: a commit writes into the map instead of pwrite()ing its pages,
            # several times cheaper per write transaction
            return lmdb.open(str(path), map_size=self._map_size, max_dbs=2, sync=False,
                             metasync=False, readahead=False, writemap=True, map_async=True)

        damaged = (lmdb.CorruptedError, lmdb.InvalidError, lmdb.VersionMismatchError,
                   lmdb.PageNotFoundError, lmdb.BadRslotError)
        try:
            try:
                return open_env()
            except damaged:
                pass
            # Sessions are disposable: keep the damaged file for a look and start afresh,
            # one process at a time (another may have just done it: try again first).
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_name(path.name + ".recover-lock"), "a") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)
                try:
                    return open_env()
                except damaged as exc:
                    aside = path.with_name(f"{path.name}.damaged-{time.time_ns()}")
                    log.error("session store at %s is damaged (%s); moved to %s, starting "
                              "empty", path, exc, aside)
                    path.rename(aside)
                    return open_env()
        except (lmdb.Error, OSError) as exc:
            raise SessionStoreUnavailable(
                f"cannot open the session store at {path}: {exc}") from exc

    @staticmethod
    def _key(session_id: str) -> bytes:
        return hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"),
                               digest_size=16).digest()

    def get(self, session_id: str) -> bytes | None:
        try:
            with self._env.begin(db=self._states) as txn:
                value = txn.get(self._key(session_id))
        except self._lmdb.Error as exc:
            raise self._unavailable("read a session", exc) from exc
        if value is None or _EXPIRES.unpack_from(value)[0] <= self._clock():
            return None
        return value[_EXPIRES.size:]

    def put(self, session_id: str, state: bytes) -> None:
        """Write the state; inside `lock()`, only while its lease is held (else
        `SessionLeaseLost`, nothing written)."""
        key, value = self._key(session_id), _EXPIRES.pack(self._clock() + self._ttl) + state
        token = self._locks.held(session_id)
        if len(state) > self._max_state:
            self.refused += 1
            warn_too_big("lmdb", session_id, len(state), self._max_state)
            value = b""  # deleted below, under the same fencing check
        try:
            if not self._write(key, value, token):
                raise self._lease_lost(session_id)
            if not value:
                return
        except self._lmdb.MapFullError:
            self._write_after_making_room(session_id, key, value, token)
        except self._lmdb.Error as exc:
            raise self._unavailable("write a session", exc) from exc
        # paced by bytes, not writes: 32 big states between two checks overshot by a fifth
        self._unchecked += len(value)  # approximate under threads: it only paces the check
        if self._near or self._unchecked > self._bound // 64:
            self._unchecked = 0
            try:
                self._keep_bound()
            except self._lmdb.Error as exc:  # the state is written; housekeeping can wait
                log.warning("session store housekeeping at %s failed: %s", self.where, exc)

    def _keep_bound(self) -> None:
        fill = self._fill()
        self._near = fill > 0.9
        if fill > 1.0 and (len(self) >= self._room_entries or
                           fill * self._bound > self._room_pages + self._bound // 20):
            self.sweep(make_room=True)  # over the bound: this write's process makes room
        elif fill > 0.75 and time.monotonic() - self._room_made >= self._room_interval:
            if self._sweeper is not None:  # early, in the background
                self._wake.set()
            else:
                self.sweep()

    def _write_after_making_room(self, session_id: str, key: bytes, value: bytes,
                                 token: bytes | None) -> None:
        """The map is full (writes outran the checks by the whole reserve): evict the least
        recently written (a fifth at a time: freed pages may be too scattered for a large
        state, so up to three rounds), then, as the last resort, everything."""
        for _ in range(3):
            try:
                if self._sweep_lock.locked():  # a sweep is making room: wait for it
                    with self._sweep_lock:
                        pass
                else:
                    self.sweep(make_room=True)
            except self._lmdb.Error as exc:
                log.error("could not make room in the session store at %s (%s)", self.where,
                          exc)
                break
            try:
                if not self._write(key, value, token):
                    raise self._lease_lost(session_id)
                return
            except self._lmdb.MapFullError:
                continue
            except self._lmdb.Error as exc:
                raise self._unavailable("write a session", exc) from exc
        # sessions are disposable, a store that refuses every write is not
        log.error("the session store at %s stays full: dropping every session; give it a "
                  "bigger EDGE_SESSION_STORE_MAX_MB or fewer sessions", self.where)
        try:
            with self._env.begin(write=True) as txn:
                txn.drop(self._states, delete=False)
            if not self._write(key, value, token):
                raise self._lease_lost(session_id)
        except self._lmdb.Error as exc:
            raise self._unavailable("write a session", exc) from exc

    def _lease_lost(self, session_id: str) -> SessionLeaseLost:
        self.fenced += 1
        return self._locks.lost(session_id)

    def _write(self, key: bytes, value: bytes, token: bytes | None) -> bool:
        """Put (or with an empty value delete) a state; False, writing nothing, when
        `token` is given and the session's lease is no longer it."""
        with self._env.begin(write=True, db=self._states) as txn:
            if token is not None and \
                    txn.get(key, b"", db=self._leases)[:_TOKEN] != token:
                return False
            if value:
                txn.put(key, value)
            else:
                txn.delete(key)
            return True

    def lock(self, session_id: str) -> AbstractContextManager[None]:
        return self._locks.lock(session_id, self._key(session_id),
                                 secrets.token_bytes(_TOKEN))

    def _take_lease(self, key: bytes, token: bytes, ttl_s: float) -> bool:
        now = self._clock()
        try:
            with self._env.begin(write=True, db=self._leases) as txn:
                held = txn.get(key)
                if held is not None and held[:_TOKEN] != token and \
                        _EXPIRES.unpack_from(held, _TOKEN)[0] > now:
                    return False
                txn.put(key, token + _EXPIRES.pack(now + ttl_s))
                return True
        except self._lmdb.Error as exc:
            raise self._unavailable("lock a session", exc) from exc

    def _release(self, key: bytes, token: bytes) -> None:
        with self._env.begin(write=True, db=self._leases) as txn:
            if txn.get(key, b"")[:_TOKEN] == token:  # still ours
                txn.delete(key)

    def _sweep_every(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                # one worker sweeps at a time: the lease outlives a round, then lapses
                if self._take_lease(_SWEEPER, self._token, interval_s * 1.5):
                    self.sweep()
            except Exception:  # a failed round must not end the thread
                log.exception("session sweep at %s failed", self.where)

    def sweep(self, make_room: bool = False, chunk: int = 2000) -> int:
        """Delete expired states, then the least recently written beyond the bound (or,
        with `make_room` or the pages three quarters of the bound, a fifth of them, or
        the share of their bytes the pages are over 80 % of the bound by, if more);
        returns how many. Reads in chunks and deletes in small transactions, re-checking each state
        so one rewritten meanwhile stays: no writer and no request waits long."""
        chunk = max(chunk, 2)  # each chunk re-reads the previous one's last key
        with self._sweep_lock:
            now = self._clock()
            entries: list[tuple[float, bytes]] = []
            sizes: dict[bytes, int] = {}
            start = b""
            while True:
                with self._env.begin(db=self._states) as txn:
                    cursor = txn.cursor()
                    batch = []
                    if cursor.set_range(start):
                        for k, v in cursor:
                            key = bytes(k)
                            batch.append((_EXPIRES.unpack_from(v)[0], key))
                            sizes[key] = len(v)
                            if len(batch) >= chunk:
                                break
                entries += [e for e in batch if e[1] != start]
                if len(batch) < chunk:
                    break
                start = batch[-1][1]
                time.sleep(0)  # let request threads have the GIL between chunks
            doomed = [(e, k) for e, k in entries if e <= now]
            alive = sorted((e, k) for e, k in entries if e > now)
            over = len(alive) - self._max
            # Deleting a fifth frees pages for reuse but hardly shrinks the tree, so the
            # fill stays high for a while: evict for room at most once an interval.
            if make_room or (self._fill() > 0.75 and
                             time.monotonic() - self._room_made >= self._room_interval):
                self._room_made = time.monotonic()
                self._room_entries = len(alive)
                over = max(over, len(alive) // 5)
                # and more while that frees less than the share of the states' bytes the
                # pages are over 80 % of the bound by (a fifth of small old states frees
                # little beside big new ones). Bytes of values, not pages: deletions spread
                # over the leaves shrink the pages later, as their slots are reused.
                share = max(0.0, 1 - self._bound * 0.8 / max(self.accounted_bytes, 1))
                need = share * sum(sizes.values())
                freed = sum(sizes[k] for _, k in alive[:over])
                while over < len(alive) and freed < need:
                    freed += sizes[alive[over][1]]
                    over += 1
            evicting = alive[:max(0, over)]
            removed = self._delete(doomed) + (evicted := self._delete(evicting))
            self.evicted += evicted
            if evicting:
                self._room_pages = self.accounted_bytes
            with self._env.begin(write=True, db=self._leases) as txn:
                stale = [bytes(k) for k, v in txn.cursor()
                         if _EXPIRES.unpack_from(v, _TOKEN)[0] <= now]
                for k in stale:
                    txn.delete(k)
            self._env.reader_check()  # reader slots of killed workers
            return removed

    def _delete(self, entries: list[tuple[float, bytes]]) -> int:
        """Delete states still carrying the expiry they were chosen with."""
        removed = 0
        for start in range(0, len(entries), 256):
            with self._env.begin(write=True, db=self._states) as txn:
                for expires, key in entries[start:start + 256]:
                    value = txn.get(key)
                    if value is not None and _EXPIRES.unpack_from(value)[0] == expires:
                        removed += txn.delete(key)
            time.sleep(0)
        return removed

    def _fill(self) -> float:
        """Pages in use (both tables) as a share of the byte bound."""
        return self.accounted_bytes / self._bound

    @property
    def accounted_bytes(self) -> int:
        """Bytes of the map in use: the pages of both tables (what the bound counts)."""
        with self._env.begin() as txn:
            used = sum(st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
                       for st in (txn.stat(self._states), txn.stat(self._leases)))
            return int(used * txn.stat(self._states)["psize"])

    def _unavailable(self, what: str, exc: Exception) -> SessionStoreUnavailable:
        return SessionStoreUnavailable(
            f"cannot {what}: the session store at {self.where} failed "
            f"({type(exc).__name__}: {exc})")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        with self._sweep_lock:
            try:
                self._release(_SWEEPER, self._token)  # another worker may sweep at once
            except self._lmdb.Error:
                pass
            self._env.close()

    def __len__(self) -> int:
        """Stored states (expired ones not yet swept included)."""
        try:
            with self._env.begin(db=self._states) as txn:
                return int(txn.stat(self._states)["entries"])
        except self._lmdb.Error as exc:
            raise self._unavailable("count sessions", exc) from exc
