"""Reports over the telemetry: what each trigger did, per device and revision.

A report reads every firing of its period, so reports (here and the console's pages over
the same functions) run in a lane of their own (`report_lane`): past it the answer is 503
at once, and the threads left serve /healthz, publishing and ingest."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import Blueprint, current_app, jsonify, request

from ..auth import require
from ..distribution import publishing
from ..errors import ApiError
from ..telemetry.reports import (
    MAX_RECALIBRATIONS,
    MIN_ARM_SESSIONS,
    experiment_report,
    experiment_split,
    recalibration_log,
    trigger_report,
)

bp = Blueprint("reports", __name__, url_prefix="/v1/reports")
MAX_WINDOW_S = 86_400.0  # an engagement window longer than a day is no longer one
MAX_SINCE_MS = 2**63 - 1  # what the telemetry store's integers hold
MAX_MIN_SESSIONS = 10**9
REPORTS_RETRY_AFTER_S = 5  # a report over a busy store takes seconds, not one

F = TypeVar("F", bound=Callable[..., Any])


class ReportsBusy(Exception):
    """Every place in the report lane is taken: the caller asks again later (503 with
    Retry-After; the API answers JSON, the console a page)."""

    retry_after_s = REPORTS_RETRY_AFTER_S

    def __init__(self, places: int) -> None:
        super().__init__(f"the control plane is computing {places} other report(s), as many "
                         f"as it takes at once: ask again in {self.retry_after_s} s")
        self.places = places


@contextmanager
def report_lane() -> Iterator[None]:
    """A place in the app's report lane for the block, or ReportsBusy at once: reports
    never queue for threads (four held all four for 50 s, /healthz waiting behind them)."""
    lane: threading.BoundedSemaphore = current_app.extensions["report_lane"]
    if not lane.acquire(blocking=False):
        raise ReportsBusy(current_app.extensions["report_lane_places"])
    try:
        yield
    finally:
        lane.release()


def in_report_lane(view: F) -> F:
    """`view` run in the report lane (`report_lane`); put it after the sign-in check, so a
    request turned away for its token takes no place."""
    @functools.wraps(view)
    def run(*args: Any, **kwargs: Any) -> Any:
        with report_lane():
            return view(*args, **kwargs)
    return run  # type: ignore[return-value]


@bp.errorhandler(ReportsBusy)
def _busy(exc: ReportsBusy) -> Any:
    return jsonify(error={"code": "reports_busy", "message": str(exc),
                          "retry_after_s": exc.retry_after_s}), 503, {
        "Retry-After": str(exc.retry_after_s)}


def _window_and_since() -> tuple[float, int]:
    """`window_s` and `since_ms` from the query (400 invalid_query naming the field)."""
    try:
        window_s = float(request.args.get("window_s", current_app.config["FALSE_TRIGGER_WINDOW_S"]))
    except ValueError:
        window_s = math.nan
    if not (math.isfinite(window_s) and 0 < window_s <= MAX_WINDOW_S):
        raise ApiError(400, "invalid_query", "window_s must be a number of seconds above 0 and "
                       f"at most {MAX_WINDOW_S:g}", field="window_s")
    try:
        since_ms = int(request.args.get("since_ms", 0))
    except ValueError:
        since_ms = -1
    if not 0 <= since_ms <= MAX_SINCE_MS:
        raise ApiError(400, "invalid_query", "since_ms must be an integer (ms since epoch, 0 "
                       "or more)", field="since_ms")
    return window_s, since_ms


@bp.get("/triggers")
@require("publisher")
@in_report_lane
def triggers() -> Any:
    """`?window_s=30` (engagement window of a false trigger), `?since_ms=`."""
    window_s, since_ms = _window_and_since()
    return jsonify(trigger_report(current_app.extensions["telemetry_store"], window_s, since_ms))


@bp.get("/experiment")
@require("publisher")
@in_report_lane
def experiment() -> Any:
    """The adaptive-threshold experiment per arm, the lifts with 95 % intervals and the
    sample-ratio check against the published split: `?window_s=30`, `?since_ms=`,
    `?min_sessions=30` (per arm, before an interval)."""
    window_s, since_ms = _window_and_since()
    try:
        min_sessions = int(request.args.get("min_sessions", MIN_ARM_SESSIONS))
    except ValueError:
        min_sessions = 0
    if not 2 <= min_sessions <= MAX_MIN_SESSIONS:
        raise ApiError(400, "invalid_query", "min_sessions must be an integer from 2 to "
                       f"{MAX_MIN_SESSIONS}", field="min_sessions")
    served = publishing.served(current_app.extensions["edge_store"])
    return jsonify(experiment_report(current_app.extensions["telemetry_store"], window_s,
                                     since_ms, min_sessions,
                                     experiment_split(served[1] if served else None)))


@bp.get("/recalibrations")
@require("publisher")
@in_report_lane
def recalibrations() -> Any:
    """The learning loop's decisions, newest first: `?since_ms=`, `?trigger=`, `?limit=200`."""
    _, since_ms = _window_and_since()
    try:
        limit = int(request.args.get("limit", 200))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_RECALIBRATIONS:
        raise ApiError(400, "invalid_query", f"limit must be an integer from 1 to "
                       f"{MAX_RECALIBRATIONS}", field="limit")
    return jsonify(recalibration_log(current_app.extensions["telemetry_store"], since_ms,
                                     request.args.get("trigger"), limit))
