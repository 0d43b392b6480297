"""Where the edge keeps each visitor's session state between requests.

The state is the opaque blob the decision core returns (marshal bytes on the host's
packed path). `SessionStore` is the seam: the default keeps states in memory, bounded in
count and expiring after a period of inactivity; `RedisSessionStore` shares them between
the edge hosts of one PoP, so any host can serve the next request of a session.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterator, Protocol, TypeVar, cast

import redis

from .config import EdgeConfig

log = logging.getLogger("edge.sessions")
T = TypeVar("T")


class SessionStoreUnavailable(Exception):
    """The shared session store cannot be used right now; the request may be retried."""


class SessionLockTimeout(SessionStoreUnavailable):
    """Another decision of the same session held its lock for longer than we wait."""


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
    """In-process LRU with an idle TTL: the least recently used session goes first."""

    def __init__(self, max_sessions: int = 100_000, ttl_s: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_sessions
        self._ttl = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._session_locks = SessionLocks()
        self.evicted = 0

    def get(self, session_id: str) -> bytes | None:
        with self._lock:
            item = self._items.get(session_id)
            if item is None:
                return None
            if item[0] <= self._clock():
                del self._items[session_id]
                return None
            return item[1]

    def put(self, session_id: str, state: bytes) -> None:
        with self._lock:
            self._items[session_id] = (self._clock() + self._ttl, state)
            self._items.move_to_end(session_id)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
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


# Delete the lease only if it is still ours: once it has expired and another host holds
# it, a plain DEL would let a third decision in beside that host.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisSessionStore:
    """Session states in Redis, shared by the edge hosts of one PoP.

    A state lives at `<prefix><session_id>` and expires `ttl_s` after its last write. A
    session's lock is a lease at `<prefix minus ':'>-lock:<session_id>` (outside the prefix,
    so `len()` counts sessions only), taken after a local striped lock so that the threads of
    one host queue in memory rather than polling Redis. A lease left by a dead host expires
    after `lock_ttl_ms`; a waiter gives up after `lock_wait_s` (default: 2 s at most).
    """

    def __init__(self, url: str, ttl_s: float, prefix: str = "edge:session:",
                 lock_ttl_ms: int = 10_000, lock_wait_s: float | None = None,
                 timeout_s: float = 0.5) -> None:
        # Short timeouts and no retries: a dead Redis must cost a request half a second,
        # not hang a worker thread.
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry_on_timeout=False)
        kwargs = self._redis.connection_pool.connection_kwargs
        self.where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self._prefix = prefix
        self._lock_prefix = prefix.rstrip(":") + "-lock:"
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._lock_ttl_ms = lock_ttl_ms
        # a waiter gives up well before a crashed holder's lease would run out
        self._lock_wait_s = min(lock_ttl_ms / 1000, 2.0) if lock_wait_s is None else lock_wait_s
        self._release = self._redis.register_script(_RELEASE)
        self._local = SessionLocks()

    def get(self, session_id: str) -> bytes | None:
        state = self._call("read a session", self._redis.get, self._prefix + session_id)
        return cast("bytes | None", state)  # a sync client with decode_responses off

    def put(self, session_id: str, state: bytes) -> None:
        self._call("write a session", self._redis.set, self._prefix + session_id, state,
                   px=self._ttl_ms)

    @contextmanager
    def lock(self, session_id: str) -> Iterator[None]:
        with self._local(session_id):
            key = self._lock_prefix + session_id
            token = secrets.token_hex(16)
            self._acquire(key, token, session_id)
            try:
                yield
            finally:
                try:
                    self._release(keys=[key], args=[token])
                except redis.RedisError as exc:
                    # The decision is done; the lease expires on its own.
                    log.warning("could not release the lock of session %r at %s: %s",
                                session_id, self.where, exc)

    def _acquire(self, key: str, token: str, session_id: str) -> None:
        deadline = time.monotonic() + self._lock_wait_s
        pause = 0.002
        while not self._call("lock a session", self._redis.set, key, token, nx=True,
                             px=self._lock_ttl_ms):
            if time.monotonic() >= deadline:
                raise SessionLockTimeout(
                    f"session {session_id!r} stayed locked by another decision for "
                    f"{self._lock_wait_s:g} s (session store at {self.where})")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def close(self) -> None:
        self._redis.close()

    def __len__(self) -> int:
        pattern = _glob_escape(self._prefix) + "*"

        def count() -> int:
            return sum(1 for _ in self._redis.scan_iter(match=pattern, count=1000))

        return self._call("count sessions", count)

    def _call(self, what: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise SessionStoreUnavailable(
                f"cannot {what}: the session store at {self.where} is unavailable "
                f"({type(exc).__name__}: {exc})") from exc


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def make_session_store(config: EdgeConfig) -> SessionStore:
    """The store `config.session_store` names (validated by EdgeConfig): memory or Redis."""
    if config.session_store == "memory":
        return MemorySessionStore(config.max_sessions, config.session_ttl_s)
    log.info("session state shared in Redis at %s", config.session_store.rpartition("@")[2])
    return RedisSessionStore(config.session_store, config.session_ttl_s)
