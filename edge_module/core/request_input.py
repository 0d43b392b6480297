"""A decide request's input, checked before anything of it reaches the session: the events
ordered and each applied to the session as its fields pass, the context and its attributes
within their bounds. Every refusal is a `DecisionError` naming the field."""

from __future__ import annotations

from typing import Any

from .catalog import EVENT_TYPES, MAX_LOCALE, MAX_PAGE_VIEWS, WEEKDAYS
from .content import locale_parts
from .errors import BatchTooLarge, DecisionError
from .features import FORMS, HOVER_MS, HOVERS, MAX_TOTAL_MS, MOVES, SCROLLS
from .session import MAX_CONTEXT_BYTES, Session, utf8_size
from .urls import url_path

_EVENT_TYPES = frozenset(EVENT_TYPES)
_FORM_EVENTS = frozenset(("focus", "input", "submit", "blur", "click"))
NUMBER_TYPES = (int, float)  # a JSON number: not bool (its own type)
MAX_SESSION_ID = 256
# Visitor-chosen strings kept in the session or used as keys are bounded: a session's state
# must stay small, and no request may make it too big to decide on.
MAX_URL = 2048
MAX_NAME = 256  # element targets, custom event names
# Context values a rule can test: bounded like URLs, so no value costs a glob (or the
# decision log) more than a few KiB. Longer ones are refused, not cut: a cut value could
# match a glob the whole one does not.
MAX_CONTEXT_VALUE = MAX_URL  # referrer and the other context strings
MAX_ATTRIBUTES = 64
HOURS = frozenset(range(24))  # context.local_hour (18.0 is 18, as JSON has it)
MAX_ATTRIBUTE_VALUE = MAX_NAME  # a CRM field's value (a string), and its name
_SCALARS = (str, int, float, bool)
# Timestamps stay exact in a JSON double (2^53 - 1 ms is the year 287396): a larger one is
# a client bug, and would make answers no JSON encoder of 64-bit integers can write.
MAX_TIME_MS = 2**53 - 1


def refuse(code: str, message: str, field: str) -> DecisionError:
    """The refusal of a request field."""
    return DecisionError(code, message, field)


# A visitor's numbers (px, ms) within 2^53 (as timestamps are): JSON allows integers of
# any length (the stdlib's parser keeps them) and doubles to 1.8e308, and sums and
# differences of such values overflowed (OverflowError, a 500) or turned to inf.
MAX_NUMBER = 2**53 - 1


def is_number(value: Any) -> bool:
    """A JSON number (not a bool) within +-MAX_NUMBER (NaN and inf are not)."""
    return type(value) in NUMBER_TYPES and -MAX_NUMBER <= value <= MAX_NUMBER


def order_events(raw: Any, max_events: int) -> list[tuple[int, int, dict[str, Any]]]:
    """Check a batch's shape and timestamps; return (ts_ms, position, event), oldest first.

    Each event's own fields are checked as it is applied (`apply_event`): a batch with any
    invalid event is refused whole, so nothing of it reaches the session either way.
    """
    if raw is None:
        return []
    if type(raw) is not list:
        raise refuse("invalid_request", "events must be a list of event objects", "events")
    if len(raw) > max_events:
        raise BatchTooLarge(
            "batch_too_large",
            f"{len(raw)} events in one batch; at most {max_events} are accepted, "
            "send the rest in another request",
            "events",
        )
    out = []
    last = -1
    ordered = True
    views = 0
    for i, ev in enumerate(raw):
        if type(ev) is not dict:
            raise refuse("invalid_event", "each event must be a JSON object", f"events[{i}]")
        etype = ev.get("type")
        if type(etype) is not str:
            raise refuse("invalid_event", f"type must be a string, one of {', '.join(EVENT_TYPES)}",
                       f"events[{i}].type")
        if etype == "page_view":
            views += 1
            if views > MAX_PAGE_VIEWS:
                raise BatchTooLarge(
                    "batch_too_large",
                    f"more than {MAX_PAGE_VIEWS} page views in one batch; send the rest "
                    "in another request", f"events[{i}]")
        ts = ev.get("ts_ms")
        if type(ts) is not int:
            ts = int(ts) if is_number(ts) else -1
        if not 0 <= ts <= MAX_TIME_MS:
            raise refuse("invalid_event", "ts_ms must be a non-negative number of ms since epoch, "
                       f"at most {MAX_TIME_MS}", f"events[{i}].ts_ms")
        if ts < last:
            ordered = False
        last = ts
        out.append((ts, i, ev))
    if not ordered:
        out.sort(key=_first_two)  # simultaneous events keep their order
    return out


