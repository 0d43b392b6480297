"""Requests to a real edge host exactly as written (method, raw path, headers, bytes), for
what the JSON client in tests/servers.py smooths over: CORS headers, 204 and 304 answers,
JavaScript bodies, paths with `..`."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ALLOWED = "http://127.0.0.1:8800"  # the demo store's origin, as a browser sends it
HOSTILE = "http://evil.example"
# what fetch() sends for `body: JSON.stringify(...)` without a Content-Type of its own
BROWSER_TEXT = "text/plain;charset=UTF-8"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, method: str, path: str, body: bytes | dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Answer:
    """One request on a fresh connection; every answer is returned, errors included."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    address = urlsplit(url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
