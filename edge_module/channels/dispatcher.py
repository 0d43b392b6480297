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

A decision never waits on the outbox's write lock: it tries to write for at most
`DECIDE_WAIT_S`, and when another writer holds the file (a sibling worker, a backup, an
operator's sqlite3 shell) its records, and conversions' cancels (one per session: the
latest), wait in this process's memory, in order (at most `MAX_WAITING` of them), for the
writer thread, which waits for the lock as long as it takes. Those, and only those, die
with a killed process; a stop that cannot write them counts them dropped
(`stopped_waiting`). A cancel is kept in the outbox with its moment, so a record and its
session's cancel waiting in two worker processes may be written in either order.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from .outbox import Claimed, Limits, Outbox, OutboxError
from .sinks import Refused, Retry, Sink

log = logging.getLogger("edge.channels")

BATCH = 64  # records claimed at once by `run_once`
SENDERS = 8  # sends in flight at once
IDLE_WAKE_S = 1.0  # the longest sleep: a record another worker process added is seen by then
DECIDE_WAIT_S = 0.005  # the longest a decision waits for the outbox's write lock
WRITER_WAIT_S = 30.0  # the writer thread's wait for it (then it tries again)
MAX_WAITING = 10_000  # records and cancels waiting in memory for the writer; beyond, records
#                       are dropped outbox_busy
ORPHANS_EVERY_MS = 5_000  # how often leases of dead worker processes are looked for
PURGE_EVERY_MS = 60_000  # how often settled keys older than max_age are forgotten


NEVER = 2**62


def _wall_ms() -> int:
    return int(time.time() * 1000)


def limits(max_outbox: int, anonymous_share: float, max_per_session: int,
           max_per_recipient: int) -> Limits:
    """The outbox's bounds from the edge's settings (EDGE_CHANNEL_*)."""
    return Limits(pending=max(0, max_outbox),
                  anonymous=int(max(0, max_outbox) * min(max(anonymous_share, 0), 1)),
                  per_session=max(1, max_per_session),
                  per_recipient=max(1, max_per_recipient))


Result = Retry | Refused | None


class ChannelDispatcher:
    def __init__(self, outbox: Outbox | None, sink: Sink | None, *, max_attempts: int = 300,
                 max_age_s: float = 86_400.0, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 300.0, lease_s: float = 120.0,
                 max_outbox: int = 1_000_000, anonymous_share: float = 0.5,
                 max_per_session: int = 8, max_per_recipient: int = 32,
                 keep_keys_s: float | None = None,
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
        # bounded, and what anonymous records (no verified recipient) may take of it too,
        # so a customer the site signed for always finds room; one session, and one
        # verified recipient, hold only a few waiting records. Checked, exactly, in the
        # transaction that adds a record (the file is shared by the host's workers).
        self.max_outbox = max_outbox
        self.limits = limits(max_outbox, anonymous_share, max_per_session, max_per_recipient)
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
        self._writer: threading.Thread | None = None
        # writes a decision could not make at once, in order: ["add", records] or
        # ["cancel", session_id, now_ms] (one per session not yet being written: a later
        # cancel of it moves its moment); `_waiting` counts their records and cancels
        self._writes: deque[list[Any]] = deque()
        self._cancels: dict[str, list[Any]] = {}  # session -> its cancel in `_writes`
        self._waiting = 0
        self._written = threading.Event()  # set when there is something to write
        self._flushing = threading.Lock()  # one flush at a time (the writer, run_once, stop)
        self._senders: ThreadPoolExecutor | None = None
        self._done: queue.SimpleQueue[tuple[Claimed, Result]] = queue.SimpleQueue()
        self._inflight = 0  # the timer thread's own count
        self._inflight_keys: set[str] = set()  # timer thread only
        self._futures: set[Future[Result]] = set()
        self._sleep_until = NEVER  # when the timer wakes next (ms): an earlier record wakes it
        self._purged_ms = 0
        self._orphans_ms: int | None = None  # None: not looked yet (this process starting)

    # -- on the decision path ----------------------------------------------------------------
    def enqueue(self, records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """Keep a decision's delivery records; with no sink they are counted dropped
        (`no_sink`). Returns the records refused, with why (`outbox_full`,
        `outbox_full_anonymous`, `session_full`, `recipient_full`, `outbox_busy`); the ones
        handed to the writer thread are not among them (it counts its refusals in
        `dropped` only). Never waits for the outbox's lock more than DECIDE_WAIT_S."""
        if not records:
            return []
        if self.sink is None or self.outbox is None:
            self._drop("no_sink", len(records))
            return []
        now = self._clock_ms()
        for r in records:  # the moment a later conversion's cancel is compared with
            if type(r.get("decided_ms")) is not int:
                r["decided_ms"] = now
        with self._lock:
            behind = bool(self._writes)  # never ahead of writes already waiting
        if not behind:
            try:
                added, refused = self.outbox.admit(records, self.limits, DECIDE_WAIT_S)
            except OutboxError:  # another writer holds the file: the writer thread waits
                pass
            else:
                return self._added(added, refused, records)
        if not self._wait_write(["add", records], len(records)):
            self._drop("outbox_busy", len(records))
            return [(r, "outbox_busy") for r in records]
        return []

    def _added(self, added: int, refused: list[tuple[dict[str, Any], str]],
               records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """Count an add; the records refused (the ones its session's cancel reached first
        are counted cancelled, not among them)."""
        with self._lock:
            self.queued += added
            for _record, why in refused:
                if why == "cancelled":
                    self.cancelled += 1
                else:
                    self.dropped[why] = self.dropped.get(why, 0) + 1
        if min(r["due_ms"] for r in records) < self._sleep_until:
            self._wake.set()  # due before the timer would look again
        return [(r, why) for r, why in refused if why != "cancelled"]

    def _wait_write(self, write: list[Any], n: int) -> bool:
        """Hand a write (of `n` records, or a cancel) to the writer thread; a cancel of a
        session whose cancel waits already only moves its moment. False if too many
        records and cancels wait already."""
        with self._lock:
            if write[0] == "cancel" and (waiting := self._cancels.get(write[1])) is not None:
                waiting[2] = max(waiting[2], write[2])
                return True
            if self._waiting + n > MAX_WAITING:
                return False
            self._writes.append(write)
            self._waiting += n
            if write[0] == "cancel":
                self._cancels[write[1]] = write
        self._written.set()
        return True

    @staticmethod
    def _size(write: list[Any]) -> int:
        return len(write[1]) if write[0] == "add" else 1

    def cancel(self, session_id: str) -> int:
        """The visitor converted: their deliveries still waiting for a later moment (a
        reminder, an offer) are no longer wanted; how many were cancelled (0 when the
        cancel waits for the writer thread, which counts them in `cancelled`; a cancel of
        the same session waiting already only moves its moment). The cancel is kept in the
        outbox, so records of the session still waiting to be written (in any worker) are
        cancelled when added. Never waits for the outbox's lock."""
        if self.outbox is None:
            return 0
        now = self._clock_ms()
        with self._lock:
            behind = bool(self._writes)
        if not behind:
            try:
                n = self.outbox.cancel_session(session_id, now, DECIDE_WAIT_S)
            except OutboxError:
                pass
            else:
                with self._lock:
                    self.cancelled += n
                return n
        if not self._wait_write(["cancel", session_id, now], 1):
            log.warning("a conversion's cancel not kept: %d records and cancels wait for the "
                        "outbox", self._waiting)
        return 0

    def flush(self, wait_s: float = WRITER_WAIT_S, until: float | None = None) -> None:
        """Make the writes waiting in memory, in order (the writer thread; `run_once`).
        Raises OutboxError, the failed write kept first, when the outbox cannot be
        written; `until` (time.monotonic) stops it between writes."""
        assert self.outbox is not None
        with self._flushing:
            self._flush(wait_s, until)

    def _flush(self, wait_s: float, until: float | None) -> None:
        assert self.outbox is not None
        while until is None or time.monotonic() < until:
            with self._lock:
                if not self._writes:
                    return
                write = self._writes[0]
                if write[0] == "cancel" and self._cancels.get(write[1]) is write:
                    del self._cancels[write[1]]  # being written: a later cancel waits anew
            try:
                if write[0] == "add":
                    records = write[1]
                    added, refused = self.outbox.admit(records, self.limits, wait_s)
                    self._added(added, refused, records)
                else:
                    n = self.outbox.cancel_session(write[1], write[2], wait_s)
                    with self._lock:
                        self.cancelled += n
            except OutboxError:
                raise  # kept first, tried again
            except Exception:  # this write can never be made: it must not hold the others
                log.exception("a waiting channel outbox write failed; dropped")
                if write[0] == "add":
                    self._drop("outbox_error", len(write[1]))
            with self._lock:
                if self._writes and self._writes[0] is write:
                    self._writes.popleft()
                    self._waiting -= self._size(write)
                elif write[0] == "add":  # written after the stop counted it lost: it is not
                    self.dropped["stopped_waiting"] -= len(write[1])

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._written.wait(0.5)
            self._written.clear()
            try:
                self.flush(until=None)
            except OutboxError as exc:
                self.last_error = str(exc)[:300]
                log.warning("%d delivery record(s) wait in memory for the outbox: %s",
                            self._waiting, exc)
                self._stop.wait(0.5)
            except Exception:  # the writer must outlive any surprise
                log.exception("channel outbox writer failed")
                self._stop.wait(0.5)

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
        self._writer = threading.Thread(target=self._write_loop, name="channel-outbox-writer",
                                        daemon=True)
        self._writer.start()

    def stop(self, timeout_s: float = 5.0, sends_s: float = 2.0) -> None:
        """Stop claiming; sends in flight get `sends_s` to finish and are settled (one
        abandoned beyond that is sent again after a restart, under the same key)."""
        self._stop.set()
        self._wake.set()
        self._written.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._writer is not None:
            self._writer.join(timeout_s)
        writer_done = self._writer is None or not self._writer.is_alive()
        if self._writes and self.outbox is not None and writer_done:  # within timeout_s
            try:
                self.flush(wait_s=timeout_s, until=time.monotonic() + timeout_s)
            except OutboxError as exc:
                log.warning("%s", exc)
        self._abandon_writes()
        if self._senders is not None:
            self._senders.shutdown(wait=False, cancel_futures=True)
            wait(list(self._futures), timeout=sends_s)
            try:
                self._settle_finished()
            except OutboxError as exc:
                log.warning("sends finished at stop not settled: %s", exc)

    def _abandon_writes(self) -> None:
        """At the stop: the writes still waiting for the outbox's lock are lost with the
        process; their records are counted dropped (`stopped_waiting`)."""
        with self._lock:
            writes = list(self._writes)
            self._writes.clear()
            self._cancels.clear()
            self._waiting = 0
        records = sum(len(w[1]) for w in writes if w[0] == "add")
        cancels = len(writes) - sum(1 for w in writes if w[0] == "add")
        if records:
            self._drop("stopped_waiting", records)
        if writes:
            log.error("%d delivery record(s) and %d conversion cancel(s) not kept: the outbox "
                      "stayed locked through the stop", records, cancels)

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
        if now - self._purged_ms >= PURGE_EVERY_MS:
            # settled keys: kept keep_keys_ms, and no more of them than waiting records
            self.outbox.purge(now, self.keep_keys_ms, max_keys=self.max_outbox)
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
        self.flush()
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
        pending = set_aside = settled_keys = None
        if self.outbox is not None:
            try:
                pending, set_aside = self.outbox.counts()
                settled_keys = self.outbox.tally()["settled"]
            except OutboxError:
                pass
        with self._lock:
            return {"sink": self.sink.name if self.sink is not None else None,
                    "queued": self.queued, "delivered": self.delivered,
                    "retried": self.retried, "cancelled": self.cancelled,
                    "dropped": sum(self.dropped.values()),
                    "dropped_by_reason": dict(self.dropped), "pending": pending,
                    "set_aside": set_aside, "settled_keys": settled_keys,
                    "waiting_writes": self._waiting, "last_error": self.last_error}