def _first_two(item: tuple[int, int, dict[str, Any]]) -> tuple[int, int]:
    return item[0], item[1]


def _invalid(i: int, field: str, message: str) -> DecisionError:
    return refuse("invalid_event", message, f"events[{i}].{field}")


def _name_required(i: int, field: str, event: str) -> DecisionError:
    """The refusal of an event whose `field` is not a string of at most MAX_NAME characters
    (the check stays inline: it runs for every hover and custom event)."""
    return _invalid(i, field, f"{event} needs a {field} (a string of at most {MAX_NAME} "
                              "characters)")


def apply_event(sess: Session, ts: int, i: int, ev: dict[str, Any], etype: Any,
           ctx_url: str | None, keep_mouse: int, forms: bool,
           visit: list[float] | None = None) -> bool:
    """Check one event's fields and apply it; True when it entered a new page. `visit`:
    the session's counts over the visit, kept while decisions report (features.py)."""
    if etype == "scroll":
        depth = ev.get("depth")
        if depth is not None:
            if type(depth) not in NUMBER_TYPES or not 0 <= depth <= 1:
                raise _invalid(i, "depth", "depth must be a number from 0 to 1")
            if depth > sess.depth:
                sess.depth = depth
            sess.pos = depth
        y = ev.get("y")
        if y is not None:
            if not is_number(y):
                raise _invalid(i, "y", "y must be a number (px from the top)")
            sess.scroll_to(ts, y)
        if visit is not None:
            visit[SCROLLS] += 1
        return False
    if etype == "page_view":
        url = ev.get("url")
        if url is not None and (type(url) is not str or len(url) > MAX_URL):
            raise _invalid(i, "url", f"url must be a string of at most {MAX_URL} characters")
        if ts >= sess.pv:
            sess.enter_page(url_path(url or ctx_url or "/"), ts)
            return True
        return False
    if etype == "hover":
        target = ev.get("target")
        if type(target) is not str or len(target) > MAX_NAME:
            raise _name_required(i, "target", "a hover")
        dur = ev.get("duration_ms")
        if not is_number(dur) or dur < 0:
            raise _invalid(i, "duration_ms", "duration_ms must be a non-negative number")
        sess.hovered(target, dur)
        if visit is not None:
            visit[HOVER_MS] = min(visit[HOVER_MS] + dur, MAX_TOTAL_MS)
            visit[HOVERS] += 1
        return False
    if etype == "custom":
        name = ev.get("name")
        if type(name) is not str or len(name) > MAX_NAME:
            raise _name_required(i, "name", "a custom event")
        return False
    if etype == "mousemove":
        x, y = ev.get("x"), ev.get("y")
        if x is not None or y is not None:
            if not is_number(x) or not is_number(y):
                raise _invalid(i, "x", "x and y must be numbers (px)")
            if keep_mouse or visit is not None:
                sess.mouse_to(ts, x, y, keep_mouse, visit)
        if visit is not None:
            visit[MOVES] += 1
        return False
    if etype == "dismiss":
        sess.dismissed = ts
        return False
    if etype in _FORM_EVENTS:
        target = ev.get("target")
        if target is not None and (type(target) is not str or len(target) > MAX_NAME):
            raise _invalid(i, "target", f"target must be a string of at most {MAX_NAME} "
                                        "characters")
        if forms or visit is not None:
            sess.form_event(etype, ts, target)
            if visit is not None and etype != "click":
                visit[FORMS] += 1
        return False
    if etype not in _EVENT_TYPES:
        raise _invalid(i, "type",
                       f"unknown event type {etype!r}; expected one of {', '.join(EVENT_TYPES)}")
    return False



