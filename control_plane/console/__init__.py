"""The console: server-rendered pages where marketers see what their triggers do and
publishers change what the edges serve. Signed in with a publisher or viewer token."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/console/static")

from . import pages, pages_insight, pages_packs  # noqa: F401  (register their routes on bp)
