"""Where the edge keeps each visitor's session state between requests.

The state is the opaque blob the decision core returns (marshal bytes on the host's
packed path). `SessionStore` is the seam: the default keeps states in memory, bounded in
count and in bytes and expiring after a period of inactivity; `LmdbSessionStore`
(`lmdb_session_store.py`) shares them between the worker processes of one host, and
`RedisSessionStore` (`redis_session_store.py`) between the edge hosts of one PoP, so any
host can serve the next request of a session. `edge_host.make_session_store` picks one.

Bytes: the core keeps each state within its own budget (`edge_module.core.session`,
MAX_SESSION_BYTES); every store also refuses to keep a state over `max_state_bytes` (the
session starts over), and bounds its total: memory by evicting the least recently written
beyond `max_bytes`, LMDB by a map of that size (full: the least recently written go),
Redis by the server's `maxmemory` with `maxmemory-policy volatile-lru` (every state has a
TTL), which is the only place that sees all the hosts of a PoP.

Fencing: `put` inside `lock()` writes only while the lease taken by that `lock()` is still
held; a decision that outlived its lease (and so may have raced the next holder) gets
`SessionLeaseLost` instead of overwriting a newer state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

log = logging.getLogger("edge.sessions")


class SessionStoreUnavailable(Exception):
    """The shared session store cannot be used right now; the request may be retried."""


class SessionLockTimeout(SessionStoreUnavailable):
    """Another decision of the same session held its lock for longer than we wait."""


class SessionLeaseLost(SessionStoreUnavailable):
    """The lease of this decision expired before its write: the state was not written (a
    newer decision may hold the session now); the request may be retried."""


_ENTRY_BYTES = 96  # what an in-memory entry costs beyond its id and state (slot, tuple)
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_MAX_STATE_BYTES = 64 << 10


def warn_too_big(store: str, session_id: str, size: int, limit: int) -> None:
    """Log a state no store keeps (over `max_state_bytes`)."""
    log.warning("session %r: a state of %d bytes is over the %d-byte bound of the %s "
                "session store; not kept, the session starts over", session_id[:64], size,
                limit, store)


class SessionStore(Protocol):
    def get(self, session_id: str) -> bytes | None:
        """The stored state, or None for a new (or expired) session."""

    def put(self, session_id: str, state: bytes) -> None:
        """Store the state, renewing the session's time to live."""

    def lock(self, session_id: str) -> AbstractContextManager[object]:
        """Serialise the decisions of one session (two tabs, a retry, two hosts)."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""

    def __len__(self) -> int: ...


class MemorySessionStore:
    """In-process LRU with an idle TTL, bounded in count and in accounted bytes (ids and
    states, plus a fixed cost per entry): the least recently written session goes first."""

    def __init__(self, max_sessions: int = 100_000, ttl_s: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 max_state_bytes: int = DEFAULT_MAX_STATE_BYTES) -> None:
        self._max = max_sessions
        self._ttl = ttl_s
        self._clock = clock
        self._max_bytes = max_bytes
        self._max_state = max_state_bytes
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._session_locks = SessionLocks()
        self.evicted = 0
        self.refused = 0  # states over max_state_bytes, not kept
        self.accounted_bytes = 0

    @staticmethod
    def _cost(session_id: str, state: bytes) -> int:
        return len(session_id) + len(state) + _ENTRY_BYTES

    def get(self, session_id: str) -> bytes | None:
        with self._lock:
            item = self._items.get(session_id)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._items[session_id]
                self.accounted_bytes -= self._cost(session_id, item[1])
                return None
            return item[1]

    def put(self, session_id: str, state: bytes) -> None:
        with self._lock:
            old = self._items.pop(session_id, None)
            if old is not None:
                self.accounted_bytes -= self._cost(session_id, old[1])
            if len(state) > self._max_state:
                self.refused += 1
                warn_too_big("memory", session_id, len(state), self._max_state)
                return
            self._items[session_id] = (self._clock() + self._ttl, state)
            self.accounted_bytes += self._cost(session_id, state)
            while self._items and (len(self._items) > self._max or
                                   self.accounted_bytes > self._max_bytes):
                sid, (_, gone) = self._items.popitem(last=False)
                self.accounted_bytes -= self._cost(sid, gone)
                self.evicted += 1

    def lock(self, session_id: str) -> threading.Lock:
        return self._session_locks(session_id)

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._items)


class SessionLocks:
    """Serialises decisions of one session (two tabs, a retry) without a global lock."""

    def __init__(self, stripes: int = 256) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def __call__(self, session_id: str) -> threading.Lock:
        return self._locks[hash(session_id) % len(self._locks)]


class _HeldLeases(threading.local):
    def __init__(self) -> None:
        self.tokens: dict[str, Any] = {}


class SessionLeases:
    """A session's lock across processes, for the shared stores: this process's threads
    queue on a striped local lock, then the one at the front takes the session's lease in
    the store (`take(key, token)`, retried with doubling pauses for at most `wait_s`). The
    token a thread holds (`held`) is what its writes are fenced against."""

    def __init__(self, where: str, ttl_s: float, wait_s: float, pauses_s: tuple[float, float],
                 take: Callable[[Any, Any], bool], give_back: Callable[[Any, Any], None],
                 give_back_errors: type[Exception]) -> None:
        self._where, self._ttl_s, self._wait_s, self._pauses_s = where, ttl_s, wait_s, pauses_s
        self._take, self._give_back, self._give_back_errors = take, give_back, give_back_errors
        self._local = SessionLocks()
        self._held = _HeldLeases()

    def held(self, session_id: str) -> Any:
        """The lease token this thread holds for the session (None outside `lock`)."""
        return self._held.tokens.get(session_id)

    def lost(self, session_id: str) -> SessionLeaseLost:
        """The error of a write refused because this decision's lease had expired."""
        return SessionLeaseLost(
            f"session {session_id[:64]!r}: the lease of this decision expired (after "
            f"{self._ttl_s:g} s) before its state was written; not written, another "
            f"decision may hold the session (session store at {self._where})")

    @contextmanager
    def lock(self, session_id: str, key: Any, token: Any) -> Iterator[None]:
        with self._local(session_id):
            self._acquire(key, token, session_id)
            self._held.tokens[session_id] = token
            try:
                yield
            finally:
                self._held.tokens.pop(session_id, None)
                try:
                    self._give_back(key, token)
                except self._give_back_errors as exc:  # the lease expires on its own
                    log.warning("could not release the lock of session %r at %s: %s",
                                session_id, self._where, exc)

    def _acquire(self, key: Any, token: Any, session_id: str) -> None:
        deadline = time.monotonic() + self._wait_s
        pause, longest = self._pauses_s
        while not self._take(key, token):
            if time.monotonic() >= deadline:
                raise SessionLockTimeout(
                    f"session {session_id!r} stayed locked by another decision for "
                    f"{self._wait_s:g} s (session store at {self._where})")
            time.sleep(pause)  # another thread or process decides for this session now
            pause = min(pause * 2, longest)


class NoSessionStore:
    """Keeps nothing: with EDGE_SESSION_STORE=client the state travels with the visitor in
    a signed token (`edge_module.state_token`), so the edge neither stores nor locks it (two
    tabs each carry their own copy)."""

    def get(self, session_id: str) -> bytes | None:
        return None

    def put(self, session_id: str, state: bytes) -> None:
        pass

    def lock(self, session_id: str) -> AbstractContextManager[object]:
        return nullcontext()

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return 0
