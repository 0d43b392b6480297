"""Signing keys: list them, rotate the signing key (publisher token)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from ..auth import require
from ..distribution.keys import KeyRing

bp = Blueprint("keys", __name__, url_prefix="/v1/keys")


def _ring() -> KeyRing:
    return current_app.extensions["key_ring"]


@bp.get("")
def list_keys() -> Any:
    """Key ids, which one signs, which ones edges are told to trust."""
    return jsonify(keys=_ring().listing())


@bp.post("/rotate")
@require("publisher")
def rotate() -> Any:
    """A new key signs from now on; the old ones stay trusted until retired."""
    key = _ring().rotate()
    return jsonify(key_id=key.id, keys=_ring().listing()), 201
