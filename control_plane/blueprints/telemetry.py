"""Telemetry ingest: edges send batches of decision and outcome records (edge token).
Records are checked one by one: a bad one is rejected alone (index and reason in the
answer), never the batch."""

from __future__ import annotations

import gzip
import io
import json
import logging
import threading
import zlib
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..auth import claimed_edge, may_speak_for, require
from ..body_schema import not_json
from ..errors import ApiError
from ..telemetry.telemetry_store import (
    Refused,
    SinkUnavailable,
    TelemetryStore,
    Unparsable,
)

log = logging.getLogger("control_plane.telemetry")
bp = Blueprint("telemetry", __name__, url_prefix="/v1/telemetry")

# An edge's batch is at most 2,000 records and 768 KiB before compression, and the edge
# splits a batch that is answered 413: these bounds leave it room and stop a small gzip
# body from costing minutes of CPU and gigabytes (one object per line) before the answer.
MAX_INFLATED_BYTES = 8 * 1024 * 1024
MAX_BATCH_LINES = 5_000
MAX_LISTED = 100  # rejections listed one by one in an answer (all are counted by code)
# Firings named in one batch, at most: each is a row written under the store's one write
# lock, so a small gzip body naming millions held every other edge's ingest past its busy
# timeout. An edge's batch (768 KiB, 64 firings a decision) stays far below; over it the
# answer is 413, and the edge splits the batch. (250,000 held the lock for 5 s a batch.)
MAX_BATCH_FIRED = 50_000


@bp.post("")
@require("edge")
def ingest() -> Any:
    """A batch as JSON lines, gzip-compressed (Content-Encoding: gzip) or not. The answer
    counts the records accepted and already stored (duplicates), and lists the rejected
    ones with their index (0-based, among the non-blank lines) and reason.

    At most CONTROL_THREADS - 2 batches are taken at once (the store writes one at a time
    anyway); past that the answer is 503 at once and the edge sends the batch again
    later. A review held all four threads with large batches, one after another, and
    /healthz, the reports and the console waited up to 15 s behind them."""
    lane: threading.BoundedSemaphore = current_app.extensions["ingest_lane"]
    if not lane.acquire(blocking=False):
        return jsonify(error={"code": "busy", "message": "the control plane is taking other "
                              "telemetry batches: send this one again shortly"}), 503, {
            "Retry-After": "1"}
    try:
        return _ingest()
    finally:
        lane.release()


def _ingest() -> Any:
    raw = request.get_data(cache=False)
    coding = request.headers.get("Content-Encoding", "").strip().lower() or "identity"
    if coding not in ("gzip", "x-gzip", "identity"):  # read as text, every line was refused
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {coding[:40]!r} is "
                       "not taken: send gzip or no encoding", accept_encoding="gzip")
    if coding in ("gzip", "x-gzip"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                raw = f.read(MAX_INFLATED_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:  # damaged data: zlib's own error
            raise ApiError(400, "invalid_gzip", f"the body is not valid gzip: {exc}") from None
        if len(raw) > MAX_INFLATED_BYTES:
            raise ApiError(413, "batch_too_large", f"a batch inflates to more than "
                                                   f"{MAX_INFLATED_BYTES >> 20} MiB; send "
                                                   f"smaller batches")
    # counted before any line is parsed, as splitlines() will split them (\r too)
    if raw.count(b"\n") + raw.count(b"\r") > MAX_BATCH_LINES:
        raise ApiError(413, "batch_too_large", f"a batch has more than {MAX_BATCH_LINES} "
                                               f"line breaks; send smaller batches")
    records: list[Any] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line, parse_constant=not_json))  # no NaN
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            records.append(Unparsable(str(exc)[:200]))
    bound = claimed_edge()
    if bound is not None:  # a token bound to one edge writes that edge's records only
        records = [r if type(r) is not dict or may_speak_for(r.get("edge_id")) else
                   Refused("edge_id_not_yours", f"this token sends records of edge "
                                                f"{bound!r} (and its workers) only")
                   for r in records]
        foreign = sum(isinstance(r, Refused) for r in records)
        if foreign:  # a leaked token trying other names, or an edge given the wrong EDGE_ID
            log.warning("refused %d telemetry record(s) from %s: not of edge %r, whose "
                        "token sent them", foreign, request.remote_addr, bound)
    fired = sum(len(r["fired"]) for r in records
                if type(r) is dict and type(r.get("fired")) is list)
    if fired > MAX_BATCH_FIRED:
        raise ApiError(413, "batch_too_large", f"a batch names {fired} firings, more than "
                                               f"{MAX_BATCH_FIRED}; send smaller batches")
    try:
        done = current_app.extensions["telemetry_sink"].ingest(records)
    except SinkUnavailable as exc:
        # the edge keeps the batch and sends it again: nothing is lost
        return jsonify(error={"code": "sink_unavailable", "message": str(exc)}), 503, {
            "Retry-After": "5"}
    return jsonify(done.answer(MAX_LISTED))


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
