"""The console's pages."""

from __future__ import annotations

from typing import Any

from flask import redirect

from . import bp


@bp.get("/")
def home() -> Any:
    return redirect("/triggers")
