"""What the edge's decision log records: one record per decision and per outcome a client
reports, made safe to leave the edge (hashed session ids, no CRM attributes, no query
strings, no userinfo) and bounded field by field (`RecordLimits`). Functions of the
request, the answer and the settings (and `load_salt`, the salt session ids are hashed
with); `log_spool.py` buffers and spools the records and `telemetry.py` ships them."""

from __future__ import annotations

import hashlib
import marshal
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.features import SESSION_FEATURES
from ..core.request_input import MAX_TIME_MS
from ..core.session import Session
from ..core.urls import strip_url
from ..host.host_secret import host_secret

OUTCOME_TYPES = ("impression", "click", "dismiss", "conversion")
INT_MAX = 2**63 - 1  # SQLite's INTEGER: a logged integer beyond it could not be stored


@dataclass(frozen=True)
class RecordLimits:
    """Bounds on every logged field: a record always fits the control plane's store."""

    max_chars: int = 128  # EDGE_TELEMETRY_MAX_FIELD_CHARS: device, country, ids, triggers
    max_url_chars: int = 1024  # EDGE_TELEMETRY_MAX_URL_CHARS: url, referrer (query stripped)
    max_items: int = 64  # EDGE_TELEMETRY_MAX_LIST_ITEMS: fired and suppressed entries
    max_report_triggers: int = 16  # EDGE_TELEMETRY_MAX_REPORT_TRIGGERS: triggers in `report`
    max_report_values: int = 16  # EDGE_TELEMETRY_MAX_REPORT_VALUES: values per trigger


class OutcomeError(ValueError):
    """A malformed outcome report: `field` names what is wrong (an HTTP 400)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def hash_session(salt: str, session_id: str) -> str:
    """The session id as it leaves the edge: sha256 with the deployment's salt."""
    return hashlib.sha256(f"{salt}\x1f{session_id}".encode("utf-8", "replace")).hexdigest()[:32]


# -- the logged record's shape: every field goes through one of these ------------------------

def text(value: Any, cap: int) -> str | None:
    """A string field: strings cut to `cap` characters (lone surrogates replaced, so it
    always encodes), numbers written out, anything else (objects, lists) null."""
    if type(value) is not str:
        if type(value) is float or (type(value) is int and -INT_MAX - 1 <= value <= INT_MAX):
            value = str(value)
        else:  # objects, lists, booleans, integers beyond 64 bits
            return None
    if len(value) > cap:
        value = value[:cap]
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def integer(value: Any, low: int = -INT_MAX - 1, high: int = INT_MAX) -> int | None:
    """An integer field within [low, high] (SQLite's 64 bits by default), else null."""
    return value if type(value) is int and low <= value <= high else None


