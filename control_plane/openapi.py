"""The control plane's HTTP API, described as an OpenAPI 3.1 document (`GET /openapi.json`).

Written by hand next to the blueprints it describes; `tests/edge/test_openapi.py` fails when a
route is registered that the document does not describe. The rule pack's schema is the
one editors use (`rulepack.schema`), embedded.

Longer than most modules on purpose: it is one declarative document, and the parameters
and error answers its routes share are written once here, beside every route citing them.
"""

from __future__ import annotations

from typing import Any

from edge_module.http.openapi import error_schema

from .rulepack.schema import pack_schema

_COMPONENT = "#/components/schemas/"


def _schema(name: str) -> dict[str, str]:
    return {"$ref": _COMPONENT + name}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _schema(name)}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


# A realistic pack (rules/pricing-discount.yaml), for tools that send examples first.
PACK_EXAMPLE = """\
pack: pricing-discount
description: Discount nudge for engaged readers of the pricing page
triggers:
  - id: pricing-discount
    description: Engaged on /pricing -> 10% discount nudge
    page: /pricing
    when:
      - dwell: ">= 3s"
      - scroll_depth: ">= 78%"
    action:
      content: discount-nudge-10
      tier: immediate
      priority: 10
    cap:
      per_session: 1
"""
# The body is YAML text; the structure it must have is the editors' schema (RulePack),
# stated as the text's content schema. Beyond it, validation answers 422 with positions.
_YAML_PACK = {"required": True, "description": "one rule pack, as YAML text (UTF-8), at most "
                                               "CONTROL_MAX_PACK_BYTES",
              "content": {"application/yaml": {
                  "schema": {"type": "string", "contentMediaType": "application/yaml",
                             "contentSchema": _schema("RulePack")},
                  "example": PACK_EXAMPLE}}}
_FILE_PARAM = {"name": "file", "in": "query", "required": False,
               "description": "the file name problems are reported under",
               "schema": {"type": "string", "default": "pack.yaml"}}
_NAME_PARAM = {"name": "name", "in": "path", "required": True,
               "description": "the pack's name (lowercase letters, digits, -)",
               "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,99}$"},
               "example": "pricing-discount"}
_INVALID = _json("InvalidPack", "the pack has problems: every one, with its position")
_TOO_LARGE = _error("the body is over its limit (CONTROL_MAX_REQUEST_BYTES; a pack: "
                    "CONTROL_MAX_PACK_BYTES, _NODES, _TRIGGERS, _CONDITIONS...), with the "
                    "position where the pack went over it")
_UNAUTHORIZED = _error("no token (WWW-Authenticate: Bearer)")
_NOT_JSON = _error("the body is not sent as JSON (Content-Type: application/json)")
# Validate and compile: a pack in the body, for a publisher or an author
_AUTHORING = {"security": [{"publisherToken": []}, {"authorToken": []}],
              "parameters": [_FILE_PARAM], "requestBody": _YAML_PACK}
_AUTHORING_ERRORS = {"400": _error("not UTF-8"), "401": _UNAUTHORIZED,
                     "403": _error("not a publisher or author token"), "413": _TOO_LARGE}
