"""The Flask application factory."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from flask import Flask, g, jsonify, request

from edge_module.distribution.edge_store import open_store

from . import config as config_module
from .distribution.fleet import FleetRegistry
from .distribution.keys import KeyRing
from .distribution.manifest_cache import ManifestCache
from .distribution.manifest_trust import LEDGER_FILE, Ledger, ManifestKeys, VouchedStore
from .distribution.pack_registry import PackRegistry
from .errors import register_error_handlers
from .metrics import install as install_metrics
from .openapi import openapi_document
from .rulepack.pack_limits import reset_pack_limits, set_pack_limits
from .telemetry.telemetry_sink import make_sink
from .telemetry.telemetry_store import TelemetryStore

log = logging.getLogger("control_plane")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config_module.load(config))
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_REQUEST_BYTES"]
    app.extensions["pack_registry"] = PackRegistry(Path(app.config["DATA_DIR"]) / "packs",
                                                   app.config["CATALOG_FILE"] or None)
    app.extensions["key_ring"] = KeyRing(app.config["KEYS_DIR"], app.config["TRUSTED_KEYS"])
    app.extensions["edge_store"] = ManifestCache(VouchedStore(
        open_store(app.config["STORE_DIR"], app.config["S3_ENDPOINT_URL"] or None),
        ManifestKeys.of_ring(app.config["KEYS_DIR"], app.config["TRUSTED_KEYS"]),
        Ledger(Path(app.config["DATA_DIR"]) / LEDGER_FILE)))
    app.extensions["fleet"] = FleetRegistry()
    # telemetry batches taken at once: two threads always left for everything else
    app.extensions["ingest_lane"] = threading.BoundedSemaphore(
        max(1, int(app.config["THREADS"]) - 2))
    # reports (API and console) computed at once: two threads always left for /healthz,
    # publishing and ingest; past it a report is 503 (blueprints/reports.py)
    app.extensions["report_lane_places"] = max(1, int(app.config["THREADS"]) - 2)
    app.extensions["report_lane"] = threading.BoundedSemaphore(
        app.extensions["report_lane_places"])
    app.extensions["telemetry_store"] = TelemetryStore(
        Path(app.config["DATA_DIR"]) / "telemetry.sqlite3")
    app.extensions["telemetry_sink"] = make_sink(app.config, app.extensions["telemetry_store"])

    from .blueprints.compile import bp as compile_bp
    from .blueprints.fleet import bp as fleet_bp
    from .blueprints.keys import bp as keys_bp
    from .blueprints.reports import bp as reports_bp
    from .blueprints.rules import bp as rules_bp
    from .blueprints.snapshots import bp as snapshots_bp
    from .blueprints.telemetry import bp as telemetry_bp
    from .console import bp as console_bp

    app.register_blueprint(rules_bp)
    app.register_blueprint(compile_bp)
    app.register_blueprint(snapshots_bp)
    app.register_blueprint(fleet_bp)
    app.register_blueprint(keys_bp)
    app.register_blueprint(telemetry_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(console_bp)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.get("/openapi.json")
    def openapi() -> Any:
        return jsonify(openapi_document())

    # Every rule pack read while answering a request is held to the configured limits.
    limits = config_module.pack_limits(app.config)

    @app.before_request
    def apply_pack_limits() -> None:
        g.pack_limits_token = set_pack_limits(limits)

    @app.teardown_request
    def release_pack_limits(_exc: BaseException | None) -> None:
        token = g.pop("pack_limits_token", None)
        if token is not None:
            reset_pack_limits(token)

    def options_response() -> Any:
        # Werkzeug's default lists the methods of every rule the path matches, so
        # /v1/packs/validate would offer GET, PUT and DELETE of a pack named "validate";
        # the rule that serves the path is the one whose methods are allowed.
        response = app.response_class()
        matched = request.url_rule
        methods = {"OPTIONS"}
        if matched is not None:  # one rule per method of a path: all of that path's
            for rule in app.url_map.iter_rules():
                if rule.rule == matched.rule:
                    methods |= set(rule.methods or ())
        response.allow.update(sorted(methods))
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]
    install_metrics(app, app.extensions["edge_store"])  # every request counted; GET /metrics
    register_error_handlers(app)
    return app