def request_context(request: dict[str, Any], sess: Session) -> dict[str, Any]:
    """The request's context, or the session's last one when the request sends none."""
    context = request.get("context")
    if context is None:
        return sess.context
    if type(context) is not dict:
        raise refuse("invalid_request", "context must be a JSON object", "context")
    url = context.get("url")
    if url is not None and (type(url) is not str or len(url) > MAX_URL):
        raise refuse("invalid_request", f"context.url must be a string of at most {MAX_URL} "
                   "characters", "context.url")
    for name, value in context.items():
        if type(value) is str and len(value) > MAX_CONTEXT_VALUE:
            raise refuse("invalid_request", f"context.{name[:64]} must be at most "
                       f"{MAX_CONTEXT_VALUE} characters", f"context.{name[:64]}")
    locale = context.get("locale")
    if locale is not None and locale_parts(locale) is None:
        raise refuse("invalid_request", "context.locale must be a BCP 47 language tag such as "
                     f"de-AT (at most {MAX_LOCALE} characters)", "context.locale")
    for name in ("crm_id", "crm_id_sig"):  # read by the host for channel deliveries
        if context.get(name) is not None and type(context[name]) is not str:
            raise refuse("invalid_request", f"context.{name} must be a string", f"context.{name}")
    # Values a condition could never match are refused, not left to fail silently (a
    # `local_hour: ">= 18"` rule never held for "18", nor `weekday: sat` for "Saturday").
    hour = context.get("local_hour")
    if hour is not None and not (type(hour) in (int, float) and hour in HOURS):
        raise refuse("invalid_request", "context.local_hour must be the visitor's hour, an "
                     "integer from 0 to 23", "context.local_hour")
    day = context.get("weekday")
    if day is not None and not (day in WEEKDAYS if type(day) is str else
                                type(day) is int and 0 <= day < 7):
        raise refuse("invalid_request", "context.weekday must be one of mon, tue, wed, thu, "
                     "fri, sat, sun (or 0 to 6 from Monday)", "context.weekday")
    returning = context.get("returning")
    if returning is not None and type(returning) is not bool:
        raise refuse("invalid_request", "context.returning must be true or false",
                     "context.returning")
    attrs = context.get("attributes")
    if attrs is not None:
        _check_attributes(attrs)
    if len(context) > (1 if "url" in context else 0):
        kept = {k: v for k, v in context.items() if k != "url"}
        if kept != sess.context and utf8_size(repr(kept)) <= MAX_CONTEXT_BYTES:
            sess.context = kept
    return context


def _check_attributes(attrs: Any) -> None:
    """CRM attributes: an object of at most MAX_ATTRIBUTES scalars (strings bounded)."""
    if type(attrs) is not dict:
        raise refuse("invalid_request", "context.attributes must be a JSON object",
                   "context.attributes")
    if len(attrs) > MAX_ATTRIBUTES:
        raise refuse("invalid_request", f"context.attributes holds {len(attrs)} attributes; at "
                   f"most {MAX_ATTRIBUTES} are accepted", "context.attributes")
    for name, value in attrs.items():
        if len(name) > MAX_ATTRIBUTE_VALUE:
            raise refuse("invalid_request", f"attribute names are at most {MAX_ATTRIBUTE_VALUE} "
                       "characters", "context.attributes")
        if value is not None and (type(value) not in _SCALARS or (
                type(value) is str and len(value) > MAX_ATTRIBUTE_VALUE)):
            raise refuse("invalid_request", f"context.attributes.{name[:64]} must be a string of "
                       f"at most {MAX_ATTRIBUTE_VALUE} characters, a number, a boolean or null",
                       f"context.attributes.{name[:64]}")

