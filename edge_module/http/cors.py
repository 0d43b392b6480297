"""Which browser origins may call the decision API (`EDGE_ALLOWED_ORIGINS`), and the CORS
headers their answers carry.

A request with an `Origin` header comes from a page; a page of an origin not listed is
refused (403) before anything is decided or logged, because a hostile page must not drive
the sessions of the visitors it is shown to. Requests without `Origin` (servers, curl) are
not browsers acting for a visitor and are served as before.
"""

from __future__ import annotations

from urllib.parse import urlsplit

ANY = "*"
Headers = list[tuple[str, str]]

# what a preflight is told: the SDK posts a text/plain body (a simple request, so no
# preflight), but a client sending application/json preflights, once a day at most
PREFLIGHT_HEADERS: Headers = [("Access-Control-Allow-Methods", "POST, OPTIONS"),
                              ("Access-Control-Allow-Headers", "Content-Type"),
                              ("Access-Control-Max-Age", "86400")]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    """An `EDGE_ALLOWED_ORIGINS` entry that no browser would ever send as its Origin."""


def parse_allowed_origins(raw: str) -> frozenset[str]:
    """The comma-separated setting as a set of exact origins, or {"*"} (empty: none)."""
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if ANY in entries:
        if len(entries) > 1:
            raise OriginError("'*' allows every origin: give it alone, or list origins")
        return frozenset(entries)
    for entry in entries:
        _check_origin(entry)
    return frozenset(entries)


def _check_origin(entry: str) -> None:
    """Browsers send `scheme://host[:port]`, lower case, without a default port: an entry
    written any other way would never match, so it is refused with the form to write."""
    if entry == "null":
        raise OriginError("'null' is the origin of sandboxed frames and local files: any "
                          "page can send it, so it cannot be allowed")
    try:
        parts = urlsplit(entry)
        port = parts.port
    except ValueError as exc:
        raise OriginError(f"{entry!r}: {exc}") from None
    if parts.scheme not in _DEFAULT_PORTS or "://" not in entry:
        raise OriginError(f"{entry!r}: an origin is http://host[:port] or https://host[:port]")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise OriginError(f"{entry!r}: an origin names a host, without user or password")
    if parts.path or parts.query or parts.fragment or entry.endswith(("?", "#")):
        raise OriginError(f"{entry!r}: an origin has no path, query or fragment; write "
                          f"{parts.scheme}://{parts.netloc}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    expected = f"{parts.scheme}://{host}"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        expected += f":{port}"
    if entry != expected:
        raise OriginError(f"{entry!r}: browsers send it as {expected!r} (lower case, no "
                          "default port); write that")


class CorsPolicy:
    """The allowed origins, with the headers each one's answers carry (built once)."""

    def __init__(self, allowed_origins: str) -> None:
        allowed = parse_allowed_origins(allowed_origins)
        self.any_origin = ANY in allowed
        self._headers = {origin: _headers_for(origin) for origin in allowed}

    def headers(self, origin: str) -> Headers | None:
        """The CORS headers of every answer to a request from `origin`; None: refused."""
        if self.any_origin:
            return self._headers[ANY]
        return self._headers.get(origin)


def _headers_for(allow: str) -> Headers:
    # Retry-After exposed: the SDK backs off as the edge asks on 503
    return [("Access-Control-Allow-Origin", allow), ("Vary", "Origin"),
            ("Access-Control-Expose-Headers", "Retry-After")]
