"""A visitor's session as the decision core sees it: what has been observed so far.

The host keeps the state between requests as the JSON-ready object `to_state` returns;
the client only sends new events. Everything here is a function of events and their
timestamps, never of the wall clock. Optional parts of the state are written only when
they hold something, so a session that uses few features stays small.

Longer than most modules on purpose: it is one class whose methods record events into,
bound, serialise and read the same fields, and each field's limits are kept beside them.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Callable
from operator import itemgetter, sub
from typing import Any

STATE_VERSION = 1
# A state this core writes says its windowed series are in time order ("o"); one without
# it (written before, when late events were appended) has them sorted as it is read. A
# marker, not a new version: an edge of the version before reads it (and ignores it),
# so a rolling deploy or a roll-back keeps every session and its caps.
_IN_ORDER = "o"
MAX_SAMPLES = 256  # scroll samples kept for velocity windows
MAX_HOVER_TARGETS = 64
MAX_PAGES = 100
# The pages seen are kept only to count distinct ones: a long path is kept as its first
# characters and a digest of the whole, so 100 pages cost ~13 KB at most, not 100 URLs.
MAX_PAGE_KEY = 128
_DIGEST_CHARS = 16
# The byte budget of what a visitor's own input puts in a session's state (as
# `accounted_bytes` counts it; a normal session is 0.5-4 KB). Beyond it, `fit` forgets,
# oldest first: pages seen (all but the current one), hover targets, focused form
# fields, the kept context, then scroll and mouse samples beyond the last 16. The rest of
# the state is bounded by the snapshot (one entry per trigger, filter or sequence).
MAX_SESSION_BYTES = 16 * 1024
MAX_CONTEXT_BYTES = 2048  # the context kept for requests that omit it (its repr, UTF-8)
_KEEP_SAMPLES = 16
MAX_TRACKED = 64  # timestamps per tracked event filter / values per aggregate field
MAX_FORM_FIELDS = 16
# The visit's counts (features.py names the positions): hover ms, hovers, scrolls, mouse
# moves, form events, then one count per mouse direction sector.
VISIT_SECTORS = 5
VISIT_SIZE = VISIT_SECTORS + 8
# Windowed series are kept in time order, so a window is found by bisection: tracked
# events and field values put a late one in its place; scroll samples and mouse moves
# leave out one older than the newest they hold (a late batch does not rewrite the past).
# Those two also keep running totals (by entry, for the decision only), so velocity and
# entropy cost the same whatever a window holds: evaluated under `sustained` at each of
# 500 events, the scans read 500 x 256 samples before.
ENTRY_TIME = itemgetter(0)
_VALUE = itemgetter(1)
_SCAN = 8  # a window of at most this many entries is read directly
_EXACT = 1074  # a float's bits below 1: running sums of them in integers stay exact
_NO_MOVES = (0,) * 8

# A trigger's fire record: [fires, last fired at (ms), fires on the page, the page view
# those were on]. (Positions in the record, not signal codes: snapshot.COUNT is a signal.)
FIRES, LAST_FIRED, PAGE_FIRES, PAGE_PV = range(4)

# Optional parts of the state: attribute, state key, empty value factory.
_OPTIONAL = (
    ("pos", "dp", float), ("pages", "pg", list), ("mouse", "ms", list), ("mouse_at", "mp", list),
    ("scrolled", "bs", list), ("focused", "fo", dict), ("focus_input", "fi", list),
    ("last_input", "li", list), ("input_submit", "is", list), ("tracked", "ev", dict),
    ("fields", "fv", dict), ("sustained", "su", dict), ("streaks", "cs", dict),
    ("sequences", "sq", dict), ("delivered", "fd", list), ("delivered_total", "fn", int),
    ("dismissed", "dm", int), ("context", "cx", dict), ("visit", "rv", list),
    ("channel_spent", "fc", dict),
)


_BY_KEY = {key: (name, factory) for name, key, factory in _OPTIONAL}


class Session:
    __slots__ = ("start_ms", "url", "pv", "depth", "samples", "hover", "fired", "queue",
                 "runs", *(name for name, _, _ in _OPTIONAL))

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.url: str | None = None
        self.pv = start_ms  # when the current page was entered
        self.depth = 0.0
        self.samples: list[list[float]] = []  # [ts_ms, y] of scrolls on this page
        self.hover: dict[str, float] = {}
        self.fired: dict[str, list[Any]] = {}
        self.queue: list[list[Any]] = []  # [due_ms, trigger_id], ascending by due
        # the optional parts (see _OPTIONAL), spelled out: this runs once per decision
        self.pos = 0.0
        self.pages: list[str] = []
        self.mouse: list[list[int]] = []
        self.mouse_at: list[float] = []
        self.scrolled: list[float] = []
        self.focused: dict[str, int] = {}
        self.focus_input: list[Any] = []
        self.last_input: list[Any] = []
        self.input_submit: list[Any] = []
        self.tracked: dict[str, list[int]] = {}
        self.fields: dict[str, list[list[float]]] = {}
        self.sustained: dict[str, int] = {}
        self.streaks: dict[str, int] = {}
        self.sequences: dict[str, list[int]] = {}
        self.delivered: list[int] = []
        self.delivered_total = 0
        # channel -> [delivered in the session, [recent times]] (fatigue.channels: separate)
        self.channel_spent: dict[str, list[Any]] = {}
        self.dismissed = -1
        self.context: dict[str, Any] = {}
        # counts over the whole visit, kept only while decisions report (features.py)
        self.visit: list[float] = []
        # running totals of scroll distance and mouse directions, by entry (`_running`):
        # never stored
        self.runs: dict[Any, dict[int, Any]] | None = None

    @classmethod
    def from_state(cls, state: Any, now_ms: int) -> Session:
        """Rebuild from a stored state; anything unreadable starts a fresh session."""
        if type(state) is not dict or state.get("v") != STATE_VERSION:
            return cls(now_ms)
        # The state is the core's own output, kept by the host: check its shape cheaply.
        try:
            s = cls(state["t0"])
            s.url = state["url"]
            s.pv = state["pv"]
            s.depth = state["d"]
            s.samples = state["sc"]
            s.hover = state["hv"]
            s.fired = state["f"]
            s.queue = state["q"]
            if len(state) > 9:  # optional parts present
                for key, value in state.items():
                    part = _BY_KEY.get(key)
                    if part is None:
                        continue
                    name, factory = part
                    if type(value) is not factory and not (factory is float and
                                                           type(value) is int):
                        return cls(now_ms)
                    setattr(s, name, value)
        except (KeyError, TypeError):
            return cls(now_ms)
        if not (type(s.samples) is list and type(s.hover) is dict and type(s.fired) is dict
                and type(s.queue) is list and type(s.pv) is int and type(s.start_ms) is int
                and type(s.depth) in (float, int) and (s.url is None or type(s.url) is str)):
            return cls(now_ms)
        if _IN_ORDER not in state:  # written before series were kept in time order
            try:
                for series in (s.samples, s.mouse, *s.fields.values()):
                    series.sort(key=ENTRY_TIME)  # simultaneous entries keep their order
                for times in s.tracked.values():
                    times.sort()
            except (AttributeError, LookupError, TypeError):
                return cls(now_ms)
        return s

    def to_state(self, keep: dict[str, Any]) -> dict[str, Any]:
        """The JSON-ready state; fire records of triggers not in `keep` are dropped."""
        state: dict[str, Any] = {
            "v": STATE_VERSION,
            _IN_ORDER: 1,
            "t0": self.start_ms,
            "url": self.url,
            "pv": self.pv,
            "d": self.depth,
            "sc": self.samples,
            "hv": self.hover,
            "f": {k: r for k, r in self.fired.items() if k in keep},
            "q": self.queue,
        }
        # the optional parts, each only when it holds something (see _OPTIONAL)
        if self.pos:
            state["dp"] = self.pos
        if self.pages:
            state["pg"] = self.pages
        if self.scrolled:
            state["bs"] = self.scrolled
        if self.mouse_at:
            state["mp"] = self.mouse_at
            if self.mouse:
                state["ms"] = self.mouse
        if self.tracked:
            state["ev"] = self.tracked
        if self.fields:
            state["fv"] = self.fields
        if self.sustained:
            state["su"] = self.sustained
        if self.streaks:
            state["cs"] = self.streaks
        if self.sequences:
            state["sq"] = self.sequences
        if self.context:
            state["cx"] = self.context
        if self.dismissed >= 0:
            state["dm"] = self.dismissed
        if self.visit:
            state["rv"] = self.visit
        if self.delivered_total:
            state["fn"] = self.delivered_total
            if self.delivered:
                state["fd"] = self.delivered
        if self.channel_spent:
            state["fc"] = self.channel_spent
        if self.focused or self.focus_input or self.last_input or self.input_submit:
            for key, value in (("fo", self.focused), ("fi", self.focus_input),
                               ("li", self.last_input), ("is", self.input_submit)):
                if value:
                    state[key] = value
        return state

    # -- observations ---------------------------------------------------------------

    def enter_page(self, url: str, ts: int) -> None:
        self.url = url
        self.pv = ts
        self.depth = 0.0
        self.pos = 0.0
        self.samples = [[ts, 0.0]]  # a page starts at the top: the first scroll moves from y=0
        self.hover = {}
        key = page_key(url)
        if key not in self.pages and len(self.pages) < MAX_PAGES:
            self.pages.append(key)

    def scroll_to(self, ts: int, y: float) -> None:
        samples = self.samples
        if samples:
            prev = samples[-1]
            gap = ts - prev[0]
            if gap < 0:  # see ENTRY_TIME: a late sample is left out, of the speed too
                return
            # the session's own scroll speed: distance over time spent scrolling
            # (pauses count at most 1 s), the baseline of velocity spikes
            scrolled = self.scrolled
            if not scrolled:
                scrolled = self.scrolled = [0.0, 0]
            scrolled[0] += abs(y - prev[1])
            scrolled[1] += 1000 if gap > 1000 else gap  # noqa: FURB136 - no call: it runs per scroll
        samples.append([ts, y])
        if len(samples) > MAX_SAMPLES:
            del samples[: len(samples) - MAX_SAMPLES]

    def hovered(self, target: str, duration_ms: float) -> None:
        if target in self.hover or len(self.hover) < MAX_HOVER_TARGETS:
            self.hover[target] = self.hover.get(target, 0.0) + duration_ms

    def mouse_to(self, ts: int, x: float, y: float, keep_ms: int,
                 visit: list[float] | None = None) -> None:
        """Record the direction (one of 8 sectors) of the move from the previous point:
        in the windowed list when `keep_ms`, in the visit's sector counts when `visit`. A
        move older than the newest kept is left out (see ENTRY_TIME), and is not where
        the mouse is: the direction from it to the next would mean nothing."""
        mouse = self.mouse
        if mouse and ts < mouse[-1][0]:
            return
        if self.mouse_at:
            dx, dy = x - self.mouse_at[0], y - self.mouse_at[1]
            if dx or dy:
                sector = int((math.atan2(dy, dx) + math.pi) / (2 * math.pi) * 8) % 8
                if visit is not None:
                    visit[VISIT_SECTORS + sector] += 1
                if keep_ms:
                    mouse.append([ts, sector])
                    _forget(mouse, ts - keep_ms)
        self.mouse_at = [x, y]

    def visit_counts(self) -> list[float]:
        """The visit's counts (see features.py for the positions), made on first use."""
        if len(self.visit) != VISIT_SIZE:
            self.visit = [0] * VISIT_SIZE
        return self.visit

    def form_event(self, etype: str, ts: int, target: Any) -> None:
        target = target if type(target) is str else ""
        if etype == "focus":
            if target in self.focused or len(self.focused) < MAX_FORM_FIELDS:
                self.focused[target] = ts
        elif etype == "input":
            started = self.focused.pop(target, None)
            if started is not None:
                self.focus_input = [ts - started, target]
            self.last_input = [ts, target]
        elif etype == "submit" and self.last_input:
            self.input_submit = [ts - self.last_input[0], self.last_input[1]]

    def track(self, key: str, ts: int, keep_ms: int) -> None:
        """Remember that an event matching a tracked filter happened at `ts`."""
        times = self.tracked.get(key)
        if not times:  # (an empty list: only a stored state altered outside the core)
            self.tracked[key] = [ts]
            return
        if ts >= times[-1]:
            times.append(ts)
        else:
            insort(times, ts)
        cutoff = ts - keep_ms
        if len(times) > MAX_TRACKED or (len(times) > 1 and times[0] <= cutoff):
            drop = max(bisect_right(times, cutoff), len(times) - MAX_TRACKED)
            if drop < len(times):
                del times[:drop]
            else:
                times[:] = [ts]

    def field_value(self, name: str, ts: int, value: float, keep_ms: int) -> None:
        values = self.fields.get(name)
        if values is None:
            values = self.fields[name] = []
        _keep(values, [ts, value], ts, ts - keep_ms)

    def prune(self, now_ms: int, keep_ms: int) -> None:
        """Forget scroll samples no window can still see (keeping one anchor before it)."""
        samples = self.samples
        cutoff = now_ms - keep_ms
        first = 0
        for i in range(len(samples) - 1):
            if samples[i + 1][0] <= cutoff:
                first = i + 1
            else:
                break
        if first:
            del samples[:first]
        if self.delivered and self.delivered[0] <= now_ms - 60_000:
            self.delivered = [t for t in self.delivered if t > now_ms - 60_000]
        for spent in self.channel_spent.values():
            if spent[1] and spent[1][0] <= now_ms - 60_000:
                spent[1] = [t for t in spent[1] if t > now_ms - 60_000]

    # -- the byte budget ------------------------------------------------------------

    def accounted_bytes(self) -> int:
        """An estimate, from above, of the size (marshal or JSON) of what the visitor's
        own input put in the state: the URL, pages seen, hover targets, form fields, the
        kept context, scroll and mouse samples. (The rest is one entry per trigger, filter
        or sequence of the snapshot: the snapshot bounds it.) Strings count their UTF-8
        length; joins keep the sums in C: it runs at every decision."""
        pages, hover = self.pages, self.hover
        n = 256 + utf8_size(self.url or "") + utf8_size("".join(pages)) + 8 * len(pages)
        n += utf8_size("".join(hover)) + 16 * len(hover) + 24 * len(self.samples)
        if self.mouse:
            n += 20 * len(self.mouse)
        if self.focused:
            n += utf8_size("".join(self.focused)) + 16 * len(self.focused)
        if self.last_input:
            for pair in (self.focus_input, self.last_input, self.input_submit):
                if pair and type(pair[1]) is str:
                    n += 16 + utf8_size(pair[1])
        if self.context:
            n += MAX_CONTEXT_BYTES  # the engine keeps no larger one
        if self.visit:
            n += 16 * VISIT_SIZE  # fixed: numbers only
        return n

    def fit(self, budget: int = MAX_SESSION_BYTES) -> int:
        """Forget the oldest observations until the state is within `budget` bytes (see
        MAX_SESSION_BYTES for the order); returns how many bytes it had too many."""
        excess = self.accounted_bytes() - budget
        if excess <= 0:
            return 0
        over = excess
        pages = self.pages
        drop = 0
        while excess > 0 and drop < len(pages) - 1:  # the current page stays counted
            excess -= utf8_size(pages[drop]) + 8
            drop += 1
        if drop:
            del pages[:drop]
        for table in (self.hover, self.focused):
            for key in list(table):  # insertion order: the oldest first
                if excess <= 0:
                    break
                del table[key]
                excess -= utf8_size(key) + 16
        if excess > 0 and self.context:
            excess -= MAX_CONTEXT_BYTES
            self.context = {}
        if excess > 0:
            for series, each in ((self.samples, 24), (self.mouse, 20)):
                cut = len(series) - _KEEP_SAMPLES
                if cut > 0:
                    del series[:cut]
                    excess -= cut * each
        return over

    # -- signals ----------------------------------------------------------------------

    def velocity(self, t: int, window_ms: int) -> float:
        """px/s scrolled in the window (t - window, t]: movement ending inside it counts,
        summed exactly."""
        samples = self.samples
        end = len(samples)
        if end and samples[-1][0] > t:  # (usually none is later than t)
            end = bisect_right(samples, t, key=ENTRY_TIME)
        start = max(1, bisect_right(samples, t - window_ms, 0, end, key=ENTRY_TIME))
        if end <= start:
            return 0.0
        if end - start <= _SCAN:
            total = math.fsum([abs(samples[i][1] - samples[i - 1][1]) for i in range(start, end)])
        else:  # the same exact sum, from running totals (correctly rounded, as fsum's)
            before = self._running(samples, start - 1, _scroll_step)  # the earlier first
            total = (self._running(samples, end - 1, _scroll_step) - before) / (1 << _EXACT)
        return total * 1000.0 / window_ms

    def session_speed(self) -> float | None:
        """The session's average scroll speed so far, px/s (None before any scrolling)."""
        if not self.scrolled or self.scrolled[1] <= 0:
            return None
        return float(self.scrolled[0] * 1000.0 / self.scrolled[1])

    def entropy(self, t: int, window_ms: int) -> float:
        """Shannon entropy (bits) of the movement directions within (t - window, t]."""
        mouse = self.mouse
        end = bisect_right(mouse, t, key=ENTRY_TIME)
        start = bisect_right(mouse, t - window_ms, 0, end, key=ENTRY_TIME)
        n = end - start
        if n <= 0:
            return 0.0
        if n <= _SCAN:
            counts: Any = Counter(map(_VALUE, mouse[start:end])).values()
        else:
            if start:
                before: Any = self._running(mouse, start - 1, _move_step)
            else:  # the total before the first entry: at it, less itself
                before = list(self._running(mouse, 0, _move_step))
                before[mouse[0][1]] -= 1
            counts = map(sub, self._running(mouse, end - 1, _move_step), before)
        return _entropy(tuple(c for c in counts if c), n)

    def _running(self, series: list[list[Any]], i: int, step: Callable[[Any, Any, Any], Any]
                 ) -> Any:
        """The running total of `step` at series[i], kept by entry for this decision. A
        series only gains entries at its end and loses them at its start, so the totals
        known stay right; the first asked for starts at 0 (only differences are read: ask
        for the earlier entry first, or asking for it starts again)."""
        if self.runs is None:
            self.runs = {}
        runs = self.runs.get(step)  # one table per series (its step), each started alone
        if runs is None:
            runs = self.runs[step] = {}
        entry = series[i]
        known = runs.get(id(entry))
        if known is not None and known[0] is entry:
            return known[1]
        j = i - 1  # back to the latest entry with a total, then forward from it
        while j >= 0:
            known = runs.get(id(series[j]))
            if known is not None and known[0] is series[j]:
                break
            j -= 1
        if j < 0:  # none before it: start again from it (as at the first)
            runs.clear()
            j, total = i, step(None, None, entry)
            runs[id(entry)] = (entry, total)
        else:
            total = known[1]
        while j < i:
            j += 1
            total = step(total, series[j - 1], series[j])
            runs[id(series[j])] = (series[j], total)
        return total

    def count(self, key: str, t: int, window_ms: int) -> int:
        times = self.tracked.get(key)
        if not times:
            return 0
        return bisect_right(times, t) - bisect_right(times, t - window_ms)

    def last(self, key: str, t: int) -> int | None:
        times = self.tracked.get(key)
        at = bisect_right(times, t) if times else 0
        return int(times[at - 1]) if at else None

    def aggregate(self, fn: str, name: str, t: int, window_ms: int) -> float | None:
        series = self.fields.get(name)
        if not series:
            return None
        end = bisect_right(series, t, key=ENTRY_TIME)
        start = bisect_right(series, t - window_ms, 0, end, key=ENTRY_TIME)
        if end <= start:
            return None
        values = list(map(_VALUE, series[start:end]))
        if fn == "min":
            return min(values)
        if fn == "max":
            return max(values)
        # exactly rounded, never sum() (see `entropy`), and to 12 decimals: depths of 10 %,
        # 20 % and 30 % average 20 %, not the 19.999999999999998 % the floats make of it
        return round(math.fsum(values) / len(values), 12) + 0.0

    def change_points(self, t: int, window_ms: int, series: list[list[Any]]) -> list[int]:
        """Moments after `t` at which a windowed value over `series` can change."""
        return [int(s[0]) + window_ms for s in series if s[0] + window_ms > t]


