"""Schemathesis hooks for the bounded runs (SCHEMATHESIS_HOOKS): how to send a telemetry
batch, which the control plane's document declares as JSON lines."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def json_lines(_ctx: Any, value: Any) -> bytes:
    """A list as one JSON document per line; anything else as its JSON (a string as is)."""
    if isinstance(value, list):
        return "\n".join(json.dumps(item) for item in value).encode()
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8",
                                                                          "surrogatepass")


# every YAML media type: the first registered of one family serves them all
@schemathesis.serializer("text/yaml", "text/x-yaml", "text/vnd.yaml", "text/yml", "application/yaml",
                        "application/x-yaml")
def yaml_text(_ctx: Any, value: Any) -> bytes:
    """A rule pack is YAML text: a string (the documented example) is sent as written, any
    other generated value as its YAML."""
    import yaml

    text = value if isinstance(value, str) else yaml.safe_dump(value, allow_unicode=True)
    return text.encode("utf-8", "surrogatepass")
