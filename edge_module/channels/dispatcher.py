"""Sends the outbox's deliveries at their due moment: the edge's own timer.

One thread per edge process sleeps until the earliest record falls due (or a decision adds
an earlier one, or a send finishes), claims what is due, and hands each record to one of
`SENDERS` sender threads, claiming more as soon as one is free, so a slow receiver holds
only its own sends. A delivery the sink could not take is tried again with exponential
backoff and jitter (between half and all of the step, and never sooner than the receiver's
Retry-After asks, up to the backoff's ceiling); one refused outright, tried
`max_attempts` times, or found more than `max_age_s` past due (before or after a send) is
set aside and counted dropped with its reason. Decisions only ever add to the outbox (a
few SQLite statements); sending never runs on a decision thread.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from .outbox import Claimed, Outbox, OutboxError
from .sinks import Refused, Retry, Sink

log = logging.getLogger("edge.channels")

BATCH = 64  # records claimed at once by `run_once`
SENDERS = 8  # sends in flight at once
IDLE_WAKE_S = 1.0  # the longest sleep: a record another worker process added is seen by then
SIZE_EVERY_MS = 5_000  # how often the outbox's size is counted again (for its bound)
ORPHANS_EVERY_MS = 5_000  # how often leases of dead worker processes are looked for
PURGE_EVERY_MS = 60_000  # how often settled keys older than max_age are forgotten


NEVER = 2**62


def _wall_ms() -> int:
    return int(time.time() * 1000)


Result = Retry | Refused | None


class ChannelDispatcher:
    def __init__(self, outbox: Outbox | None, sink: Sink | None, *, max_attempts: int = 300,
                 max_age_s: float = 86_400.0, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 300.0, lease_s: float = 120.0,
                 max_outbox: int = 1_000_000, keep_keys_s: float | None = None,
                 clock_ms: Callable[[], int] = _wall_ms) -> None:
        self.outbox = outbox
        self.sink = sink
        self.max_attempts = max(1, max_attempts)
        self.max_age_ms = int(max_age_s * 1000)
        self.backoff_base_ms = int(backoff_base_s * 1000)
        self.backoff_max_ms = int(backoff_max_s * 1000)
        self.lease_ms = int(lease_s * 1000)
        # how long a settled record's key is kept: a replayed state (a client-carried token
        # lives the session TTL) must find it, or the same firing is sent again
        self.keep_keys_ms = max(self.max_age_ms, int((keep_keys_s or 0) * 1000))
        # Visitors can be made up at will, and each may fire a delayed email: the outbox is
        # bounded. Its size is counted every few seconds and grown by this process's
        # additions in between, not counted per decision.
        self.max_outbox = max_outbox
        self._outbox_size = outbox.counts()[0] if outbox is not None else 0
        self._clock_ms = clock_ms
        self.queued = 0  # records added by this process's decisions
        self.delivered = 0
        self.retried = 0
        self.cancelled = 0  # waiting deliveries of visitors who converted first
        self.dropped: dict[str, int] = {}  # reason -> records
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders: ThreadPoolExecutor | None = None
        self._done: queue.SimpleQueue[tuple[Claimed, Result]] = queue.SimpleQueue()
        self._inflight = 0  # the timer thread's own count
        self._inflight_keys: set[str] = set()  # timer thread only
        self._futures: set[Future[Result]] = set()
        self._sleep_until = NEVER  # when the timer wakes next (ms): an earlier record wakes it
        self._sized_ms = self._purged_ms = 0
        self._orphans_ms: int | None = None  # None: not looked yet (this process starting)

    # -- on the decision path ----------------------------------------------------------------
    def enqueue(self, records: list[dict[str, Any]]) -> None:
        """Keep a decision's delivery records; with no sink they are counted dropped. Raises
        OutboxError when the outbox cannot be written (the caller counts and logs it)."""
        if not records:
            return
        if self.sink is None or self.outbox is None:
            self._drop("no_sink", len(records))
            return
        if self._outbox_size + len(records) > self.max_outbox:
            self._drop("outbox_full", len(records))
            return
        added = self.outbox.add(records)
        with self._lock:
            self.queued += added
            self._outbox_size += added
        if min(r["due_ms"] for r in records) < self._sleep_until:
            self._wake.set()  # due before the timer would look again

    def cancel(self, session_id: str) -> int:
        """The visitor converted: their deliveries still waiting for a later moment (a
        reminder, an offer) are no longer wanted. Raises OutboxError."""
        if self.outbox is None:
            return 0
        n = self.outbox.cancel_session(session_id, self._clock_ms())
        with self._lock:
            self.cancelled += n
        return n

    def outbox_failed(self, records: int, exc: Exception) -> None:
        self._drop("outbox_error", records)
        self.last_error = str(exc)[:300]

    def drop(self, reason: str, records: int) -> None:
        """Records the decision made but that will not be sent (counted, with why)."""
        self._drop(reason, records)

    # -- the timer ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.sink is None or self.outbox is None or self._thread is not None:
            return
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="channel-send")
        self._thread = threading.Thread(target=self._loop, name="channels", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0, sends_s: float = 2.0) -> None:
        """Stop claiming; sends in flight get `sends_s` to finish and are settled (one
        abandoned beyond that is sent again after a restart, under the same key)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._senders is not None:
            self._senders.shutdown(wait=False, cancel_futures=True)
            wait(list(self._futures), timeout=sends_s)
            try:
                self._settle_finished()
            except OutboxError as exc:
                log.warning("sends finished at stop not settled: %s", exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sleep_until = NEVER  # awake: a record added now makes the next wait short
            try:
                self._pump()
                wait_s = self._sleep_s()
            except OutboxError as exc:
                self.last_error = str(exc)[:300]
                log.warning("%s", exc)
                wait_s = IDLE_WAKE_S
            except Exception:  # the timer must outlive any surprise
                log.exception("channel dispatcher round failed")
                wait_s = IDLE_WAKE_S
            self._sleep_until = self._clock_ms() + int(wait_s * 1000)
            self._wake.wait(wait_s)
            self._wake.clear()

    def _settle_finished(self) -> None:
        """Settle the sends that have finished. One whose settle fails (the outbox locked
        too long) is kept for the next round, not forgotten until its lease ends."""
        while True:
            try:
                item, result = self._done.get_nowait()
            except queue.Empty:
                return
            try:
                self._settle(item, result)
            except OutboxError:
                self._done.put((item, result))
                raise
            self._inflight -= 1
            self._inflight_keys.discard(item.key)

    def _pump(self) -> None:
        """Settle finished sends, start new ones while senders are free, keep the books."""
        assert self.outbox is not None and self._senders is not None
        self._settle_finished()
        now = self._clock_ms()
        if self._orphans_ms is None or now - self._orphans_ms >= ORPHANS_EVERY_MS:
            # Sends a killed process had claimed go now, not when their lease runs out.
            self.outbox.release_orphans(now, starting=self._orphans_ms is None)
            self._expire(now)
            self._orphans_ms = now
        for item in self.outbox.claim(now, SENDERS - self._inflight, self.lease_ms):
            if item.key in self._inflight_keys:  # its lease ran out under a clock step
                continue
            if self._expired(item, now):
                continue
            self._inflight += 1
            self._inflight_keys.add(item.key)
            future = self._senders.submit(self._send, item)
            self._futures.add(future)
            future.add_done_callback(lambda f, item=item: self._finished(item, f))
        if now - self._sized_ms >= SIZE_EVERY_MS:
            self._outbox_size, self._sized_ms = self.outbox.counts()[0], now
        if now - self._purged_ms >= PURGE_EVERY_MS:
            self.outbox.purge(now, self.keep_keys_ms)
            self._purged_ms = now

    def _expire(self, now: int) -> None:
        """Set aside in bulk what is too long past due to be worth sending."""
        assert self.outbox is not None
        while expired := self.outbox.expire(now, self.max_age_ms):
            log.warning("%d deliveries more than %d s past due set aside (e.g. %s)",
                        len(expired), self.max_age_ms // 1000, expired[0][0])
            self._drop("expired", len(expired))

    def _finished(self, item: Claimed, future: Future[Result]) -> None:
        self._futures.discard(future)
        try:
            result = future.result()
        except BaseException as exc:  # cancelled at shutdown, or a bug: sent again later
            result = Retry(f"send interrupted: {type(exc).__name__}")
        self._done.put((item, result))
        self._wake.set()

    def _sleep_s(self) -> float:
        assert self.outbox is not None
        if self._inflight >= SENDERS:
            return IDLE_WAKE_S  # a finishing send wakes the timer
        due = self.outbox.next_due()
        if due is None:
            return IDLE_WAKE_S
        return min(max(0.0, (due - self._clock_ms()) / 1000), IDLE_WAKE_S)

    def run_once(self) -> int:
        """Send what is due now and wait for the answers; how many were delivered (tests,
        and a caller without the timer thread)."""
        if self.sink is None or self.outbox is None:
            return 0
        delivered = 0
        while not self._stop.is_set():
            now = self._clock_ms()
            self._expire(now)
            claimed = self.outbox.claim(now, BATCH, self.lease_ms)
            if not claimed:
                break
            for item in claimed:
                if not self._expired(item, now):
                    delivered += self._settle(item, self._send(item))
        return delivered

    def _expired(self, item: Claimed, now: int) -> bool:
        """Too long past due to be worth sending (an edge down for days: stale reminders)."""
        if now - item.due_ms < self.max_age_ms:
            return False
        self._set_aside(item, "expired", f"{(now - item.due_ms) // 1000} s past due", now)
        return True

    def _send(self, item: Claimed) -> Result:
        assert self.sink is not None
        try:
            return self.sink.send(item.key, item.body.encode())
        except Exception as exc:  # a sink's bug is a retry, not a lost delivery
            log.exception("channel sink %s failed", self.sink.name)
            return Retry(f"sink error: {type(exc).__name__}: {exc}"[:300])

    def _settle(self, item: Claimed, result: Result) -> int:
        assert self.outbox is not None
        now = self._clock_ms()
        if result is None:
            self.outbox.sent(item.key, now)
            with self._lock:
                self.delivered += 1
            return 1
        self.last_error = result.reason
        if isinstance(result, Refused):
            self._set_aside(item, "refused", result.reason, now)
        elif item.attempts + 1 >= self.max_attempts:
            self._set_aside(item, "gave_up", result.reason, now)
        elif now - item.due_ms >= self.max_age_ms:
            self._set_aside(item, "expired", result.reason, now)
        else:
            step = min(self.backoff_max_ms, self.backoff_base_ms * 2 ** min(item.attempts, 30))
            wait = max(random.randint(step // 2, step),
                       min(self.backoff_max_ms, int(result.after_s * 1000)))
            self.outbox.retry(item.key, now + wait, result.reason)
            with self._lock:
                self.retried += 1
        return 0

    def _set_aside(self, item: Claimed, reason: str, detail: str, now: int) -> None:
        assert self.outbox is not None
        log.warning("delivery %s (%s) set aside: %s: %s", item.key, item.channel, reason, detail)
        self.outbox.set_aside(item, f"{reason}: {detail}", now)
        self._drop(reason, 1)

    def _drop(self, reason: str, n: int) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def status(self) -> dict[str, Any]:
        """For /healthz and metrics: this process's counts, and the outbox's (shared)."""
        pending = set_aside = None
        if self.outbox is not None:
            try:
                pending, set_aside = self.outbox.counts()
            except OutboxError:
                pass
        with self._lock:
            return {"sink": self.sink.name if self.sink is not None else None,
                    "queued": self.queued, "delivered": self.delivered,
                    "retried": self.retried, "cancelled": self.cancelled,
                    "dropped": sum(self.dropped.values()),
                    "dropped_by_reason": dict(self.dropped), "pending": pending,
                    "set_aside": set_aside, "last_error": self.last_error}
