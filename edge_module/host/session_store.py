"""Where the edge keeps each visitor's session state between requests.

The state is the opaque blob the decision core returns (marshal bytes on the host's
packed path). `SessionStore` is the seam a
shared store (Redis, for several hosts of one PoP) implements; the default keeps states in
memory, bounded in count and expiring after a period of inactivity.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Protocol


class SessionStore(Protocol):
    def get(self, session_id: str) -> bytes | None:
        """The stored state, or None for a new (or expired) session."""

    def put(self, session_id: str, state: bytes) -> None:
        """Store the state, renewing the session's time to live."""

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

    def __len__(self) -> int:
        return len(self._items)


class SessionLocks:
    """Serialises decisions of one session (two tabs, a retry) without a global lock."""

    def __init__(self, stripes: int = 256) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def __call__(self, session_id: str) -> threading.Lock:
        return self._locks[hash(session_id) % len(self._locks)]