# The reports' and counts' query: a window (or a moment on), and what a bad one answers
_SINCE_PARAM = {"name": "since_ms", "in": "query",
                "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}
_REPORT_WINDOW = ({"name": "window_s", "in": "query",
                   "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}},
                  _SINCE_PARAM)
_PUBLISHER_QUERY_ERRORS = {"400": _error("bad query"), "401": _UNAUTHORIZED,
                           "403": _error("not a publisher token")}

# What an edge reports (`POST /v1/fleet/report`), checked on arrival against this schema:
# the fields the fleet view shows are typed, others an edge adds are kept as sent.
FLEET_REPORT: dict[str, Any] = {
    "type": "object", "required": ["edge_id"],
    "properties": {
        "edge_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "revision": {"type": ["string", "integer", "null"], "maxLength": 64,
                     "description": "the revision the edge serves; null before its first"},
        "status": {"type": "string", "maxLength": 64},
        "last_error": {"type": ["string", "null"], "maxLength": 4096},
        "last_sync_ms": {"type": ["integer", "null"]},
        "last_error_ms": {"type": ["integer", "null"]},
        "from_cache": {"type": "boolean"},
        **{name: {"type": ["integer", "null"]} for name in (
            "instances", "traps", "sessions", "pending", "started_ms", "decisions", "errors",
            "aborted", "busy", "slow_bodies", "oversized", "broken_bodies",
            "outcomes_refused", "origins_refused")},
        **{name: {"type": ["object", "null"], "description": "kept two levels deep, scalars "
                  "only (at most 64 keys a level, strings of at most 1,024 characters)"}
           for name in ("sdk", "session_store", "telemetry", "channels")},
    },
    "description": "what an edge runs and how it fares (its /healthz); other keys are not kept",
}
_FLEET_EDGE: dict[str, Any] = {
    "type": "object",
    "required": ["edge_id", "behind", "in_sync", "stale", "last_seen_ms"],
    "properties": {**FLEET_REPORT["properties"],
                   "behind": {"type": ["integer", "null"]}, "in_sync": {"type": "boolean"},
                   "stale": {"type": "boolean"}, "last_seen_ms": {"type": "integer"},
                   "decisions_per_s": {
                       "type": ["number", "null"],
                       "description": "between the edge's last two reports; null before "
                                      "a second one or after a restart"}},
}
_KEY_LIST: dict[str, Any] = {"type": "array", "items": {
    "type": "object", "required": ["key_id", "active", "trusted", "private"],
    "properties": {"key_id": {"type": "string"}, "active": {"type": "boolean"},
                   "trusted": {"type": "boolean"}, "private": {"type": "boolean"}}}}


def _embedded_pack_schema() -> dict[str, Any]:
    """The editor schema, with its references re-pointed at where it sits in this document."""
    def repoint(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (v.replace("#/definitions/", _COMPONENT + "RulePack/definitions/")
                        if k == "$ref" else repoint(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [repoint(v) for v in node]
        return node

    schema = repoint(pack_schema())
    schema.pop("$schema", None)
    return dict(schema)


_COMPONENTS: dict[str, Any] = {
    "Error": error_schema(problems={"type": "array", "items": _schema("Problem")}),
    "Problem": {
        "type": "object", "required": ["file", "line", "column", "message"],
        "properties": {"file": {"type": "string"}, "line": {"type": "integer", "minimum": 1},
                       "column": {"type": "integer", "minimum": 1},
                       "message": {"type": "string"},
                       "trigger": {"type": ["string", "null"]},
                       "expected": {"type": ["string", "null"]},
                       "suggestion": {"type": ["string", "null"]}},
    },
    "InvalidPack": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "problems"],
            "properties": {"code": {"const": "invalid_pack"}, "message": {"type": "string"},
                           "problems": {"type": "array", "items": _schema("Problem")}}}},
    },
    "PackSummary": {
        "type": "object", "required": ["ok", "pack", "triggers", "warnings"],
        "properties": {"ok": {"const": True}, "pack": {"type": "string"},
                       "triggers": {"type": "array", "items": {"type": "string"}},
                       "warnings": {"type": "array", "description": "lint findings in this "
                                    "pack (`trigger-engine lint`): valid, likely not meant",
                                    "items": {"type": "object", "required": [
                                        "file", "line", "column", "code", "message"],
                                        "properties": {
                                            "file": {"type": "string"},
                                            "line": {"type": "integer"},
                                            "column": {"type": "integer"},
                                            "code": {"type": "string"},
                                            "message": {"type": "string"},
                                            "trigger": {"type": ["string", "null"]}}}}},
    },
    "Revision": {
        "type": "object",
        "required": ["revision", "sha256", "object", "published_ms", "triggers", "packs"],
        "properties": {
            "revision": {"type": "integer", "minimum": 1},
            "sha256": {"type": "string"}, "object": {"type": "string"},
            "published_ms": {"type": "integer"}, "triggers": {"type": "integer"},
            "packs": {"type": "array", "items": {"type": "string"}},
            "rollback_from": {"type": "integer",
                              "description": "present on rollbacks: the revision replaced"},
            "untrusted": {"type": "array", "items": {"type": "string"},
                          "description": "GET current only, present only then: why "
                                         "entries of the store's manifest were set aside"},
        },
    },
    "Snapshot": {
        "type": "object", "required": ["format", "revision", "triggers", "index"],
        "description": "a compiled snapshot, as the decision core loads it",
        "properties": {"format": {"const": "edge-triggers/1"}, "revision": {"type": "string"},
                       "created_ms": {"type": "integer"},
                       "packs": {"type": "array", "items": {"type": "object"}},
                       "limits": {"type": "object"},
                       "triggers": {"type": "array", "items": {"type": "object"}},
                       "index": {"type": "object"}},
    },
}


