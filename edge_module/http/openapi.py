"""The edge host's HTTP API, described as an OpenAPI 3.1 document (`GET /openapi.json`).

Written by hand from the wire contract (docs: ARCHITECTURE.md, "Wire contract v1"): what a
client may send to `/v1/decide` and `/v1/outcome` (their CORS preflights, the SDK's files
under `/sdk/`), and every answer it may get back.
`tests/adversarial/test_schemathesis.py` runs schemathesis against a real edge with it.
"""

from __future__ import annotations

from typing import Any

from ..core.catalog import EVENT_TYPES, MAX_LOCALE, TIERS
from ..core.request_input import MAX_NUMBER  # a visitor's numbers (px, ms)
from ..telemetry.decision_log import OUTCOME_TYPES

_COMPONENT = "#/components/schemas/"
MAX_TIME_MS = 2**53 - 1  # timestamps stay exact in a JSON double
_COORD = {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
MAX_URL = 2048
MAX_NAME = 256


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _COMPONENT + name}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "content": {"application/json": {"schema": _ref(name)}}}
    if headers:
        answer["headers"] = headers
    return answer


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json("Error", description, headers)


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "string"}}}
_STRING = {"schema": {"type": "string"}}
# on every answer to a request whose Origin EDGE_ALLOWED_ORIGINS allows
_CORS = {"Access-Control-Allow-Origin": {"description": "the request's Origin, or *", **_STRING},
         "Vary": _STRING, "Access-Control-Expose-Headers": _STRING}
_TIME = {"type": "integer", "minimum": 0, "maximum": MAX_TIME_MS}

_NULLABLE_NAME = {"type": ["string", "null"], "maxLength": MAX_NAME}


def _when(types: tuple[str, ...], then: dict[str, Any]) -> dict[str, Any]:
    """The fields an event of one of `types` must have (the core checks each as applied)."""
    return {"if": {"required": ["type"], "properties": {"type": {"enum": list(types)}}},
            "then": then}


_EVENT: dict[str, Any] = {
    "type": "object", "required": ["type", "ts_ms"],
    "description": "one behavioural event; the fields beyond type and ts_ms depend on the "
                   "type, and fields a type does not use are ignored",
    "properties": {
        "type": {"enum": list(EVENT_TYPES)},
        "ts_ms": {"type": "number", "minimum": 0, "maximum": MAX_TIME_MS,
                  "description": "when it happened, ms since epoch"},
    },
    "allOf": [
        _when(("page_view",), {"properties": {
            "url": {"type": ["string", "null"], "maxLength": MAX_URL}}}),
        _when(("scroll",), {"properties": {
            "depth": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "y": {"type": ["number", "null"], "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}}}),
        # x and y together, or neither
        _when(("mousemove",), {"anyOf": [
            {"properties": {"x": {"type": "null"}, "y": {"type": "null"}}},
            {"required": ["x", "y"],
             "properties": {"x": _COORD, "y": _COORD}}]}),
        _when(("hover",), {"required": ["target", "duration_ms"], "properties": {
            "target": {"type": "string", "maxLength": MAX_NAME},
            "duration_ms": {"type": "number", "minimum": 0, "maximum": MAX_NUMBER}}}),
        _when(("click", "focus", "input", "submit", "blur"),
              {"properties": {"target": _NULLABLE_NAME}}),
        _when(("custom",), {"required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": MAX_NAME}}}),
    ],
}

_CONTEXT: dict[str, Any] = {
    "type": "object",
    "description": "who the visitor is and where (url, device, country, local_hour, weekday, "
                   "referrer, returning, attributes): what rules compare; kept in the session "
                   "for requests that send none. Any string in it is at most 2048 characters.",
    "properties": {
        "url": {"type": ["string", "null"], "maxLength": MAX_URL},
        "locale": {"type": ["string", "null"], "maxLength": MAX_LOCALE,
                   "pattern": "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$",
                   "description": "a BCP 47 language tag (de-AT): picks the content variant"},
        "crm_id": {"type": ["string", "null"], "maxLength": MAX_URL,
                   "description": "the visitor's id in the site's CRM: carried to push, email "
                                  "and webhook deliveries (docs/channels.md)"},
        "crm_id_sig": {"type": ["string", "null"], "maxLength": MAX_URL,
                       "description": "hex HMAC-SHA256 of crm_id under EDGE_CRM_ID_KEY, made "
                                      "by the site's backend: with that key set, an id "
                                      "without a valid signature is not passed on"},
        "attributes": {
            "type": ["object", "null"], "maxProperties": 64,
            "propertyNames": {"maxLength": MAX_NAME},
            "description": "CRM fields: strings of at most 256 characters, numbers, booleans",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"],
                                     "maxLength": MAX_NAME}},
    },
    "additionalProperties": {"maxLength": MAX_URL},
}

def error_schema(**more: Any) -> dict[str, Any]:
    """The error body both servers answer with, `{"error": {"code", "message", "field"}}`,
    with `more` properties inside `error` (the control plane adds `problems`)."""
    props = {"code": {"type": "string"}, "message": {"type": "string"},
             "field": {"type": "string"}, **more}
    return {"type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"],
                                     "properties": props}}}


