"""Reports over the telemetry: what each trigger did, per device and revision."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..auth import require
from ..errors import ApiError
from ..reports import MIN_ARM_SESSIONS, experiment_report, trigger_report

bp = Blueprint("reports", __name__, url_prefix="/v1/reports")


@bp.get("/triggers")
@require("publisher")
def triggers() -> Any:
    """`?window_s=30` (engagement window of a false trigger), `?since_ms=`."""
    try:
        window_s = float(request.args.get("window_s", current_app.config["FALSE_TRIGGER_WINDOW_S"]))
        since_ms = int(request.args.get("since_ms", 0))
    except ValueError:
        raise ApiError(400, "invalid_query", "window_s is a number of seconds and since_ms "
                                             "an integer") from None
    if window_s <= 0:
        raise ApiError(400, "invalid_query", "window_s must be positive", field="window_s")
    return jsonify(trigger_report(current_app.extensions["telemetry_store"], window_s, since_ms))


@bp.get("/experiment")
@require("publisher")
def experiment() -> Any:
    """The adaptive-threshold experiment per arm, and the lifts with 95 % intervals:
    `?window_s=30`, `?since_ms=`, `?min_sessions=30` (per arm, before an interval)."""
    try:
        window_s = float(request.args.get("window_s", current_app.config["FALSE_TRIGGER_WINDOW_S"]))
        since_ms = int(request.args.get("since_ms", 0))
        min_sessions = int(request.args.get("min_sessions", MIN_ARM_SESSIONS))
    except ValueError:
        raise ApiError(400, "invalid_query", "window_s is a number of seconds; since_ms and "
                                             "min_sessions are integers") from None
    if window_s <= 0:
        raise ApiError(400, "invalid_query", "window_s must be positive", field="window_s")
    if min_sessions < 2:
        raise ApiError(400, "invalid_query", "min_sessions must be at least 2",
                       field="min_sessions")
    return jsonify(experiment_report(current_app.extensions["telemetry_store"], window_s,
                                     since_ms, min_sessions))
