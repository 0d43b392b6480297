"""rrweb recordings turned into wire-contract decide requests, for `simulate`, `test`, `evaluate`.

Each recording becomes one session whose events are what the browser SDK
(sdk/browser/src/nudge.js) would have captured on that visit, batched as it sends them: an
event waits up to 250 ms for others to travel with it, a click, submit, page view or custom
event leaves at once, and a new page sends what is still queued (the SDK's beacon).

rrweb records the DOM, not its layout: the document height comes from an rrweb custom event
tagged `document-height` (`{"height": px}`), which the site adds at load and whenever the height
changes (`rrweb.record.addCustomEvent`); without one, scrolls cannot become a depth and are
counted as not converted. Typed text is never read: an input is the field's selector only.

Longer than most modules on purpose: it mirrors the SDK's capture and batching step by step
(a session that batches, then a branch per rrweb record kind), and splitting it would
separate the two halves of that mirror.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CADENCE_MS = 250
MOUSE_SAMPLE_MS = 50
INPUT_SAMPLE_MS = 250
MAX_BATCH = 500
SEND_AT_ONCE = frozenset({"click", "submit", "page_view", "custom"})
HEIGHT_TAG = "document-height"

# rrweb's numbering (rrweb-types: EventType, IncrementalSource, MouseInteractions)
DOM_CONTENT_LOADED, LOAD, FULL_SNAPSHOT, INCREMENTAL, META, CUSTOM, PLUGIN = range(7)
MUTATION, MOUSE_MOVE, MOUSE_INTERACTION, SCROLL, VIEWPORT_RESIZE, INPUT = range(6)
TOUCH_MOVE, DRAG = 6, 12
INTERACTIONS = {2: "click", 5: "focus", 6: "blur"}
# known but with nothing on the wire: mouse up/down, context menu, double click, touches;
# media, style sheets, canvas, fonts, console logs, selection, adopted sheets, custom elements
SILENT_INTERACTIONS = frozenset({0, 1, 3, 4, 7, 8, 9, 10})
SILENT_SOURCES = frozenset({7, 8, 9, 10, 11, 13, 14, 15, 16})


class RecordingError(ValueError):
    """A recording file that is not an rrweb event stream; says which file and where."""

    def __init__(self, file: str, where: str, message: str) -> None:
        super().__init__(f"{file}: {where}: {message}")
        self.file, self.where, self.message = file, where, message


@dataclass(frozen=True)
class CustomMapping:
    """`click:#abandon-cart=cart_abandon`: such an event on that target also sends custom NAME."""

    event: str
    target: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> CustomMapping:
        event, sep, rest = spec.partition(":")
        target, eq, name = rest.rpartition("=")
        if not sep or not eq or not target or not name or event not in INTERACTION_TYPES:
            raise ValueError(f"{spec!r}: expected EVENT:SELECTOR=NAME, EVENT one of "
                             f"{', '.join(sorted(INTERACTION_TYPES))} "
                             "(e.g. click:#abandon-cart=cart_abandon)")
        return cls(event, target, name[:256])


INTERACTION_TYPES = frozenset({"click", "focus", "blur", "input"})


@dataclass
class ImportReport:
    """What the import read: per recording and in all, events converted and not."""

    recordings: list[dict[str, Any]] = field(default_factory=list)
    converted: Counter[str] = field(default_factory=Counter)  # rrweb kind -> count
    not_converted: Counter[str] = field(default_factory=Counter)  # known, nothing on the wire
    unknown: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"recordings": self.recordings, "converted": dict(self.converted),
                "not_converted": dict(self.not_converted), "unknown": dict(self.unknown),
                "malformed": dict(self.malformed)}

    def summary(self) -> str:
        requests = sum(r["requests"] for r in self.recordings)
        events = sum(r["events"] for r in self.recordings)
        head = f"{len(self.recordings)} recording(s) -> {requests} request(s), {events} event(s)"
        lines = [head]
        for label, counts in (("not converted", self.not_converted),
                              ("unknown", self.unknown), ("malformed", self.malformed)):
            if counts:
                detail = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items()))
                lines.append(f"{sum(counts.values())} rrweb event(s) {label} ({detail})")
        return "\n".join(lines)


def load_recording(path: Path) -> list[Any]:
    """The events of an rrweb recording: a JSON array, `{"events": [...]}` or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if not text.lstrip().startswith("{"):
            raise RecordingError(str(path), f"line {exc.lineno}, column {exc.colno}",
                                 f"not JSON ({exc.msg})") from None
        data = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError as line_exc:
                raise RecordingError(str(path), f"line {lineno}, column {line_exc.colno}",
                                     f"neither JSON nor JSON Lines ({line_exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    if not isinstance(data, list):
        raise RecordingError(str(path), "top level", "expected a JSON array of rrweb events "
                             f"(or {{\"events\": [...]}}), got {type(data).__name__}")
    return data


def selector_of(node: dict[str, Any]) -> str:
    """The SDK's selector for an element node: #id, tag[name=...], tag.class1.class2."""
    attrs = node.get("attributes") if isinstance(node.get("attributes"), dict) else {}
    tag = str(node.get("tagName", "")).lower()
    if attrs.get("id"):
        return f"#{attrs['id']}"[:256]
    if attrs.get("name"):
        return f"{tag}[name={attrs['name']}]"[:256]
    classes = str(attrs.get("class") or "").split()[:2]
    return (tag + ("." + ".".join(classes) if classes else ""))[:256]


class _Session:
    """One recording replayed through the SDK's capture and batching."""

    def __init__(self, session_id: str, device: str, mappings: Sequence[CustomMapping]) -> None:
        self.sid, self.device, self.mappings = session_id, device, mappings
        self.nodes: dict[int, dict[str, Any]] = {}  # rrweb node id -> element node
        self.doc_id: Any = None
        self.path: str | None = None
        self.viewport_h: float | None = None
        self.doc_h: float | None = None
        self.scroll_y = 0.0
        self.last_depth: float | None = None
        self.depth_due = False  # a page view's first depth, sent once the height is known
        self.last_mouse = -MOUSE_SAMPLE_MS
        self.last_input: dict[str, int] = {}
        self.queue: list[dict[str, Any]] = []
        self.flush_at: int | None = None
        self.requests: list[dict[str, Any]] = []

    # --- the SDK's batching ----------------------------------------------------------
    def advance(self, now: int) -> None:
        # strictly before: what happens in the same millisecond as an event sent "at once"
        # (a page's own track() in its click handler) joins it, as the SDK's setTimeout(0) does
        if self.flush_at is not None and self.flush_at < now:
            self.flush(self.flush_at)

    def push(self, event: dict[str, Any], ts: int) -> None:
        self.advance(ts)
        event["ts_ms"] = ts
        self.queue.append(event)
        if event["type"] in SEND_AT_ONCE:
            self.flush_at = ts
        elif self.flush_at is None:
            self.flush_at = ts + CADENCE_MS

    def flush(self, now: int) -> None:
        self.flush_at = None
        while self.queue:
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            self.requests.append({"session_id": self.sid, "now_ms": now,
                                  "context": {"url": self.path or "/", "device": self.device},
                                  "events": batch})

    # --- capture -----------------------------------------------------------------------
    def page_view(self, href: str, ts: int) -> None:
        path = urlsplit(href).path or "/"
        if self.queue:
            self.flush(ts)  # the page went away: the SDK's beacon sends what waited
        self.nodes.clear()
        self.doc_h = None
        if path != self.path:
            self.path = path
            self.push({"type": "page_view", "url": path[:2048]}, ts)
            self.last_depth = None
            self.depth_due = True

    def scroll(self, ts: int) -> bool:
        """The SDK's depth event for the current position; False without a height."""
        if not self.doc_h or not self.viewport_h:
            return False
        self.depth_due = False
        y = max(0, round(self.scroll_y))
        depth = min(1.0, round((y + self.viewport_h) / max(self.doc_h, 1) * 1000) / 1000)
        if depth != self.last_depth:
            self.last_depth = depth
            self.push({"type": "scroll", "depth": depth, "y": y}, ts)
        return True

    def interaction(self, kind: str, node_id: Any, ts: int) -> bool:
        node = self.nodes.get(node_id) if isinstance(node_id, int) else None
        target = selector_of(node) if node else ""
        if kind == "input":
            if ts - self.last_input.get(target, -INPUT_SAMPLE_MS) < INPUT_SAMPLE_MS:
                return True
            self.last_input[target] = ts
        self.push({"type": kind, "target": target}, ts)
        for m in self.mappings:
            if m.event == kind and m.target == target:
                self.push({"type": "custom", "name": m.name}, ts)
        return node is not None

    def mousemove(self, x: Any, y: Any, ts: int) -> None:
        if ts - self.last_mouse < MOUSE_SAMPLE_MS:
            return
        self.last_mouse = ts
        self.push({"type": "mousemove", "x": round(x), "y": round(y)}, ts)

    def index(self, node: Any) -> None:
        """Remember the element nodes of a snapshot or an added subtree, by rrweb id."""
        stack = [node]
        while stack:
            n = stack.pop()
            if not isinstance(n, dict):
                continue
            if n.get("type") == 2 and isinstance(n.get("id"), int):
                self.nodes[n["id"]] = n
            children = n.get("childNodes")
            if isinstance(children, list):
                stack.extend(children)


def _number(value: Any) -> bool:
    """A finite JSON number: 1e999 reads as inf and NaN as nan, and either broke the
    conversion (a traceback) where a bad event is to be counted and skipped."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def convert(events: Sequence[Any], session_id: str, report: ImportReport, *,
            device: str = "desktop",
            mappings: Sequence[CustomMapping] = ()) -> list[dict[str, Any]]:
    """One recording's decide requests, in time order; what was skipped goes to `report`."""
    s = _Session(session_id, device, mappings)
    timed = [e for e in events if isinstance(e, dict) and _number(e.get("timestamp"))]
    for event in sorted(_unbatched(timed), key=lambda e: e["timestamp"]):
        _convert_one(s, event, report)
    bad = sum(1 for e in events if not (isinstance(e, dict) and _number(e.get("timestamp"))))
    if bad:
        report.malformed["no timestamp"] += bad
    s.flush(s.flush_at if s.flush_at is not None else 0)
    return s.requests


def _unbatched(events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """rrweb sends mouse positions in batches, up to 500 ms late: each at its own time."""
    for e in events:
        data = e.get("data")
        if not isinstance(data, dict) or e.get("type") != INCREMENTAL \
                or data.get("source") != MOUSE_MOVE or not isinstance(data.get("positions"), list):
            yield e
            continue
        for p in data["positions"]:
            offset = p.get("timeOffset") if isinstance(p, dict) else None
            at = e["timestamp"] + (offset if _number(offset) else 0)
            yield {"type": INCREMENTAL, "timestamp": at,
                   "data": {"source": MOUSE_MOVE, "positions": [{**p, "timeOffset": 0}]
                            if isinstance(p, dict) else [p]}}


def _convert_one(s: _Session, event: dict[str, Any], report: ImportReport) -> str:
    ts = int(event["timestamp"])
    etype, data = event.get("type"), event.get("data")
    if not isinstance(data, dict):
        report.malformed[f"type {etype}: no data"] += 1
        return "malformed"
    s.advance(ts)
    if etype == META:
        if not isinstance(data.get("href"), str):
            report.malformed["meta: no href"] += 1
            return "malformed"
        if _number(data.get("height")):
            s.viewport_h = data["height"]
        s.page_view(data["href"], ts)
        report.converted["meta"] += 1
    elif etype == FULL_SNAPSHOT:
        if not isinstance(data.get("node"), dict):
            report.malformed["full snapshot: no node"] += 1
            return "malformed"
        s.index(data["node"])
        s.doc_id = data["node"].get("id")
        offset = data.get("initialOffset")
        if isinstance(offset, dict) and _number(offset.get("top")):
            s.scroll_y = offset["top"]
        report.converted["full snapshot"] += 1
    elif etype == CUSTOM:
        payload = data.get("payload")
        if data.get("tag") != HEIGHT_TAG:
            report.not_converted[f"custom {str(data.get('tag'))[:40]}"] += 1
            return "ignored"
        if not (isinstance(payload, dict) and _number(payload.get("height"))):
            report.malformed["document-height: no height"] += 1
            return "malformed"
        s.doc_h = payload["height"]
        if s.depth_due or s.last_depth is not None:
            s.scroll(ts)  # a new page's first depth, or the page grew under the reader
        report.converted["document height"] += 1
    elif etype == INCREMENTAL:
        return _incremental(s, data, ts, report)
    elif etype in (DOM_CONTENT_LOADED, LOAD, PLUGIN):
        report.not_converted[{0: "dom content loaded", 1: "load", 6: "plugin"}[etype]] += 1
    else:
        report.unknown[f"type {str(etype)[:20]}"] += 1
        return "unknown"
    return "converted"


def _incremental(s: _Session, data: dict[str, Any], ts: int, report: ImportReport) -> str:
    source = data.get("source")
    if source == MOUSE_MOVE:
        positions = data.get("positions")
        if not isinstance(positions, list):
            report.malformed["mouse move: no positions"] += 1
            return "malformed"
        for p in positions:
            if not (isinstance(p, dict) and _number(p.get("x")) and _number(p.get("y"))):
                report.malformed["mouse move: bad position"] += 1
                continue
            offset = p.get("timeOffset") if _number(p.get("timeOffset")) else 0
            s.mousemove(p["x"], p["y"], ts + int(offset))
        report.converted["mouse move"] += 1
    elif source == MOUSE_INTERACTION:
        kind = INTERACTIONS.get(data.get("type"))
        if kind is None:
            if data.get("type") in SILENT_INTERACTIONS:
                report.not_converted[f"mouse interaction {data.get('type')}"] += 1
                return "ignored"
            report.unknown[f"mouse interaction {str(data.get('type'))[:20]}"] += 1
            return "unknown"
        if not s.interaction(kind, data.get("id"), ts):
            report.malformed[f"{kind}: node not in the snapshot"] += 1
        report.converted[kind] += 1
    elif source == SCROLL:
        if not _number(data.get("y")):
            report.malformed["scroll: no y"] += 1
            return "malformed"
        if data.get("id") != s.doc_id and data.get("id") in s.nodes:
            report.not_converted["scroll of an element"] += 1  # the SDK sees the page's only
            return "ignored"
        s.scroll_y = data["y"]
        if not s.scroll(ts):
            report.not_converted["scroll without document height"] += 1
            return "ignored"
        report.converted["scroll"] += 1
    elif source == VIEWPORT_RESIZE:
        if not _number(data.get("height")):
            report.malformed["viewport resize: no height"] += 1
            return "malformed"
        s.viewport_h = data["height"]
        if s.last_depth is not None:
            s.scroll(ts)
        report.converted["viewport resize"] += 1
    elif source == INPUT:
        s.interaction("input", data.get("id"), ts)  # data["text"] is never read
        report.converted["input"] += 1
    elif source == MUTATION:
        for add in data.get("adds") or []:
            if isinstance(add, dict):
                s.index(add.get("node"))
        for change in data.get("attributes") or []:
            node = s.nodes.get(change.get("id")) if isinstance(change, dict) else None
            if node is not None and isinstance(change.get("attributes"), dict):
                node.setdefault("attributes", {}).update(change["attributes"])
        report.converted["mutation"] += 1
    elif source in (TOUCH_MOVE, DRAG) or source in SILENT_SOURCES:
        report.not_converted[f"incremental source {source}"] += 1
        return "ignored"
    else:
        report.unknown[f"incremental source {str(source)[:20]}"] += 1
        return "unknown"
    return "converted"


def import_recordings(paths: Sequence[Path], *, device: str = "desktop",
                      mappings: Sequence[CustomMapping] = ()
                      ) -> tuple[list[dict[str, Any]], ImportReport]:
    """All recordings' requests (one session per file) and the report of what was read."""
    report = ImportReport()
    requests: list[dict[str, Any]] = []
    seen: Counter[str] = Counter()
    for path in paths:
        events = load_recording(path)
        seen[path.stem] += 1
        sid = f"rrweb-{path.stem}" + (f"-{seen[path.stem]}" if seen[path.stem] > 1 else "")
        before = report.to_dict()
        session = convert(events, sid, report, device=device, mappings=mappings)
        requests += session
        skipped = {k: sum(getattr(report, k).values()) - sum(before[k].values())
                   for k in ("not_converted", "unknown", "malformed")}
        report.recordings.append({"file": str(path), "session_id": sid,
                                  "rrweb_events": len(events), "requests": len(session),
                                  "events": sum(len(r["events"]) for r in session), **skipped})
    return requests, report


def jsonl(requests: Sequence[dict[str, Any]]) -> Iterator[str]:
    for request in requests:
        yield json.dumps(request, separators=(",", ":")) + "\n"
