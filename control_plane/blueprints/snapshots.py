"""Snapshots: publish the registry's packs, list revisions, show the current one, roll back."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from .. import body_schema
from ..auth import require
from ..distribution import change_log, publishing
from ..errors import ApiError

bp = Blueprint("snapshots", __name__, url_prefix="/v1/snapshots")


@bp.post("")
@require("publisher")
def publish() -> Any:
    """Compile every pack in the registry into the next revision and make it current."""
    registry = current_app.extensions["pack_registry"]
    packs = registry.packs()
    if not packs:
        raise ApiError(409, "no_packs", "the registry holds no rule packs; submit one first")
    registry.check_content(packs)  # the catalog may have changed since they were submitted
    signer = current_app.extensions["key_ring"].active()
    published = publishing.publish(current_app.extensions["edge_store"], packs, signer,
                                   catalog=registry.catalog())
    _record("publish", published)
    return jsonify(published.to_dict()), 201


@bp.get("")
def list_revisions() -> Any:
    """Every published revision and rollback, newest first."""
    return jsonify(revisions=publishing.revisions(current_app.extensions["edge_store"]))


@bp.post("/rollback")
@require("publisher")
def rollback() -> Any:
    """Serve an earlier revision's snapshot again: `{"revision": N}`."""
    body = body_schema.json_body()
    revision = body.get("revision") if isinstance(body, dict) else None
    if type(revision) is float and revision.is_integer():  # JSON Schema's integer: 3.0 too
        revision = int(revision)
    if type(revision) is not int or revision < 1:
        raise ApiError(400, "invalid_request", 'the body must be JSON {"revision": N}, N an '
                                               "integer >= 1", field="revision")
    signer = current_app.extensions["key_ring"].active()  # signs the rollback statement
    done = publishing.rollback(current_app.extensions["edge_store"], revision, signer)
    if done.changed:
        _record("rollback", done.entry)
    return jsonify(done.entry.to_dict())


def _record(action: str, entry: publishing.Published) -> None:
    """Who did it: the API knows the role its token has, not a person."""
    change_log.record(current_app.config["DATA_DIR"],
                      change_log.Change.of(action, entry, change_log.API_ACTOR, "publisher",
                                           "api"))


@bp.get("/current")
def show_current() -> Any:
    current = publishing.current(current_app.extensions["edge_store"])
    if current is None:
        raise ApiError(404, "not_published", "nothing has been published yet")
    return jsonify(current)
