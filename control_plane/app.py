"""The Flask application factory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from edge_module.edge_store import StoreError, open_store

from . import config as config_module
from .errors import ApiError
from .fleet import FleetRegistry
from .keys import KeyRing, KeyRingError
from .openapi import openapi_document
from .pack_registry import PackRegistry
from .publishing import PublishError, RevisionError
from .rulepack import RulePackError
from .telemetry_sink import make_sink
from .telemetry_store import TelemetryStore

log = logging.getLogger("control_plane")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config_module.load(config))
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_PACK_BYTES"]
    app.extensions["pack_registry"] = PackRegistry(Path(app.config["DATA_DIR"]) / "packs",
                                                   app.config["CATALOG_FILE"] or None)
    app.extensions["edge_store"] = open_store(app.config["STORE_DIR"],
                                              app.config["S3_ENDPOINT_URL"] or None)
    app.extensions["key_ring"] = KeyRing(app.config["KEYS_DIR"], app.config["TRUSTED_KEYS"])
    app.extensions["fleet"] = FleetRegistry()
    app.extensions["telemetry_store"] = TelemetryStore(
        Path(app.config["DATA_DIR"]) / "telemetry.sqlite3")
    app.extensions["telemetry_sink"] = make_sink(app.config, app.extensions["telemetry_store"])

    from .blueprints.compile import bp as compile_bp
    from .blueprints.fleet import bp as fleet_bp
    from .blueprints.keys import bp as keys_bp
    from .blueprints.rules import bp as rules_bp
    from .blueprints.reports import bp as reports_bp
    from .blueprints.snapshots import bp as snapshots_bp
    from .blueprints.telemetry import bp as telemetry_bp

    app.register_blueprint(rules_bp)
    app.register_blueprint(compile_bp)
    app.register_blueprint(snapshots_bp)
    app.register_blueprint(fleet_bp)
    app.register_blueprint(keys_bp)
    app.register_blueprint(telemetry_bp)
    app.register_blueprint(reports_bp)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/openapi.json")
    def openapi() -> Any:
        return jsonify(openapi_document())

    # The one place errors become HTTP answers: JSON, never a stack trace.
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        headers = {}
        if "www_authenticate" in exc.extra:
            headers["WWW-Authenticate"] = exc.extra.pop("www_authenticate")
        return jsonify(exc.to_dict()), exc.status, headers

    @app.errorhandler(KeyRingError)
    def key_error(exc: KeyRingError) -> Any:
        return jsonify(error={"code": "signing_key", "message": str(exc)}), 409

    @app.errorhandler(PublishError)
    def publish_error(exc: PublishError) -> Any:
        log.error("publish failed: %s", exc)
        return jsonify(error={"code": "publish_failed", "message": str(exc)}), 500

    @app.errorhandler(RulePackError)
    def pack_error(exc: RulePackError) -> Any:
        problems = [p.to_dict() for p in exc.problems]
        message = f"{len(problems)} problem(s) in the rule pack"
        return jsonify(error={"code": "invalid_pack", "message": message,
                              "problems": problems}), 422

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
        return jsonify(error={"code": code, "message": exc.description}), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return jsonify(error={"code": "internal_error", "message": "internal error"}), 500

    return app
