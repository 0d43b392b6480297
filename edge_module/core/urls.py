"""How a URL is read, in one place: the path page globs match, and what telemetry keeps.

The core matches pages on `url_path`; the decision log stores `strip_url`, and recalibration
takes `url_path` of what was stored. Both read a URL the same way (`split_url`), so a stored
URL names the page the edge matched: `url_path(strip_url(u)) == url_path(u)`.
"""

from __future__ import annotations

_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


def split_url(url: str) -> tuple[str, str]:
    """(`scheme://authority` or `//authority`, the rest) of a URL; ("", url) for a path.

    Per RFC 3986: an authority follows a scheme (a letter, then letters, digits, `+-.`)
    and `//`, or a leading `//`, and ends at the first `/`, `?` or `#`. A `://` later in
    the path or query (`/go?to=https://...`) is not one.
    """
    if url.startswith("//"):
        start = 2
    else:
        colon = url.find("://")
        if colon < 1 or not url[0].isalpha() or not _SCHEME_CHARS.issuperset(url[:colon]):
            return "", url
        start = colon + 3
    end = len(url)
    for sep in "/?#":
        cut = url.find(sep, start, end)
        if cut >= 0:
            end = cut
    return url[:end], url[end:]


def url_path(url: str) -> str:
    """The path of a URL or path (what page globs match): no scheme, host, query or fragment."""
    return _cut_query(split_url(url)[1]) or "/"


def strip_url(url: str) -> str:
    """The URL without query string, fragment and userinfo (`user:pass@`), which may carry
    personal data or secrets."""
    head, rest = split_url(url)
    at = head.rfind("@")
    if at >= 0:  # userinfo sits between the `//` and the host
        head = head[:head.index("//") + 2] + head[at + 1:]
    return head + _cut_query(rest)


def _cut_query(rest: str) -> str:
    for sep in "?#":
        cut = rest.find(sep)
        if cut >= 0:
            rest = rest[:cut]
    return rest
