"""Telemetry ingest: edges send batches of decision and outcome records (edge token)."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..auth import require
from ..errors import ApiError
from ..telemetry_store import TelemetryError, TelemetryStore

bp = Blueprint("telemetry", __name__, url_prefix="/v1/telemetry")

MAX_INFLATED_BYTES = 64 * 1024 * 1024  # a gzip bomb stops here


@bp.post("")
@require("edge")
def ingest() -> Any:
    """A batch as JSON lines, gzip-compressed (Content-Encoding: gzip) or not."""
    raw = request.get_data(cache=False)
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                raw = f.read(MAX_INFLATED_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise ApiError(400, "invalid_gzip", f"the body is not valid gzip: {exc}") from None
        if len(raw) > MAX_INFLATED_BYTES:
            raise ApiError(413, "batch_too_large", "a batch inflates to more than 64 MiB; "
                                                   "send smaller batches")
    records = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise ApiError(400, "invalid_record", f"line {n} is not JSON: {exc}") from None
    try:
        done = current_app.extensions["telemetry_sink"].ingest(records)
    except TelemetryError as exc:
        raise ApiError(400, "invalid_record", f"line {exc.line}: {exc.message}") from None
    return jsonify(stored=done.stored, duplicates=done.duplicates)


@bp.get("/counts")
@require("publisher")
def counts() -> Any:
    """How many decision and outcome records are stored: `?edge_id=` (one edge),
    `?since_ms=` (records from then on). What a load test or an operator checks delivery
    against; with a Kinesis sink the records are downstream and not counted here."""
    if not isinstance(current_app.extensions["telemetry_sink"], TelemetryStore):
        raise ApiError(409, "not_stored_here", "telemetry goes to a Kinesis stream; count "
                                               "the records where it is consumed")
    try:
        since_ms = int(request.args.get("since_ms", 0))
        if not 0 <= since_ms < 2**63:
            raise ValueError(since_ms)
    except ValueError:
        raise ApiError(400, "invalid_query", "since_ms must be an integer (ms since epoch, "
                                             "0 or more)", field="since_ms") from None
    edge_id = request.args.get("edge_id") or None
    stored = current_app.extensions["telemetry_store"].counts(edge_id, since_ms)
    return jsonify(edge_id=edge_id, since_ms=since_ms, **stored)