def _paths() -> dict[str, Any]:
    return {
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {
            "200": {"description": "the control plane is up",
                    "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"status": {"const": "ok"}}}}}}}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics", "operationId": "metrics",
            "security": [{"metricsToken": []}],
            "description": "Requests by route and status, ingest records by result, what "
                           "the manifest publishes (docs/operations.md, Metrics).",
            "responses": {"200": {"description": "the Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": _UNAUTHORIZED, "403": _error("not a metrics token")}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {}}}}}},
        "/v1/packs": {"get": {
            "summary": "List the registry's packs", "operationId": "listPacks",
            "responses": {"200": {"description": "pack names", "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "packs": {"type": "array", "items": {"type": "string"}}}}}}}}}},
        "/v1/packs/validate": {"post": {
            "summary": "Validate a pack without storing it", "operationId": "validatePack",
            "description": "Checks the pack alone and its content ids against the catalog. "
                           "A publisher or author token: parsing costs work.",
            **_AUTHORING,
            "responses": {"200": _json("PackSummary", "valid"), "422": _INVALID,
                          **_AUTHORING_ERRORS}}},
        "/v1/packs/{name}": {
            "parameters": [_NAME_PARAM],
            "get": {"summary": "A pack's YAML source", "operationId": "getPack", "responses": {
                "200": {"description": "the YAML", "content": {"application/yaml": {}}},
                "400": _error("not a pack name (invalid_name)"),
                "404": _error("no such pack")}},
            "put": {"summary": "Validate a pack with the others and store it",
                    "operationId": "putPack", "parameters": [_FILE_PARAM],
                    "requestBody": _YAML_PACK, "responses": {
                        "200": _json("PackSummary", "replaced"),
                        "201": _json("PackSummary", "created"),
                        "400": _error("bad name, not UTF-8, or the file declares another pack"),
                        "413": _TOO_LARGE, "422": _INVALID}},
            "delete": {"summary": "Delete a pack", "operationId": "deletePack", "responses": {
                "204": {"description": "deleted"},
                "400": _error("not a pack name (invalid_name)"),
                "404": _error("no such pack")}},
        },
        "/v1/compile": {"post": {
            "summary": "Compile a pack into a snapshot, without publishing it",
            "operationId": "compilePack",
            "description": "The pack alone, labelled revision \"draft\". A publisher or "
                           "author token; the snapshot is at most CONTROL_MAX_SNAPSHOT_BYTES.",
            **_AUTHORING,
            "responses": {"200": _json("Snapshot", "the compiled snapshot"), "422": _INVALID,
                          **_AUTHORING_ERRORS}}},
        "/v1/snapshots": {
            "get": {"summary": "Published revisions and rollbacks, newest first",
                    "operationId": "listRevisions", "responses": {"200": {
                        "description": "the history", "content": {"application/json": {
                            "schema": {"type": "object", "properties": {"revisions": {
                                "type": "array", "items": _schema("Revision")}}}}}}}},
            "post": {"summary": "Publish the registry's packs as the next revision",
                     "operationId": "publish", "responses": {
                         "201": _json("Revision", "published"),
                         "409": _error("the registry holds no packs, or no signing key"),
                         "413": _TOO_LARGE, "422": _INVALID,
                         "503": _error("edge store unavailable")}},
        },
        "/v1/snapshots/current": {"get": {
            "summary": "The revision the edge store points at", "operationId": "currentRevision",
            "description": "The newest manifest entry this control plane signed; "
                           "`untrusted` (present only then) says why other entries were "
                           "set aside (forged, or an older entry put back as current).",
            "responses": {"200": _json("Revision", "current"),
                          "404": _error("nothing published yet"),
                          "503": _error("edge store unavailable")}}},
        "/v1/snapshots/rollback": {"post": {
            "summary": "Serve an earlier revision's snapshot again",
            "operationId": "rollback",
            "description": "Re-points the manifest at the revision's snapshot object (edges "
                           "then report that revision) and records the rollback in the "
                           "history. Rolling back to the current revision changes nothing.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["revision"],
                "properties": {"revision": {"type": "integer", "minimum": 1}}}}}},
            "responses": {"200": _json("Revision", "now current"),
                          "400": _error("no revision number in the body, or the body is "
                                        "not JSON (invalid_json)"),
                          "404": _error("the revision was never published"),
                          "409": _error("nothing published, or the snapshot no longer loads"),
                          "413": _TOO_LARGE,
                          "415": _NOT_JSON,
                          "503": _error("edge store unavailable")}}},
        "/v1/keys": {"get": {
            "summary": "Signing keys: which one signs, which ones edges trust",
            "operationId": "listKeys", "responses": {"200": {
                "description": "the keys", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["keys"],
                    "properties": {"keys": _KEY_LIST}}}}}}}},
        "/v1/keys/rotate": {"post": {
            "summary": "A new signing key; the old ones stay trusted until retired",
            "operationId": "rotateKey", "responses": {
                "201": {"description": "the new key id and the key list", "content": {
                    "application/json": {"schema": {
                        "type": "object", "required": ["key_id", "keys"],
                        "properties": {"key_id": {"type": "string"}, "keys": _KEY_LIST}}}}},
                "409": _error("the key folder cannot be written")}}},
        "/v1/fleet": {"get": {
            "summary": "Which edge runs which revision, and how far behind it is",
            "operationId": "fleet", "responses": {"200": {
                "description": "the current revision and each edge's last report",
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["current_revision", "edges"],
                    "properties": {"current_revision": {"type": ["integer", "null"]},
                                   "store_error": {
                                       "type": ["string", "null"],
                                       "description": "why the edge store could not be "
                                                      "read (the edges are still listed, "
                                                      "against no revision)"},
                                   "untrusted": {
                                       "type": "array", "items": {"type": "string"},
                                       "description": "why entries of the store's manifest "
                                                      "were set aside: not signed by this "
                                                      "control plane's keys, or an older "
                                                      "entry put back as current"},
                                   "edges": {"type": "array", "items": _FLEET_EDGE}}}}}}}}},
        "/v1/fleet/report": {"post": {
            "summary": "An edge reports what it runs (edge token)",
            "operationId": "fleetReport", "security": [{"edgeToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": FLEET_REPORT,
                "example": {"edge_id": "edge-1", "revision": "3", "status": "ok",
                            "last_error": None, "last_sync_ms": 1764201600000}}}},
            "responses": {"204": {"description": "recorded"},
                          "400": _error("not a report: the field that breaks the schema, "
                                        "or why the body is not JSON (invalid_json)"),
                          "401": _UNAUTHORIZED,
                          "403": _error("not an edge token, or a token bound to another "
                                        "edge (edge_id_not_yours)"),
                          "413": _TOO_LARGE,
                          "415": _NOT_JSON}}},
        "/v1/telemetry": {"post": {
            "summary": "An edge sends a batch of decision and outcome records (edge token); "
                       "records already stored (by id) are ignored, malformed ones (and, "
                       "with a token bound to one edge, other edges' records: "
                       "edge_id_not_yours) are rejected one by one (never the batch)",
            "operationId": "telemetryIngest", "security": [{"edgeToken": []}],
            "requestBody": {"required": False, "content": {"application/x-ndjson": {
                "schema": {"type": "array", "items": {"type": "object"},
                           "description": "decision and outcome records, one JSON object "
                                          "per line, optionally Content-Encoding: gzip; an "
                                          "empty body is an empty batch"}}}},
            "responses": {"200": {
                "description": "records accepted, already stored (duplicates), and the ones "
                               "refused one by one (the batch is never refused whole)",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["accepted", "duplicates", "rejected", "rejected_by_code"],
                    "properties": {
                        "accepted": {"type": "integer", "minimum": 0},
                        "duplicates": {"type": "integer", "minimum": 0},
                        "rejected": {"type": "array", "items": {
                            "type": "object", "required": ["index", "code", "reason"],
                            "properties": {"index": {"type": "integer", "minimum": 0},
                                           "code": {"type": "string"},
                                           "reason": {"type": "string"}}}},
                        "rejected_by_code": {"type": "object", "additionalProperties": {
                            "type": "integer", "minimum": 1}}}}}}},
                "400": _error("the body is not valid gzip"), "401": _UNAUTHORIZED,
                "403": _error("not an edge token"), "413": _TOO_LARGE,
                "415": _error("a Content-Encoding other than gzip (or none)"),
                "503": _error("the telemetry sink is unavailable, or the control plane is "
                              "taking other batches (busy): send the batch again")}}},
        "/v1/telemetry/counts": {"get": {
            "summary": "Stored decision and outcome records, of one edge and from a moment "
                       "on: what delivery is checked against",
            "operationId": "telemetryCounts", "security": [{"publisherToken": []}],
            "parameters": [
                {"name": "edge_id", "in": "query", "schema": {"type": "string"}},
                _SINCE_PARAM],
            "responses": {"200": {"description": "the counts", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "edge_id": {"type": ["string", "null"]}, "since_ms": {"type": "integer"},
                    "decisions": {"type": "integer"}, "outcomes": {"type": "integer"}}}}}},
                **_PUBLISHER_QUERY_ERRORS,
                "409": _error("telemetry goes to a Kinesis stream")}}},
        "/v1/reports/triggers": {"get": {
            "summary": "Per trigger x device x revision: fires, outcomes, false-trigger rate, "
                       "histograms; the same per trigger x content variant; holdout lift",
            "operationId": "triggerReport", "security": [{"publisherToken": []}],
            "parameters": [
                *_REPORT_WINDOW],
            "responses": {"200": {"description": "the report", "content": {
                "application/json": {"schema": {"type": "object"}}}},
                **_PUBLISHER_QUERY_ERRORS}}},
        "/v1/reports/recalibrations": {"get": {
            "summary": "The learning loop's decisions, newest first: per trigger, model key "
                       "and segment the old and new value, sessions, estimated recall, "
                       "reason and numbers (the guardrail's comparison included)",
            "operationId": "recalibrationReport", "security": [{"publisherToken": []}],
            "parameters": [
                *_REPORT_WINDOW,
                {"name": "trigger", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": {"description": "the decisions", "content": {
                "application/json": {"schema": {"type": "object", "required": [
                    "recalibrations"], "properties": {
                    "recalibrations": {"type": "array", "items": {"type": "object"}}}}}}},
                **_PUBLISHER_QUERY_ERRORS}}},
        "/v1/reports/experiment": {"get": {
            "summary": "The adaptive-threshold experiment: per arm sessions, conversions, "
                       "false-trigger rate; lift of adaptive vs static and of each arm vs "
                       "holdout with a 95 % interval (or not enough data); the sample-ratio "
                       "check against the published split (null: no experiment published)",
            "operationId": "experimentReport", "security": [{"publisherToken": []}],
            "parameters": [
                *_REPORT_WINDOW,
                {"name": "min_sessions", "in": "query",
                 "schema": {"type": "integer", "minimum": 2, "maximum": 10**9}}],
            "responses": {"200": {"description": "the report", "content": {
                "application/json": {"schema": {"type": "object", "required": [
                    "arms", "comparisons"], "properties": {
                    "arms": {"type": "array", "items": {"type": "object"}},
                    "comparisons": {"type": "array", "items": {"type": "object"}},
                    "srm": {"type": ["object", "null"], "properties": {
                        "p": {"type": ["number", "null"]}, "mismatch": {"type": "boolean"}}}
                }}}}},
                **_PUBLISHER_QUERY_ERRORS}}},
    }


