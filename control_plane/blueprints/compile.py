"""Compile: a rule pack in, the snapshot the edge would load out, nothing published."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, request

from ..auth import require
from ..errors import ApiError
from ..rulepack import compile_snapshot, load_pack
from .rules import body_text

bp = Blueprint("compile", __name__, url_prefix="/v1/compile")
DRAFT_REVISION = "draft"  # a compiled-only snapshot's label: it has no revision number


@bp.post("")
@require("publisher", "author")
def compile_pack() -> Any:
    """Validate a pack (alone, and against the content catalog) and answer its snapshot,
    if it stays within MAX_SNAPSHOT_BYTES (413 otherwise)."""
    pack = load_pack(body_text(), request.args.get("file", "pack.yaml"))
    current_app.extensions["pack_registry"].check_content([pack])
    text = json.dumps(compile_snapshot([pack], DRAFT_REVISION, 0))
    limit = int(current_app.config["MAX_SNAPSHOT_BYTES"])
    if len(text) > limit:
        raise ApiError(413, "snapshot_too_large",
                       f"the compiled snapshot is {len(text)} bytes, more than the {limit} "
                       "an edge is sent (CONTROL_MAX_SNAPSHOT_BYTES); split the pack")
    return Response(text, 200, mimetype="application/json")
