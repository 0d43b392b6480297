"""Fleet status: edges report what they run; operators see who is behind."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from .. import publishing
from ..auth import require
from ..errors import ApiError
from ..fleet import FleetRegistry

bp = Blueprint("fleet", __name__, url_prefix="/v1/fleet")


def _fleet() -> FleetRegistry:
    return current_app.extensions["fleet"]


@bp.post("/report")
@require("edge")
def report() -> Any:
    status = request.get_json(silent=True)
    if not isinstance(status, dict) or not isinstance(status.get("edge_id"), str) \
            or not status["edge_id"]:
        raise ApiError(400, "invalid_report", "a report is a JSON object with an edge_id")
    _fleet().report(status["edge_id"], status)
    return "", 204


@bp.get("")
def show() -> Any:
    current = publishing.current(current_app.extensions["edge_store"])
    revision = int(current["revision"]) if current else None
    return jsonify(current_revision=revision, edges=_fleet().view(revision))