# Calls that change what edges serve need the publisher token.
_PUBLISHER_ONLY = {("/v1/packs/{name}", "put"), ("/v1/packs/{name}", "delete"),
                   ("/v1/snapshots", "post"), ("/v1/snapshots/rollback", "post"),
                   ("/v1/keys/rotate", "post")}


def _with_security(paths: dict[str, Any]) -> dict[str, Any]:
    for path, method in _PUBLISHER_ONLY:
        op = paths[path][method]
        op["security"] = [{"publisherToken": []}]
        op["responses"].setdefault("401", _UNAUTHORIZED)
        op["responses"].setdefault("403", _error("not a publisher token"))
    return paths


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route of the control plane."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Edge trigger engine control plane", "version": "1",
                 "description": "Rule packs in, validated snapshots out, to the edge store."},
        "paths": _with_security(_paths()),
        "components": {
            "schemas": {**_COMPONENTS, "RulePack": _embedded_pack_schema()},
            "securitySchemes": {
                "publisherToken": {"type": "http", "scheme": "bearer",
                                   "description": "CONTROL_PUBLISHER_TOKENS"},
                "edgeToken": {"type": "http", "scheme": "bearer",
                              "description": "CONTROL_EDGE_TOKENS"},
                "metricsToken": {"type": "http", "scheme": "bearer",
                                 "description": "CONTROL_METRICS_TOKENS (or DATA_DIR/"
                                                "metrics.token): GET /metrics only"},
                "authorToken": {"type": "http", "scheme": "bearer",
                                "description": "CONTROL_AUTHOR_TOKENS: validate and compile "
                                               "only"}}},
    }