def _forget(series: list[list[Any]], cutoff: int) -> None:
    """Forget the entries of a windowed series at or before `cutoff`, and all but the last
    MAX_TRACKED."""
    if len(series) > MAX_TRACKED or series[0][0] <= cutoff:
        del series[:max(bisect_right(series, cutoff, key=ENTRY_TIME), len(series) - MAX_TRACKED)]


def _scroll_step(total: int | None, before: list[Any] | None, sample: list[Any]) -> int:
    """Running scroll distance, exactly: in units of 2**-1074 px, as an integer."""
    if before is None:
        return 0
    # as a float, as fsum takes it (a whole number beyond 2**53 is rounded the same way)
    num, den = float(abs(sample[1] - before[1])).as_integer_ratio()
    return total + (num << (_EXACT + 1 - den.bit_length()))  # type: ignore[operator]


def _move_step(total: tuple[int, ...] | None, _before: Any, move: list[int]) -> tuple[int, ...]:
    """Running counts of mouse moves by direction (8 sectors)."""
    counts = list(total or _NO_MOVES)
    counts[move[1]] += 1
    return tuple(counts)


_ENTROPIES: dict[tuple[tuple[int, ...], int], float] = {}


def _entropy(counts: tuple[int, ...], n: int) -> float:
    """Shannon entropy (bits) of non-zero counts summing to n, remembered (a pure function:
    a sustained condition asks for the same few at every event)."""
    value = _ENTROPIES.get((counts, n))
    if value is None:
        if len(_ENTROPIES) >= 4096:
            _ENTROPIES.clear()
        # exactly rounded (math.fsum: sum() of floats differs between CPython 3.11 and the
        # guest's 3.14), to 12 decimals (the guest's libm and the host's differ in the last
        # bit of log2), as the report's visit entropy is
        value = _ENTROPIES[(counts, n)] = \
            round(-math.fsum(c / n * math.log2(c / n) for c in counts), 12) + 0.0
    return value


