"""Errors the HTTP API answers with, and the one place every error becomes a JSON answer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("control_plane")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def _answer(status: int, code: str, message: str | None, headers: Any = None, **extra: Any) -> Any:
    """The one shape of an error answer: `{"error": {"code", "message", ...}}`."""
    return jsonify(error={"code": code, "message": message, **extra}), status, headers or {}


def _problems_answer(exc: Any, status: int, code: str, message: str) -> Any:
    return _answer(status, code, message, problems=[p.to_dict() for p in exc.problems])


LOG_REPEAT_S = 30.0  # the same server-side error is logged again at most this often


def _plain(status: int, code: str, logged: str | None = None) -> Callable[[Exception], Any]:
    """A handler answering `status` and `code` with the error's text; logged under `logged`,
    the same text once per LOG_REPEAT_S with how many times it came meanwhile: a store that
    is away answers every request alike, and a client repeating one had written a line
    per request."""
    last: dict[str, Any] = {"text": None, "at": 0.0, "repeats": 0}
    lock = threading.Lock()

    def handle(exc: Exception) -> Any:
        if logged:
            text, now = str(exc), time.monotonic()
            with lock:
                again = text == last["text"] and now - last["at"] < LOG_REPEAT_S
                if again:
                    last["repeats"] += 1
                else:
                    before, repeats = last["text"], last["repeats"]
                    last.update(text=text, at=now, repeats=0)
            if not again:
                if repeats:
                    log.error("%s: %s (%d more time(s) since it was logged)", logged,
                              before, repeats)
                log.error("%s: %s", logged, text)
        return _answer(status, code, str(exc))
    return handle


def register_error_handlers(app: Flask) -> None:
    """JSON for every error (`{"error": {"code", "message", ...}}`), never a stack trace;
    the headers an error carries (Allow, WWW-Authenticate, Retry-After) are kept."""
    from control_plane.distribution.keys import KeyRingError
    from control_plane.distribution.publishing import PublishError, RevisionError
    from edge_module.distribution.edge_store import StoreError

    from .rulepack import RulePackError
    from .rulepack.pack_limits import PackLimitError

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        extra = dict(exc.extra)
        headers = {}
        if "www_authenticate" in extra:
            headers["WWW-Authenticate"] = extra.pop("www_authenticate")
        if "accept_encoding" in extra:  # a 415: the codings taken (RFC 9110, 15.5.16)
            headers["Accept-Encoding"] = extra.pop("accept_encoding")
        return _answer(exc.status, exc.code, exc.message, headers, **extra)

    # Errors whose text is the answer's message; the server-side ones are logged too.
    app.register_error_handler(KeyRingError, _plain(409, "signing_key"))
    app.register_error_handler(PublishError, _plain(500, "publish_failed", "publish failed"))
    app.register_error_handler(StoreError, _plain(503, "store_unavailable", "edge store"))

    @app.errorhandler(PackLimitError)
    def pack_limit_error(exc: PackLimitError) -> Any:
        return _problems_answer(exc, 413, "pack_too_large",
                                "the rule pack is over a size limit; nothing was validated")

    @app.errorhandler(RulePackError)
    def pack_error(exc: RulePackError) -> Any:
        return _problems_answer(exc, 422, "invalid_pack",
                                f"{len(exc.problems)} problem(s) in the rule pack")

    @app.errorhandler(RevisionError)
    def revision_error(exc: RevisionError) -> Any:
        status = 404 if exc.code == "unknown_revision" else 409
        return _answer(status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        # e.g. a 405's Allow: the exception's own headers, but the body is ours (JSON)
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return _answer(exc.code or 500, code, exc.description, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return _answer(500, "internal_error", "internal error")
