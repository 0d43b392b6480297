"""The guest's sessions between requests: the last `Session` of each recent session id,
kept by the instance that decided it, so that a session served again by the same instance
skips reading its state (unmarshalling it and rebuilding the `Session`).

The host's store stays the source of truth. A kept session is used only when the state
the host sends is, byte for byte, the state this instance wrote for it last: the bytes are
the version. A state written by another instance, an older one, or one changed in the store
is read in full, as it always is. An entry is taken out for the decision and put back only
when the decision succeeds, so a decision that fails, or is stopped, leaves nothing
half-changed behind.

A kept session decides as its state would because `Session.to_state` leaves the session
exactly what `Session.restore` rebuilds from the state: it drops what the state leaves out,
and every value the core writes is of a type the state accepts (integer timestamps, its
own containers). tests/core/test_session_cache.py checks both across the whole language,
natively and in the component. Bounded by entries and by the bytes of the states.
"""

from __future__ import annotations

from .session import Session

MAX_KEPT_SESSIONS = 512
# The states' own bytes. The live objects take 2-3 times more for common states, up to 14
# times for a context of empty lists: at most ~7 MiB of the instance's memory (64 MiB by
# default, ~13 MiB needed to start).
MAX_KEPT_STATE_BYTES = 512 * 1024


class SessionCache:
    def __init__(self, max_entries: int = MAX_KEPT_SESSIONS,
                 max_bytes: int = MAX_KEPT_STATE_BYTES) -> None:
        # insertion order is recency: an entry is taken out and put back at the end
        self._entries: dict[str, tuple[bytes, Session]] = {}
        self._bytes = 0
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, session_id: str, state: object) -> Session | None:
        """The kept session if `state` is exactly what it wrote last; the entry leaves
        the cache either way (a mismatch means a newer state exists elsewhere)."""
        entry = self._entries.pop(session_id, None)
        if entry is None:
            self.misses += 1
            return None
        self._bytes -= len(entry[0])
        if entry[0] != state:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def keep(self, session_id: str, state: bytes, sess: Session) -> None:
        """Keep `sess`, whose state is `state` (what the host will send back)."""
        if len(state) > self.max_bytes:
            return
        old = self._entries.pop(session_id, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._entries[session_id] = (state, sess)
        self._bytes += len(state)
        entries = self._entries
        while len(entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(entries))
            self._bytes -= len(entries.pop(oldest)[0])

    def clear(self) -> None:
        """Forget every session (a new snapshot: fire records are kept per trigger)."""
        self._entries.clear()
        self._bytes = 0