_SCHEMAS: dict[str, Any] = {
    "Error": error_schema(),
    "DecideRequest": {
        "type": "object", "required": ["session_id"],
        "properties": {
            "session_id": {"type": "string", "minLength": 1, "maxLength": 256,
                           "description": "opaque; the session's state stays at the edge "
                                          "(or, in client mode, in state_token)"},
            "now_ms": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_TIME_MS,
                       "description": "the batch's time (the host fills it in; null is "
                                      "the same as leaving it out)"},
            "context": {"anyOf": [_CONTEXT, {"type": "null"}]},
            "events": {"type": ["array", "null"], "items": _EVENT,
                       "description": "new events only, at most the snapshot's max_events "
                                      "and 32 page views"},
            # No type or length here: other modes ignore the field whatever it holds; client
            # mode refuses anything but a string of at most 24 KiB as invalid_state_token.
            "state_token": {
                            "description": "EDGE_SESSION_STORE=client: the state_token of this "
                                           "session's previous answer (absent, null or expired: "
                                           "a fresh session; altered, of another session or "
                                           "key: 400 invalid_state_token); ignored otherwise"},
        },
        "example": {"session_id": "s-1",
                    "context": {"url": "/pricing", "device": "desktop", "country": "DE"},
                    "events": [{"type": "page_view", "ts_ms": 1764201600000, "url": "/pricing"},
                               {"type": "scroll", "ts_ms": 1764201601000, "depth": 0.8,
                                "y": 1400}]},
    },
    "Action": {
        "type": "object", "required": ["trigger", "content", "tier", "delay_ms", "priority"],
        "properties": {"trigger": {"type": "string"}, "content": {"type": "string"},
                       "tier": {"enum": list(TIERS)},
                       "delay_ms": {"type": "integer", "minimum": 0},
                       "priority": {"type": "integer"},
                       "outcome_token": {"type": "string",
                                         "description": "for outcomes about this action"},
                       "variant": {
                           "type": "object", "required": ["name", "fields"],
                           "description": "the content's variant for this visitor (device, "
                                          "locale, arm) when the catalog has fields",
                           "properties": {"name": {"type": "string"},
                                          "fields": {"type": "object"}}}},
    },
    "Decision": {
        "type": "object",
        "required": ["decision_id", "revision", "actions", "next_check_ms", "latency_us",
                     "outcome_token"],
        "properties": {
            "decision_id": {"type": "string"},
            "revision": {"type": "string", "description": "the snapshot revision used"},
            "actions": {"type": "array", "items": _ref("Action")},
            "next_check_ms": {"type": ["integer", "null"],
                              "description": "the earliest time a pending timed condition "
                                             "can come true"},
            "latency_us": {"type": "integer", "minimum": 0},
            "component_us": {"type": "integer", "minimum": 0},
            "outcome_token": {"type": "string",
                              "description": "for outcomes about the decision as a whole "
                                             "(no trigger)"},
            "state_token": {"type": "string",
                            "description": "EDGE_SESSION_STORE=client only: the session's new "
                                           "state, signed; send it with the next request"},
        },
    },
    "OutcomeRequest": {
        "type": "object", "required": ["session_id", "type", "decision_id", "outcome_token"],
        "properties": {
            "session_id": {"type": "string", "minLength": 1},
            "type": {"enum": list(OUTCOME_TYPES)},
            "decision_id": {"type": "string", "minLength": 1},
            "trigger": {"type": "string", "minLength": 1,
                        "description": "the action's trigger; absent: the decision's"},
            "outcome_token": {"type": "string",
                              "description": "the decide answer's token (the action's when "
                                             "a trigger is named)"},
            "ts_ms": _TIME,
        },
        "example": {"session_id": "s-1", "type": "click", "decision_id": "0" * 32,
                    "trigger": "pricing-discount", "outcome_token": "v2.0.AAAA"},
    },
    "Outcome": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
    "Health": {
        "type": "object", "required": ["edge_id", "status", "revision"],
        "properties": {"edge_id": {"type": "string"},
                       "status": {"enum": ["ok", "no_snapshot", "draining"]},
                       "revision": {"type": ["string", "null"]},
                       "last_error": {"type": ["string", "null"]},
                       "channels": {
                           "type": ["object", "null"],
                           "description": "push, email and webhook deliveries: sink, queued, "
                                          "delivered, retried, dropped (and by reason), "
                                          "pending and set aside in the outbox, last_error"},
                       "sdk": {"type": "object", "description": "the SDK files served",
                               "properties": {"available": {"type": "boolean"},
                                              "files": {"type": "object"},
                                              "error": {"type": ["string", "null"]}}}},
    },
}