def _keep(series: list[list[Any]], entry: list[Any], ts: int, cutoff: int) -> None:
    """Add `entry` (at `ts`) to a windowed series in time order, then forget what is at or
    before `cutoff` and all but the last MAX_TRACKED."""
    if not series or ts >= series[-1][0]:
        series.append(entry)
    else:
        insort(series, entry, key=ENTRY_TIME)
    _forget(series, cutoff)


def utf8_size(text: str) -> int:
    """Bytes of `text` in UTF-8 (cheap for ASCII, the usual case)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def page_key(url: str) -> str:
    """How a page is kept in the session's pages seen: the path itself, or for a long one
    its first characters and a digest of the whole (distinct paths stay distinct)."""
    if utf8_size(url) <= MAX_PAGE_KEY:
        return url
    digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"),
                             digest_size=_DIGEST_CHARS // 2).hexdigest()
    # the longest head within its bytes: cut the UTF-8 there, back to a character's start
    # (once, not a character at a time: 500 page views of emoji paths took 137 ms)
    limit = MAX_PAGE_KEY - _DIGEST_CHARS - 1
    raw = url[:limit].encode("utf-8", "surrogatepass")
    cut = min(limit, len(raw))
    while cut < len(raw) and raw[cut] & 0xC0 == 0x80:  # a continuation byte
        cut -= 1
    return raw[:cut].decode("utf-8", "surrogatepass") + "#" + digest
