"""Request bodies checked against the schemas `openapi.py` publishes for them, so what the
document promises is what the routes accept (the JSON Schema subset those schemas use)."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from .errors import ApiError

_TYPES: dict[str, Any] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    # as JSON Schema has it: 3.0 is an integer (a JSON number with no fraction)
    "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
}


def json_body() -> Any:
    """The request's JSON body, or a 400 `invalid_json` saying why it is not JSON (a 415
    when it is not sent as JSON). Flask's `silent` parse answered None for all of them,
    and the routes then said "body must be object" of a body that was one, with an
    integer of 5,000 digits in it; and it let a RecursionError (a body nested thousands
    deep) through as a 500. A string holding half of a character ("\\ud800", valid JSON)
    is a 400 naming where: kept, it broke every page and log line that showed it."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as JSON, with "
                       "Content-Type: application/json")
    try:
        body = json.loads(request.get_data(cache=True), parse_constant=not_json)
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body is not JSON this server reads: it is "
                       "nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer over 4,300 digits
        raise ApiError(400, "invalid_json", f"the body is not JSON: {str(exc)[:200]}") \
            from None
    where = _lone_surrogate_at(body)
    if where is not None:
        raise ApiError(400, "invalid_unicode", f"{where} holds half of a character (a lone "
                       "UTF-16 surrogate such as \\ud800): not valid Unicode", field=where)
    return body


def not_json(name: str) -> Any:
    """NaN, Infinity and -Infinity: Python's json reads them, no other JSON parser does.
    Kept in a fleet report, they made the open GET /v1/fleet unreadable to browsers
    (`json.loads(..., parse_constant=not_json)` refuses them)."""
    raise ValueError(f"{name} is not a JSON number")


def _lone_surrogate_at(value: Any) -> str | None:
    """Where the first string (or key) in `value` that does not encode as UTF-8 is."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if type(item) is str:
            if not _encodes(item):
                return where or "body"
        elif type(item) is dict:
            for key, sub in item.items():
                if not _encodes(key):
                    return f"a key of {where or 'body'}"
                stack.append((_join(where, key), sub))
        elif type(item) is list:
            stack.extend((f"{where or 'body'}[{i}]", sub) for i, sub in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
        return True
    except UnicodeEncodeError:
        return False


def problem(schema: dict[str, Any], value: Any, where: str = "") -> tuple[str, str] | None:
    """The first (field, message) by which `value` breaks `schema`, or None if it fits."""
    field = where or "body"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](value) for k in kinds):
            return field, f"{field} must be {' or '.join(kinds)}"
    if "const" in schema and value != schema["const"]:
        return field, f"{field} must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return field, f"{field} must be one of {', '.join(map(str, schema['enum']))}"
    if type(value) is str:
        if len(value) < schema.get("minLength", 0):
            return field, f"{field} must have at least {schema['minLength']} character(s)"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return field, f"{field} must have at most {schema['maxLength']} characters"
    if type(value) in (int, float):
        if "minimum" in schema and value < schema["minimum"]:
            return field, f"{field} must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return field, f"{field} must be at most {schema['maximum']}"
    if type(value) is dict:
        for name in schema.get("required", ()):
            if name not in value:
                return _join(where, name), f"{_join(where, name)} is required"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found = problem(sub, value[name], _join(where, name))
                if found:
                    return found
    if type(value) is list and "items" in schema:
        for i, item in enumerate(value):
            found = problem(schema["items"], item, f"{field}[{i}]")
            if found:
                return found
    return None


def check(schema: dict[str, Any], value: Any, code: str) -> None:
    """400 `code`, naming the field, unless `value` fits `schema`."""
    found = problem(schema, value)
    if found is not None:
        field, message = found
        raise ApiError(400, code, message, field=field)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
