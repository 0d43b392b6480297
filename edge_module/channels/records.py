"""Delivery records: what a receiver gets for one push, email or webhook action."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

MAX_DELAY_MS = 30 * 86_400_000  # a pack's delay is far below it
MAX_TEXT = 256  # characters of each string field taken from the decision or the visitor


def crm_signature(key: bytes, crm_id: str) -> str:
    """What a site's backend puts beside the visitor's CRM id (`context.crm_id_sig`): the
    hex HMAC-SHA256 of the id under the key it shares with the edge (EDGE_CRM_ID_KEY)."""
    return hmac.new(key, crm_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def delivery_records(deliveries: Any, *, decision_id: str, session_id: str, revision: Any,
                     edge_id: str, now_ms: int, crm_key: bytes | None) -> list[dict[str, Any]]:
    """One record per delivery of a decision's answer. The idempotency key is the decision
    id and the trigger: a record sent twice (a retry after a lost answer, a restart) carries
    the same key, so the receiver keeps it once.

    The visitor's CRM id is only ever as good as the site's word for it: with a CRM key
    configured, an id whose signature does not check is left out (`crm_id_verified` false);
    without one, the id is passed on unverified, and says so."""
    out = []
    for d in deliveries if type(deliveries) is list else ():
        if type(d) is not dict or type(d.get("trigger")) is not str:
            continue
        trigger = d["trigger"][:MAX_TEXT]
        record: dict[str, Any] = {
            "key": f"{decision_id}:{trigger}",
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
        if type(crm_id) is str and crm_id:
            if crm_key is None:
                record["crm_id"] = crm_id[:MAX_TEXT]
            else:
                sig = d.get("crm_id_sig")
                if type(sig) is str and hmac.compare_digest(crm_signature(crm_key, crm_id),
                                                            sig.lower()):
                    record["crm_id"], record["crm_id_verified"] = crm_id[:MAX_TEXT], True
        out.append(record)
    return out


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if type(value) is str else None


def _delay(value: Any) -> int:
    """The pack's delay, counted from the edge's clock (the action's `send_at_ms` is on the
    visitor's clock, which a visitor could set anywhere)."""
    return value if type(value) is int and 0 <= value <= MAX_DELAY_MS else 0
