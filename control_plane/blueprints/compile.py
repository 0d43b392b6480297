"""Compile: a rule pack in, the snapshot the edge would load out, nothing published."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..rulepack import compile_snapshot, load_pack
from .rules import body_text

bp = Blueprint("compile", __name__, url_prefix="/v1/compile")
DRAFT_REVISION = "draft"  # a compiled-only snapshot's label: it has no revision number


@bp.post("")
def compile_pack() -> Any:
    """Validate a pack (alone, and against the content catalog) and answer its snapshot."""
    pack = load_pack(body_text(), request.args.get("file", "pack.yaml"))
    current_app.extensions["pack_registry"].check_content([pack])
    return jsonify(compile_snapshot([pack], DRAFT_REVISION, 0))
