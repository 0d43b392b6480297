"""Server-side errors are logged, without a line per request when they repeat."""

from __future__ import annotations

import logging

from flask import Flask

from control_plane import errors
from control_plane.errors import register_error_handlers
from edge_module.distribution.edge_store import StoreError


def _app(messages: list[str]) -> Flask:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/manifest")
    def manifest():
        raise StoreError(messages[0])

    return app


def test_a_store_away_is_logged_once_per_while_not_per_request(caplog, monkeypatch):
    """Each request while the store was away wrote an ERROR line: a client asking a few
    hundred times a second filled the log."""
    messages = ["s3://bucket/edge: no answer within 8 s"]
    client = _app(messages).test_client()
    clock = [1000.0]
    monkeypatch.setattr(errors.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.ERROR, logger="control_plane"):
        for _ in range(50):
            answer = client.get("/manifest")
            assert answer.status_code == 503
            assert answer.get_json()["error"] == {"code": "store_unavailable",
                                                  "message": messages[0]}
        assert [r.getMessage() for r in caplog.records] == [f"edge store: {messages[0]}"]
        messages[0] = "s3://bucket/edge: access denied"  # another error: at once
        client.get("/manifest")
        clock[0] += errors.LOG_REPEAT_S  # the first again, a while later: with the count
        messages[0] = "s3://bucket/edge: no answer within 8 s"
        client.get("/manifest")
        client.get("/manifest")
        clock[0] += errors.LOG_REPEAT_S
        client.get("/manifest")
    assert [r.getMessage() for r in caplog.records] == [
        "edge store: s3://bucket/edge: no answer within 8 s",
        "edge store: s3://bucket/edge: no answer within 8 s (49 more time(s) since it was "
        "logged)",
        "edge store: s3://bucket/edge: access denied",
        "edge store: s3://bucket/edge: no answer within 8 s",
        "edge store: s3://bucket/edge: no answer within 8 s (1 more time(s) since it was "
        "logged)",
        "edge store: s3://bucket/edge: no answer within 8 s"]
