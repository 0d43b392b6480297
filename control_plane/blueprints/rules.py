"""Rule packs: validate, submit, list, read, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..auth import require
from ..errors import ApiError
from ..pack_registry import PackRegistry
from ..rulepack import Pack, load_pack

bp = Blueprint("rules", __name__, url_prefix="/v1/packs")


def _registry() -> PackRegistry:
    return current_app.extensions["pack_registry"]


def body_text() -> str:
    """The request body as text: a rule pack is UTF-8 YAML."""
    try:
        return request.get_data(cache=False).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "the rule pack must be UTF-8 text") from None


def _summary(pack: Pack) -> dict[str, Any]:
    return {"pack": pack.name, "triggers": [t.id for t in pack.triggers]}


@bp.post("/validate")
def validate() -> Any:
    """Validate a pack (alone, and against the content catalog) without storing it: 200 with
    a summary or 422 with problems."""
    pack = load_pack(body_text(), request.args.get("file", "pack.yaml"))
    _registry().check_content([pack])
    return jsonify(ok=True, **_summary(pack))


@bp.put("/<name>")
@require("publisher")
def submit(name: str) -> Any:
    """Validate a pack with the others and store it; publishing is a separate step."""
    registry = _registry()
    try:
        registry.path(name)
    except ValueError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None
    text = body_text()
    pack = registry.check(text, request.args.get("file", f"{name}.yaml"))
    if pack.name != name:
        raise ApiError(400, "name_mismatch",
                       f"the URL names pack {name!r} but the file declares pack {pack.name!r}")
    existed = registry.source(name) is not None
    registry.save(name, text)
    return jsonify(ok=True, **_summary(pack)), (200 if existed else 201)


@bp.get("")
def list_packs() -> Any:
    return jsonify(packs=_registry().names())


@bp.get("/<name>")
def show(name: str) -> Any:
    try:
        text = _registry().source(name)
    except ValueError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None
    if text is None:
        raise ApiError(404, "not_found", f"no pack {name!r}")
    return text, 200, {"Content-Type": "application/yaml; charset=utf-8"}


@bp.delete("/<name>")
@require("publisher")
def delete(name: str) -> Any:
    try:
        deleted = _registry().delete(name)
    except ValueError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None
    if not deleted:
        raise ApiError(404, "not_found", f"no pack {name!r}")
    return "", 204
