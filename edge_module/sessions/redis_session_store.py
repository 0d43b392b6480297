"""Session states in Redis, shared by the edge hosts of one PoP (`RedisSessionStore`); the
seam, limits and fencing are described in `session_store.py`."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar, cast

import redis

from .session_store import (
    DEFAULT_MAX_STATE_BYTES,
    SessionLeases,
    SessionStoreUnavailable,
    warn_too_big,
)

T = TypeVar("T")


# Delete the lease only if it is still ours: once it has expired and another host holds
# it, a plain DEL would let a third decision in beside that host.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# Write the state only while the lease (KEYS[2]) is still ours (the fencing check and the
# write in one step): a decision that outlived its lease must not overwrite the state
# the next holder wrote.
_PUT_IF_HELD = """
if redis.call('get', KEYS[2]) ~= ARGV[2] then
    return 0
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
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
                 timeout_s: float = 0.5,
                 max_state_bytes: int = DEFAULT_MAX_STATE_BYTES) -> None:
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
        lock_wait_s = min(lock_ttl_ms / 1000, 2.0) if lock_wait_s is None else lock_wait_s
        release = self._redis.register_script(_RELEASE)
        self._put_if_held = self._redis.register_script(_PUT_IF_HELD)
        self._locks = SessionLeases(
            self.where, lock_ttl_ms / 1000, lock_wait_s, (0.002, 0.05), self._take_lease,
            lambda key, token: release(keys=[key], args=[token]), redis.RedisError)
        self._max_state = max_state_bytes
        self.refused = 0  # states over max_state_bytes, not kept
        self.fenced = 0  # writes refused because the lease had expired

    def get(self, session_id: str) -> bytes | None:
        state = self._call("read a session", self._redis.get, self._prefix + session_id)
        return cast("bytes | None", state)  # a sync client with decode_responses off

    def put(self, session_id: str, state: bytes) -> None:
        """Write the state; inside `lock()`, only while its lease is held (else
        `SessionLeaseLost`, nothing written)."""
        key = self._prefix + session_id
        token = self._locks.held(session_id)
        if len(state) > self._max_state:
            self.refused += 1
            warn_too_big("redis", session_id, len(state), self._max_state)
            if token is None or self._call("check a session's lease", self._redis.get,
                                           self._lock_prefix + session_id) == token.encode():
                self._call("drop a session", self._redis.delete, key)
            return
        if token is None:  # not inside lock(): nothing to fence against
            self._call("write a session", self._redis.set, key, state, px=self._ttl_ms)
            return
        written = self._call("write a session", self._put_if_held,
                             keys=[key, self._lock_prefix + session_id],
                             args=[state, token, self._ttl_ms])
        if not written:
            self.fenced += 1
            raise self._locks.lost(session_id)

    def lock(self, session_id: str) -> AbstractContextManager[None]:
        return self._locks.lock(session_id, self._lock_prefix + session_id,
                                 secrets.token_hex(16))

    def _take_lease(self, key: str, token: str) -> bool:
        return bool(self._call("lock a session", self._redis.set, key, token, nx=True,
                               px=self._lock_ttl_ms))

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
