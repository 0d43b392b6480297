"""Delivery records: what a receiver gets for one push, email or webhook action."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ..core.catalog import MAX_CHANNEL_DELAY_MS as MAX_DELAY_MS

MAX_TEXT = 256  # characters of each string field taken from the decision or the visitor


MAX_EXPIRY_DIGITS = 12  # Unix seconds in a signature's expiry (year 33658 and before)


def crm_signature(key: bytes, crm_id: str, expires_s: int) -> str:
    """What a site's backend puts beside the visitor's CRM id (`context.crm_id_sig`):
    `<expires_s>.<hex HMAC-SHA256 of "<expires_s>.<crm_id>">` under the key it shares with
    the edge (EDGE_CRM_ID_KEY). The expiry (Unix seconds) bounds what a copied signature is
    worth: a page's id and signature, taken elsewhere, stop working when it passes."""
    mac = hmac.new(key, f"{expires_s}.{crm_id}".encode("utf-8", "surrogatepass"),
                   hashlib.sha256).hexdigest()
    return f"{expires_s}.{mac}"


def delivery_records(deliveries: Any, *, decision_id: str, session_id: str, revision: Any,
                     edge_id: str, now_ms: int, crm_key: bytes | None) -> list[dict[str, Any]]:
    """One record per delivery of a decision's answer. The idempotency key names the firing,
    not the request: the session, the trigger and which of its firings in that session this
    is (the core's `firing`). A record sent twice (a retry after a lost answer, a restart)
    carries the same key, and so does the same firing decided again from a replayed state
    (a visitor resending an old state token): the outbox and the receiver keep it once.

    The visitor's CRM id is only ever as good as the site's word for it: with a CRM key
    configured, an id whose signature does not check is left out (`crm_id_verified` false);
    without one, the id is passed on unverified, and says so."""
    out = []
    for d in deliveries if type(deliveries) is list else ():
        if type(d) is not dict or type(d.get("trigger")) is not str:
            continue
        trigger = d["trigger"][:MAX_TEXT]
        firing = d.get("firing") if type(d.get("firing")) is str else decision_id
        record: dict[str, Any] = {
            "key": delivery_key(session_id, trigger, firing),
            "decision_id": decision_id,
            "trigger": trigger,
            "channel": _text(d.get("channel")),
            "template": _text(d.get("template")),
            "content": _text(d.get("content")),
            "session_id": session_id[:MAX_TEXT],
            "crm_id": None,
            "crm_id_verified": False,
            "due_ms": now_ms + _delay(d.get("delay_ms")),
            "decided_ms": now_ms,
            "revision": _text(revision),
            "edge_id": edge_id,
        }
        variant = d.get("variant")
        if type(variant) is dict:
            record["variant"] = variant
        crm_id = d.get("crm_id")
        if type(crm_id) is str and 0 < len(crm_id) <= MAX_TEXT:  # a longer id is nobody's
            if crm_key is None:
                record["crm_id"] = crm_id
            elif _signed(crm_key, crm_id, d.get("crm_id_sig"), now_ms):
                record["crm_id"], record["crm_id_verified"] = crm_id, True
        out.append(record)
    return out


def delivery_key(session_id: str, trigger: str, firing: str) -> str:
    digest = hashlib.sha256("\x1f".join((session_id, trigger, firing)).encode(
        "utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{digest}:{trigger}"


def _signed(key: bytes, crm_id: str, sig: Any, now_ms: int) -> bool:
    """`sig` is the site's signature of `crm_id`, not expired at `now_ms` (compared as
    bytes: a visitor's non-ASCII text is a wrong signature, not an error)."""
    if type(sig) is not str:
        return False
    expires, dot, mac = sig.partition(".")
    if not (dot and expires.isascii() and expires.isdigit() and
            len(expires) <= MAX_EXPIRY_DIGITS and len(mac) == 64):
        return False
    if int(expires) * 1000 < now_ms:
        return False
    return hmac.compare_digest(crm_signature(key, crm_id, int(expires)).encode(),
                               sig.lower().encode("utf-8", "surrogatepass"))


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if type(value) is str else None


def _delay(value: Any) -> int:
    """The pack's delay, counted from the edge's clock (the action's `send_at_ms` is on the
    visitor's clock, which a visitor could set anywhere). Packs cannot ask for more than
    MAX_DELAY_MS (the validator says so); a snapshot written by hand is held to it."""
    return min(value, MAX_DELAY_MS) if type(value) is int and value > 0 else 0
