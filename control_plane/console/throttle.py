"""Failed console sign-ins, bounded per client address: a token is guessed online one form
post at a time (821 wrong ones in 5 s from one client, unthrottled, before this).

Each address has a bucket of `burst` failures, refilled at one per REFILL_S; an address
whose bucket is empty is answered 429 with Retry-After before its token is even compared
(else the right guess would still be told apart at full speed). A sign-in that succeeds
costs nothing. Per address (IPv6: per /64, what one client holds), never global, so one
client cannot lock the others out; the addresses remembered are bounded (the least
recently seen forgotten first), so the table's memory is too. Behind a proxy every client
is the proxy's address: CONTROL_CONSOLE_SIGNIN_FAILURES=0 there, and limit at the proxy.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict

REFILL_S = 6.0  # one more failure allowed per this much time: 10 a minute
MAX_ADDRESSES = 10_000


def client_key(address: str | None) -> str:
    """The throttle's key of a client address: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return str(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SignInThrottle:
    def __init__(self, burst: int, refill_s: float = REFILL_S,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.burst, self.refill_s, self.max_addresses = burst, refill_s, max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # left, at
        self._lock = threading.Lock()

    def _left(self, key: str, now: float) -> float:
        left, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), left + max(0.0, now - at) / self.refill_s)

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until `address` may try again (None: it may now)."""
        if not self.burst:
            return None
        now, key = time.monotonic(), client_key(address)
        with self._lock:
            left = self._left(key, now)
        return None if left >= 1 else max(1, math.ceil((1 - left) * self.refill_s))

    def failed(self, address: str | None) -> None:
        """`address` sent a wrong token: one failure less in its bucket."""
        if not self.burst:
            return
        now, key = time.monotonic(), client_key(address)
        with self._lock:
            self._buckets[key] = (max(0.0, self._left(key, now) - 1), now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
