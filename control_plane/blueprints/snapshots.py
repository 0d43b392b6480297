"""Snapshots: publish the registry's packs, list revisions, show the current one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from .. import publishing
from ..errors import ApiError

bp = Blueprint("snapshots", __name__, url_prefix="/v1/snapshots")


@bp.post("")
def publish() -> Any:
    """Compile every pack in the registry into the next revision and make it current."""
    packs = current_app.extensions["pack_registry"].packs()
    if not packs:
        raise ApiError(409, "no_packs", "the registry holds no rule packs; submit one first")
    published = publishing.publish(current_app.extensions["edge_store"], packs)
    return jsonify(published.to_dict()), 201


@bp.get("")
def list_revisions() -> Any:
    return jsonify(revisions=publishing.revisions(current_app.extensions["edge_store"]))


@bp.get("/current")
def show_current() -> Any:
    current = publishing.current(current_app.extensions["edge_store"])
    if current is None:
        raise ApiError(404, "not_published", "nothing has been published yet")
    return jsonify(current)
