"""The Flask application factory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from edge_module.edge_store import LocalFolderStore, StoreError

from . import config as config_module
from .errors import ApiError
from .pack_registry import PackRegistry
from .rulepack import RulePackError

log = logging.getLogger("control_plane")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config_module.load(config))
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_PACK_BYTES"]
    app.extensions["pack_registry"] = PackRegistry(Path(app.config["DATA_DIR"]) / "packs")
    app.extensions["edge_store"] = LocalFolderStore(app.config["STORE_DIR"])

    from .blueprints.rules import bp as rules_bp
    from .blueprints.snapshots import bp as snapshots_bp

    app.register_blueprint(rules_bp)
    app.register_blueprint(snapshots_bp)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    # The one place errors become HTTP answers: JSON, never a stack trace.
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(RulePackError)
    def pack_error(exc: RulePackError) -> Any:
        problems = [p.to_dict() for p in exc.problems]
        message = f"{len(problems)} problem(s) in the rule pack"
        return jsonify(error={"code": "invalid_pack", "message": message,
                              "problems": problems}), 422

    @app.errorhandler(StoreError)
    def store_error(exc: StoreError) -> Any:
        log.error("edge store: %s", exc)
        return jsonify(error={"code": "store_unavailable", "message": str(exc)}), 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": exc.description}), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return jsonify(error={"code": "internal_error", "message": "internal error"}), 500

    return app
