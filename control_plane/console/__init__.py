"""The console: server-rendered pages where marketers see what their triggers do and
publishers change what the edges serve. Signed in with a publisher or viewer token."""

from __future__ import annotations

from flask import Blueprint, Response

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/console/static")

# The pages run no script and are never framed (the publish and rollback forms would be
# clickjacking targets); a stray `<script>` that escaped escaping would not run either.
_POLICY = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
           "style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
           "frame-ancestors 'none'")


@bp.after_request
def _protect(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _POLICY)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response

from . import pages, pages_insight, pages_packs  # noqa: F401  (register their routes on bp)
