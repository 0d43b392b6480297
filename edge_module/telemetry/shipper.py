"""Ships the decision log to the control plane (`POST /v1/telemetry`, edge token): flushes
the buffer to the spool, then sends spooled batches oldest first, deleting each once the
control plane's ingest has answered for it (a 2xx that is not its answer, from a portal or
a proxy, keeps the batch; a redirect is never followed, and keeps it too).

Failures are told apart: when the control plane cannot be reached or is unavailable (no
answer, a 3xx, 401/403/404, 408, 429, any 5xx) every batch waits, with exponential backoff and
jitter (never sooner than the answer's Retry-After, up to the backoff's ceiling), however
long that takes. A 5xx says nothing against the batch (a bug or a proxy
in front answers it for every batch alike), so a batch answered one is never set aside:
it waits its own backoff too, so that one batch the control plane fails on does not hold
the others back, and is sent again until it goes through. When the control plane refuses
one batch (any other 4xx) that batch alone is retried later and the others go on; after
`max_tries` refusals it is set aside (`set-aside/` in the spool, at most `max_set_aside`
files, the oldest removed first) and its records are counted as dropped, with the
reason. A 413 splits the batch in two and sends the halves. Records the control plane
rejects one by one are counted as dropped under its reason code. Moving a set-aside file
back into the spool resends it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

from ..host.periodic import PeriodicTask
from ..http_deadline import Answer, post
from .log_spool import SPOOL_SUFFIX, DecisionLog, read_lines, write_batch_file
from .status_report import TOKEN_HINT

log = logging.getLogger("edge.telemetry")

SET_ASIDE = "set-aside"
DEFAULT_MAX_TRIES = 5  # EDGE_TELEMETRY_MAX_TRIES
DEFAULT_MAX_SET_ASIDE = 100  # EDGE_TELEMETRY_MAX_SET_ASIDE
# answers that say nothing about the batch: the control plane is away, misconfigured or busy
# (and every 5xx: `_send`)
UNAVAILABLE = frozenset((401, 403, 404, 408, 429))


class TelemetryShipper(PeriodicTask):
    name = "telemetry"

    def __init__(self, decision_log: DecisionLog, control_url: str, token: str,
                 interval_s: float = 0.5, timeout_s: float = 5.0, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 60.0, max_files_per_run: int = 50, *,
                 max_tries: int | None = None, max_set_aside: int | None = None) -> None:
        super().__init__(interval_s)
        max_tries = DEFAULT_MAX_TRIES if max_tries is None else max_tries
        max_set_aside = DEFAULT_MAX_SET_ASIDE if max_set_aside is None else max_set_aside
        self.log = decision_log
        self._url = control_url.rstrip("/") + "/v1/telemetry"
        self._token = token
        self._timeout = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_files_per_run = max_files_per_run
        self.max_tries = max(1, max_tries)
        self.max_set_aside = max(0, max_set_aside)
        self.failures = 0  # consecutive failed sends (control plane unavailable)
        self.next_attempt = 0.0  # time.monotonic() before which nothing is sent
        self.shipped = 0  # batch files delivered by this process
        self.shipped_records = 0  # records in them the control plane took (or had already)
        self.split = 0  # batch files split in two after a 413
        self.set_aside = 0  # batch files set aside by this process
        self.last_error: str | None = None
        self._tries: dict[str, int] = {}  # batch file name -> refusals so far
        self._not_before: dict[str, float] = {}  # batch file name -> its own backoff
        self._held: dict[str, int] = {}  # batch file name -> 5xx answers so far
        self._asked = 0.0  # seconds the last answer asked to wait (Retry-After)

    @property
    def set_aside_dir(self) -> Path:
        return self.log.spool_dir / SET_ASIDE

    def run_once(self) -> int:
        """Flush, then send what the spool holds (unless backing off); batches delivered."""
        self.log.flush()
        now = time.monotonic()
        if now < self.next_attempt:
            return 0
        files = self.log.spool_files()
        names = {p.name for p in files}
        for table in (self._tries, self._not_before, self._held):  # files no longer spooled
            for name in [n for n in table if n not in names]:
                del table[name]
        sent = held_in_a_row = 0
        for path in files[: self.max_files_per_run]:
            if self._not_before.get(path.name, 0.0) > now:
                continue  # a refused batch waits its turn; the others go on
            try:
                result = self._send(path)
            except Exception as exc:  # a surprise with one batch: it waits, the others go on
                log.exception("telemetry batch %s could not be sent", path.name)
                self._hold(path)
                self.last_error = f"telemetry batch {path.name}: {type(exc).__name__}: {exc}"
                continue
            if result == "held":  # one more batch tells a batch it fails on from an outage
                held_in_a_row += 1
                if held_in_a_row < 2:
                    continue
            if result in ("unavailable", "held"):
                self._back_off()
                break
            held_in_a_row = 0
            sent += result == "delivered"
        return sent

    def close(self) -> None:
        """Stop, then flush and make one last delivery attempt, backoff or not: nothing
        buffered is lost on a clean stop, and the spool keeps what is not delivered."""
        self.stop()
        self.next_attempt = 0.0
        self.run_once()

    def _send(self, path: Path) -> str:
        """One batch file: delivered, split, refused (kept or set aside), held (a 5xx) or
        unavailable."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # delivered by a concurrent run (close() racing the thread)
            return "delivered"
        self._asked = 0.0
        try:
            code, location, answer, asked = self._exchange(data)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # BadStatusLine...
            self._fail(f"control plane unreachable for telemetry: {exc}")
            return "unavailable"
        if code < 200 or 300 <= code < 400:  # a 1xx (103) or a redirect: not the ingest's
            self._fail(f"control plane answered {code} to a telemetry batch (to "
                       f"{str(location)[:200]}): check EDGE_CONTROL_URL")
            return "unavailable"
        if code >= 300:
            if code in UNAVAILABLE or code >= 500:
                # the wait a busy control plane asks for (Retry-After), within the backoff's
                # own ceiling; the jittered backoff decides when it asks for less
                self._asked = min(asked or 0.0, self.backoff_max_s)
                self._fail(f"control plane answered {code} to a telemetry batch"
                           + (TOKEN_HINT if code in (401, 403) else ""))
                if code >= 500:
                    self._hold(path)
                    return "held"
                return "unavailable"
            if code == 413:  # never taken as is: in halves, or set aside if one record
                if self._split(path):
                    return "split"
                self._set_aside(path, "too_large")
                return "set_aside"
            return self._refused(path, f"http_{code}")
        if not _is_ingest_answer(answer):  # a 2xx from something else (a portal, a proxy)
            self._fail("a telemetry batch was answered 2xx, but not by the control plane's "
                       f"ingest ({answer[:80]!r}): the batch stays spooled")
            return "unavailable"
        self._count_rejected(answer)
        path.unlink(missing_ok=True)
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error = None
        self.shipped += 1
        return "delivered"

    def _exchange(self, data: bytes) -> Answer:
        """POST one batch: the answer's status, Location, body (a 2xx's only) and
        Retry-After, all within the timeout; a redirect is never followed
        (`http_deadline.post`)."""
        return post(self._url, data, {"Content-Type": "application/x-ndjson",
                                      "Content-Encoding": "gzip",
                                      "Authorization": f"Bearer {self._token}"},
                    self._timeout, MAX_ANSWER_BYTES)

    def _count_rejected(self, answer: bytes) -> None:
        """The records the control plane refused one by one, counted by its reason code."""
        try:
            doc = json.loads(answer)
            by_code = doc.get("rejected_by_code") or {}
            counts = [(str(code)[:64], n) for code, n in by_code.items()
                      if type(n) is int and 0 < n < 1 << 32]  # 1e999 is JSON, no count
            taken = [doc.get("accepted", 0), doc.get("duplicates", 0)]
            self.shipped_records += sum(n for n in taken if type(n) is int and n >= 0)
        except (ValueError, TypeError, AttributeError):
            return  # an older control plane: it answered stored/duplicates only
        for code, n in counts:
            self.log.drop(n, f"rejected:{code}")
        if counts:
            log.warning("control plane rejected telemetry records: %s",
                        ", ".join(f"{n} {code}" for code, n in counts))

    def _split(self, path: Path) -> bool:
        """A batch too large for the control plane, as two spool files of half the records
        each (False if it holds a single record or cannot be read)."""
        try:
            lines = read_lines(path)
        except (OSError, EOFError):
            return False
        if len(lines) < 2:
            return False
        half = len(lines) // 2
        stem = path.name[: -len(SPOOL_SUFFIX)]
        for suffix, part in (("a", lines[:half]), ("b", lines[half:])):
            write_batch_file(path.parent, f"{stem}{suffix}",
                             gzip.compress(b"".join(line + b"\n" for line in part), 6))
        path.unlink(missing_ok=True)  # a crash before this resends both: ingest dedupes
        self.split += 1
        log.warning("telemetry batch %s too large for the control plane (413): split in two",
                    path.name)
        return True

    def _hold(self, path: Path) -> None:
        """A batch the control plane failed on (5xx): kept, and sent again after its own
        backoff, however many times it takes."""
        held = self._held.get(path.name, 0) + 1
        self._held[path.name] = held
        self._not_before[path.name] = time.monotonic() + self._delay(held)

    def _refused(self, path: Path, reason: str) -> str:
        """One more refusal of this batch: retried later, or set aside after max_tries."""
        tries = self._tries.get(path.name, 0) + 1
        if tries < self.max_tries:
            self._tries[path.name] = tries
            ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (tries - 1))
            self._not_before[path.name] = time.monotonic() + random.uniform(ceiling / 2, ceiling)
            log.warning("control plane refused telemetry batch %s (%s), try %d of %d",
                        path.name, reason, tries, self.max_tries)
            return "refused"
        self._set_aside(path, reason)
        return "set_aside"

    def _set_aside(self, path: Path, reason: str) -> None:
        try:
            records = len(read_lines(path))
        except (OSError, EOFError):
            records, reason = 0, "unreadable"
        folder = self.set_aside_dir
        folder.mkdir(exist_ok=True)
        try:
            path.replace(folder / path.name)
        except FileNotFoundError:
            return
        self._tries.pop(path.name, None)
        self._not_before.pop(path.name, None)
        self.set_aside += 1
        self.log.drop(records, f"set_aside:{reason}")
        log.error("telemetry batch %s (%d records) refused (%s): set aside in %s",
                  path.name, records, reason, folder)
        kept = sorted(folder.glob("*" + SPOOL_SUFFIX))
        for old in kept[: max(0, len(kept) - self.max_set_aside)]:
            old.unlink(missing_ok=True)  # its records were counted when it was set aside

    def _back_off(self) -> None:
        self.failures += 1
        self.next_attempt = time.monotonic() + self._delay(self.failures)

    def _delay(self, failures: int) -> float:
        """Exponential backoff with jitter (edges that lost the control plane together do
        not return together), and never sooner than the control plane asked."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (failures - 1))
        return max(random.uniform(ceiling / 2, ceiling), self._asked)

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s; the batch stays spooled", message.removesuffix(
                ": the batch stays spooled"))
        self.last_error = message

    def status(self) -> dict[str, Any]:
        """What /healthz shows: records taken, waiting, shipped, and dropped by reason."""
        return {"recorded": self.log.recorded, "buffered": self.log.pending(),
                "spooled_files": _count_files(self.log.spool_dir),
                "spooled": self.log.spooled, "shipped_batches": self.shipped,
                "dropped": self.log.dropped,
                "dropped_by_reason": self.log.dropped_counts(),
                "split_batches": self.split, "set_aside_batches": self.set_aside,
                "set_aside_files": _count_files(self.set_aside_dir),
                "failures": self.failures,
                "last_error": self.last_error}


MAX_ANSWER_BYTES = 1 << 20  # the ingest answer lists at most 100 rejections


def _is_ingest_answer(answer: bytes) -> bool:
    """The ingest's answer: counts of records taken and already stored (`accepted`, or
    `stored` from older control planes, and `duplicates`)."""
    try:
        doc = json.loads(answer)
    except ValueError:
        return False
    return (type(doc) is dict and type(doc.get("duplicates")) is int
            and (type(doc.get("accepted")) is int or type(doc.get("stored")) is int))


def _count_files(folder: Path) -> int:
    """Spool files in `folder`, counted without sorting or a Path per file: /healthz asks
    for it, and while the control plane is down a spool holds thousands."""
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.name.endswith(SPOOL_SUFFIX))
    except FileNotFoundError:
        return 0