_BODY_ERRORS = {
    "400": _error("not JSON, or a field out of its contract (`field` names it)"),
    "405": _error("another method (Allow names the right one)",
                  {"Allow": {"schema": {"type": "string"}, "required": True}}),
    "408": _error("the body did not arrive within the read deadline"),
    "413": _error("the body is over the route's limit"),
}
_ORIGIN_REFUSED = "origin_not_allowed: a browser page of an origin EDGE_ALLOWED_ORIGINS " \
    "does not list (nothing decided or logged)"


def _post(summary: str, operation_id: str, request: str,
          responses: dict[str, Any]) -> dict[str, Any]:
    """A POST operation taking the JSON body schema `request`, as application/json or as
    text/plain (what a browser's CORS simple request sends; the host reads both alike)."""
    schema = {"schema": _ref(request)}
    return {"summary": summary, "operationId": operation_id,
            "requestBody": {"required": True, "content": {"application/json": schema,
                                                          "text/plain": schema}},
            "responses": responses}


def _preflight(path: str, operation_id: str) -> dict[str, Any]:
    """The CORS preflight of `path` (never touches an instance)."""
    return {"summary": f"CORS preflight of POST {path}", "operationId": operation_id,
            "responses": {
                "204": {"description": "allowed (Access-Control-Allow-Origin when the Origin "
                                       "is allowed; cached by the browser for a day)",
                        "headers": {name: _STRING for name in (
                            "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                            "Access-Control-Max-Age")}},
                "403": _error(_ORIGIN_REFUSED)}}


def edge_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route of the edge host."""
    decide = _post("Decide which content to show a visitor now", "decide", "DecideRequest", {
        "200": _json("Decision", "the actions to show (possibly none)", _CORS),
        **_BODY_ERRORS,
        "403": _error(_ORIGIN_REFUSED),
        "404": _error("no route"),
        "422": _error("the snapshot cannot decide this request"),
        "429": _error("session_busy: two decisions of this session are already under way "
                      "in this process", _RETRY_AFTER),
        "503": _error("no snapshot yet, overloaded, draining, or the decision was stopped "
                      "at its deadline", _RETRY_AFTER),
    })
    outcome = _post("Report what the visitor did with a decision (impression, click...)",
                    "outcome", "OutcomeRequest", {
        "200": _json("Outcome", "recorded", _CORS),
        **_BODY_ERRORS,
        "403": _error("no valid outcome token for this session, decision and trigger; or "
                      + _ORIGIN_REFUSED),
        "503": _error("this edge records no telemetry, or is draining", _RETRY_AFTER),
    })
    return {
        "openapi": "3.1.0",
        "info": {"title": "Edge trigger engine: edge host", "version": "1",
                 "description": "Decisions per request from the cached, signed snapshot."},
        "paths": {
            "/v1/decide": {"post": decide, "options": _preflight("/v1/decide", "decidePreflight")},
            "/v1/outcome": {"post": outcome,
                            "options": _preflight("/v1/outcome", "outcomePreflight")},
            "/sdk/{file}": {"get": {
                "summary": "The browser SDK: the files of its build's manifest",
                "operationId": "sdkFile",
                "parameters": [{"name": "file", "in": "path", "required": True,
                                "schema": {"type": "string"},
                                "description": "nudge.js, nudge.mjs (aliases, cached 300 s) "
                                               "or a content-hashed name (immutable)"}],
                "responses": {
                    "200": {"description": "the file", "headers": {
                        "ETag": _STRING, "Cache-Control": _STRING},
                            "content": {"text/javascript": {"schema": {"type": "string"}}}},
                    "304": {"description": "the If-None-Match copy is current"},
                    "404": _error("not a file of the SDK build (or no build)")}}},
            "/healthz": {"get": {
                "summary": "What this edge runs and how it fares", "operationId": "healthz",
                "responses": {"200": _json("Health", "serving a snapshot"),
                              "503": _json("Health", "no snapshot yet, or draining")}}},
            "/openapi.json": {"get": {
                "summary": "This document", "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {}}}}}},
        },
        "components": {"schemas": _SCHEMAS},
    }