def number(value: Any) -> int | float | None:
    """A numeric field: a 64-bit integer or a finite float, else null."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    return integer(value)


def url(value: Any, cap: int) -> str | None:
    """A URL field: `strip_url` of it (no query, fragment or userinfo), cut to `cap`."""
    return text(strip_url(value), cap) if type(value) is str else None


def time_ms(value: Any) -> int:
    """A record's time: ms since epoch, clamped into [0, MAX_TIME_MS] (a record's time is
    required to store it)."""
    if type(value) is not int:
        return 0
    return min(max(value, 0), MAX_TIME_MS)


def _suppressed(items: Any, limits: RecordLimits) -> list[dict[str, str | None]]:
    if type(items) is not list:
        return []
    return [{"trigger": text(s.get("trigger"), limits.max_chars),
             "reason": text(s.get("reason"), limits.max_chars)}
            for s in items[:limits.max_items] if type(s) is dict]


def request_features(events: Any) -> dict[str, Any]:
    """The signal values the host can compute cheaply from one batch of events (kept for
    earlier readers: `report` holds what the core's conditions saw): the deepest scroll,
    the earliest page_view (dwell = decision time - page_view), total hover time, event count; all
    finite and within 64 bits."""
    depth = None
    page_view = None
    hover = 0
    count = 0
    if type(events) is list:
        for ev in events:
            if type(ev) is not dict:
                continue
            count += 1
            kind = ev.get("type")
            if kind == "scroll":
                d = number(ev.get("depth"))
                if d is not None and (depth is None or d > depth):
                    depth = d
            elif kind == "page_view":
                ts = integer(ev.get("ts_ms"), 0, MAX_TIME_MS)
                if ts is not None and (page_view is None or ts < page_view):
                    page_view = ts
            elif kind == "hover":
                ms = number(ev.get("duration_ms"))
                if ms is not None and ms > 0:
                    hover = min(hover + ms, MAX_TIME_MS)
    out: dict[str, Any] = {"events": count}
    if depth is not None:
        out["scroll_depth"] = depth
    if page_view is not None:
        out["page_view_ms"] = page_view
    if hover:
        out["hover_ms"] = hover
    return out


REPORT_POLICIES = ("learned", "explore", "holdout")
_SESSION = frozenset(SESSION_FEATURES)  # the session vector's names (contract A)


def _numbers(values: Any, most: int, cap: int, nulls: bool,
             names: frozenset[str] | None = None) -> dict[str, Any]:
    """At most `most` entries of name -> finite number (or null when `nulls`) out of
    `values`, names cut to `cap` (and among `names` if given); anything else dropped."""
    out: dict[str, Any] = {}
    if type(values) is not dict:
        return out
    for name, value in values.items():
        if len(out) >= most:
            break
        if type(name) is not str or type(value) is bool or (names is not None and
                                                            name not in names):
            continue
        kept = number(value)
        if kept is not None or (nulls and value is None):
            out[text(name, cap) or ""] = kept
    return out


def report_record(report: Any, limits: RecordLimits) -> dict[str, Any] | None:
    """The bounded, sanitised copy of the core's `report` (issue #12, contract A): finite
    numbers only, the session vector's own names, at most `max_report_triggers` triggers
    of at most `max_report_values` values each, names cut to `max_chars`; anything else
    is dropped."""
    if type(report) is not dict:
        return None
    cap = limits.max_chars
    triggers: dict[str, Any] = {}
    raw = report.get("triggers")
    for tid, entry in (raw.items() if type(raw) is dict else ()):
        if len(triggers) >= limits.max_report_triggers:
            break
        if type(tid) is not str or type(entry) is not dict:
            continue
        kept: dict[str, Any] = {
            "values": _numbers(entry.get("values"), limits.max_report_values, cap, True)}
        intent = number(entry.get("intent")) if type(entry.get("intent")) is not bool else None
        if intent is not None:
            kept["intent"] = intent
        if entry.get("policy") in REPORT_POLICIES:
            kept["policy"] = entry["policy"]
        if type(entry.get("holds")) is bool:
            kept["holds"] = entry["holds"]
        p_fire = number(entry.get("p_fire")) if type(entry.get("p_fire")) is not bool else None
        if p_fire is not None and 0 <= p_fire <= 1:
            kept["p_fire"] = p_fire
        triggers[text(tid, cap) or ""] = kept
    return {"session": _numbers(report.get("session"), len(_SESSION), cap, False, _SESSION),
            "triggers": triggers}


def kept_context(stored_state: bytes | None) -> dict[str, Any]:
    """The context the core decides with when a request sends none: the one kept in the
    session's stored state (marshal bytes, as the host stores it), read as the core reads
    it (an unreadable or outdated state is a fresh session, which keeps none)."""
    try:
        state = None if stored_state is None else marshal.loads(stored_state)
    except (ValueError, EOFError, TypeError):
        return {}
    return Session.from_state(state, 0).context


def decision_record(request: dict[str, Any], response: dict[str, Any], now_ms: int,
                    salt: str, edge_id: str, limits: RecordLimits = RecordLimits(),
                    stored_state: bytes | None = None) -> dict[str, Any]:
    """The log record of one decision: nothing sensitive in it, every field a bounded
    scalar (or a bounded list of them), whatever the visitor sent. `stored_state` is the
    session state the decision started from: a request without context is decided with
    the context kept there, so that is the one logged (its device, country... are what
    segments and reports go by). A response's `undelivered` (channel trigger -> reason)
    names the firings the host never sent."""
    ctx = request.get("context")
    if ctx is None:  # as the core does (request_input.request_context)
        ctx = kept_context(stored_state)
    ctx = ctx if type(ctx) is dict else {}
    cap = limits.max_chars
    context: dict[str, Any] = {}
    for name in ("device", "country"):
        if name in ctx:
            context[name] = text(ctx[name], cap)
    if "local_hour" in ctx:
        context["local_hour"] = integer(ctx["local_hour"], 0, 23)
    context["url"] = url(ctx.get("url"), limits.max_url_chars)
    if ctx.get("referrer") is not None:
        context["referrer"] = url(ctx.get("referrer"), limits.max_url_chars)
    actions = response.get("actions")
    fired = [text(a.get("trigger"), cap) for a in actions[:limits.max_items]
             if type(a) is dict] if type(actions) is list else []
    deliveries = response.get("deliveries")  # push, email, webhook: fired as well
    if type(deliveries) is list:
        fired += [text(d.get("trigger"), cap) for d in deliveries[:limits.max_items]
                  if type(d) is dict][:max(0, limits.max_items - len(fired))]
    variants = _variants(actions, limits) if type(actions) is list else {}
    session_id = request.get("session_id")
    record: dict[str, Any] = {
        "kind": "decision", "id": text(response.get("decision_id"), cap) or uuid.uuid4().hex,
        "edge_id": text(edge_id, cap), "ts_ms": time_ms(now_ms),
        "session": hash_session(salt, session_id if type(session_id) is str else ""),
        "revision": text(response.get("revision"), cap),
        "fired": fired, "suppressed": _suppressed(response.get("suppressed"), limits),
        "arm": text(response.get("arm"), cap),
        "latency_us": integer(response.get("latency_us")), "context": context,
        "features": request_features(request.get("events")),
    }
    if variants:
        record["variants"] = variants
    undelivered = _undelivered(response.get("undelivered"), limits)
    if undelivered:
        record["undelivered"] = undelivered
    report = report_record(response.get("report"), limits)
    if report is not None:
        record["report"] = report
    return record


def _variants(actions: list[Any], limits: RecordLimits) -> dict[str, str]:
    """Fired trigger -> the name of the content variant it showed (reports per variant)."""
    out: dict[str, str] = {}
    for action in actions[:limits.max_items]:
        if type(action) is not dict or type(action.get("variant")) is not dict:
            continue
        trigger = text(action.get("trigger"), limits.max_chars)
        name = text(action["variant"].get("name"), limits.max_chars)
        if trigger is not None and name is not None:
            out[trigger] = name
    return out


def _undelivered(dropped: Any, limits: RecordLimits) -> dict[str, str]:
    """Channel trigger -> why its delivery was never sent (`unverified_recipient`...): a
    firing that reached nobody, which the reports keep out of the trigger's fires."""
    if type(dropped) is not dict:
        return {}
    out: dict[str, str] = {}
    for trigger, reason in list(dropped.items())[:limits.max_items]:
        name, why = text(trigger, limits.max_chars), text(reason, limits.max_chars)
        if name is not None:
            out[name] = why or "dropped"
    return out


def outcome_record(body: Any, now_ms: int, salt: str, edge_id: str,
                   limits: RecordLimits = RecordLimits()) -> dict[str, Any]:
    """Validate an outcome report (`OutcomeError` if malformed) and make its log record."""
    if type(body) is not dict:
        raise OutcomeError("the request body must be a JSON object")
    session_id = body.get("session_id")
    if type(session_id) is not str or not session_id:
        raise OutcomeError("session_id must be a non-empty string", "session_id")
    kind = body.get("type")
    if kind not in OUTCOME_TYPES:
        raise OutcomeError(f"type must be one of {', '.join(OUTCOME_TYPES)}", "type")
    for name in ("decision_id", "trigger"):
        value = body.get(name)
        if value is not None and (type(value) is not str or not value):
            raise OutcomeError(f"{name} must be a non-empty string when given", name)
    ts = body.get("ts_ms", now_ms)
    if type(ts) is float and ts.is_integer():  # JSON's 5536.0 is the integer 5536
        ts = int(ts)
    if type(ts) is not int or not 0 <= ts <= MAX_TIME_MS:
        raise OutcomeError(f"ts_ms must be a non-negative integer (ms since epoch), at most "
                           f"{MAX_TIME_MS}", "ts_ms")
    cap = limits.max_chars  # longer ids are cut as the decision record cuts fired triggers
    return {"kind": "outcome", "id": uuid.uuid4().hex, "edge_id": text(edge_id, cap),
            "ts_ms": ts, "session": hash_session(salt, session_id),
            "decision_id": text(body.get("decision_id"), cap),
            "trigger": text(body.get("trigger"), cap), "type": kind}


def load_salt(configured: str, state_dir: Path) -> str:
    """The deployment's salt: configured (shared by a fleet), else one kept in state_dir."""
    return configured or host_secret(state_dir / "telemetry.salt", 16)
