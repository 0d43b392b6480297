"""Errors the HTTP API answers with, and the one place every error becomes a JSON answer."""

from __future__ import annotations

import logging
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


def _problems_answer(exc: Any, status: int, code: str, message: str) -> Any:
    problems = [p.to_dict() for p in exc.problems]
    return jsonify(error={"code": code, "message": message, "problems": problems}), status


def register_error_handlers(app: Flask) -> None:
    """JSON for every error (`{"error": {"code", "message", ...}}`), never a stack trace;
    the headers an error carries (Allow, WWW-Authenticate, Retry-After) are kept."""
    from edge_module.edge_store import StoreError

    from .keys import KeyRingError
    from .publishing import PublishError, RevisionError
    from .rulepack import RulePackError
    from .rulepack.source import PackLimitError

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        extra = dict(exc.extra)
        headers = {}
        if "www_authenticate" in extra:
            headers["WWW-Authenticate"] = extra.pop("www_authenticate")
        body = {"error": {"code": exc.code, "message": exc.message, **extra}}
        return jsonify(body), exc.status, headers

    @app.errorhandler(KeyRingError)
    def key_error(exc: KeyRingError) -> Any:
        return jsonify(error={"code": "signing_key", "message": str(exc)}), 409

    @app.errorhandler(PublishError)
    def publish_error(exc: PublishError) -> Any:
        log.error("publish failed: %s", exc)
        return jsonify(error={"code": "publish_failed", "message": str(exc)}), 500

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
        return jsonify(error={"code": exc.code, "message": exc.message}), status

    @app.errorhandler(StoreError)
    def store_error(exc: StoreError) -> Any:
        log.error("edge store: %s", exc)
        return jsonify(error={"code": "store_unavailable", "message": str(exc)}), 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        # e.g. a 405's Allow: the exception's own headers, but the body is ours (JSON)
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return jsonify(error={"code": code, "message": exc.description}), exc.code or 500, \
            headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return jsonify(error={"code": "internal_error", "message": "internal error"}), 500
