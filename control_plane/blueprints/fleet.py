"""Fleet status: edges report what they run; operators see who is behind."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from edge_module.distribution.edge_store import StoreError

from .. import body_schema
from ..auth import claimed_edge, may_speak_for, require
from ..distribution import publishing
from ..distribution.fleet import FleetRegistry
from ..errors import ApiError
from ..openapi import FLEET_REPORT

log = logging.getLogger("control_plane.fleet")
bp = Blueprint("fleet", __name__, url_prefix="/v1/fleet")
# An edge's report is about 2 KB; the registry keeps the last one of each edge in memory
MAX_REPORT_BYTES = 16 * 1024
MAX_KEYS = 64  # in one object of a report (the edge's telemetry and channel counts)
MAX_STRING_CHARS = 4096  # last_error, the longest string an edge sends


def _fleet() -> FleetRegistry:
    return current_app.extensions["fleet"]


@bp.post("/report")
@require("edge")
def report() -> Any:
    """What an edge runs: a JSON object as `FLEET_REPORT` describes (400 otherwise), of
    which only the fields it names are kept (`_bounded`): `GET /v1/fleet` shows only what
    its own schema allows."""
    if len(request.get_data(cache=True)) > MAX_REPORT_BYTES:  # kept per edge, shown to all
        raise ApiError(413, "report_too_large", f"a fleet report is at most "
                                                f"{MAX_REPORT_BYTES} bytes")
    status = body_schema.json_body()
    body_schema.check(FLEET_REPORT, status, "invalid_report")
    if not may_speak_for(status["edge_id"]):
        log.warning("refused a fleet report as %r from %s: its token is bound to %r",
                    str(status["edge_id"])[:100], request.remote_addr, claimed_edge())
        raise ApiError(403, "edge_id_not_yours", f"this token reports for edge "
                                                 f"{claimed_edge()!r} (and its workers) only")
    kept = {name: _bounded(value, 2, MAX_STRING_CHARS) for name, value in status.items()
            if name in FLEET_REPORT["properties"]}
    _fleet().report(status["edge_id"], kept)
    return "", 204


def _bounded(value: Any, depth: int, chars: int) -> Any:
    """`value` as the fleet keeps it: scalars (strings of at most `chars`, 1,024 within an
    object), and objects `depth` levels deep of at most 64 keys; a list, or anything
    deeper or longer, is not kept (None). The view is open to anyone: a report is no way
    to store and serve arbitrary data."""
    if value is None or type(value) in (bool, int, float):
        return value
    if type(value) is str:
        return value[:chars]
    if type(value) is dict and depth > 0 and len(value) <= MAX_KEYS:
        return {str(k)[:128]: _bounded(v, depth - 1, 1024) for k, v in value.items()}
    return None


@bp.get("")
def show() -> Any:
    """Every edge against the published revision; with the edge store away, still every
    edge (their sync errors are what is needed then), `store_error` saying why;
    `untrusted`: why entries of the store's manifest were set aside (`manifest_trust`)."""
    store_error = None
    untrusted: list[str] = []
    try:
        current = publishing.current(current_app.extensions["edge_store"])
        untrusted = publishing.set_aside(current_app.extensions["edge_store"])
    except StoreError as exc:
        current, store_error = None, str(exc)
    revision = int(current["revision"]) if current else None
    return jsonify(current_revision=revision, store_error=store_error, untrusted=untrusted,
                   edges=_fleet().view(revision))
