"""Rule packs: validate, submit, list, read, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import MethodNotAllowed

from ..auth import require
from ..distribution.pack_registry import PackNameMismatch, PackRegistry
from ..errors import ApiError
from ..rulepack import Pack, load_pack

bp = Blueprint("rules", __name__, url_prefix="/v1/packs")


def _registry() -> PackRegistry:
    return current_app.extensions["pack_registry"]


def body_text() -> str:
    """The request body as text: a rule pack is UTF-8 YAML of at most MAX_PACK_BYTES (413
    before more is read)."""
    limit = int(current_app.config["MAX_PACK_BYTES"])
    too_large = ApiError(413, "pack_too_large", f"a rule pack is at most {limit} bytes "
                         "(CONTROL_MAX_PACK_BYTES); split it into packs")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    data = request.stream.read(limit + 1)  # a body without Content-Length stops here too
    if len(data) > limit:
        raise too_large
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "the rule pack must be UTF-8 text") from None


def pack_name(name: str) -> None:
    """400 invalid_name unless `name` can name a pack in the registry; /v1/packs/validate
    is the validation resource, which only takes POST (405)."""
    if name == "validate":
        raise MethodNotAllowed(valid_methods=["POST"])
    try:
        _registry().path(name)
    except ValueError as exc:
        raise ApiError(400, "invalid_name", str(exc), field="name") from None


def _summary(pack: Pack) -> dict[str, Any]:
    return {"pack": pack.name, "triggers": [t.id for t in pack.triggers]}


@bp.post("/validate")
@require("publisher", "author")
def validate() -> Any:
    """Validate a pack (alone, and against the content catalog) without storing it: 200 with
    a summary, 422 with problems, 413 past a size limit. Parsing untrusted YAML costs CPU,
    so it takes a publisher or author token."""
    pack = load_pack(body_text(), request.args.get("file", "pack.yaml"))
    _registry().check_content([pack])
    return jsonify(ok=True, **_summary(pack))


@bp.put("/<name>")
@require("publisher")
def submit(name: str) -> Any:
    """Validate a pack with the others and store it; publishing is a separate step."""
    registry = _registry()
    pack_name(name)
    text = body_text()
    try:
        pack, existed = registry.submit(name, text, request.args.get("file", f"{name}.yaml"))
    except PackNameMismatch as exc:
        raise ApiError(400, "name_mismatch", f"the URL names pack {name!r} but the file "
                                             f"declares pack {exc.declared!r}") from None
    return jsonify(ok=True, **_summary(pack)), (200 if existed else 201)


@bp.get("")
def list_packs() -> Any:
    return jsonify(packs=_registry().names())


@bp.get("/<name>")
def show(name: str) -> Any:
    pack_name(name)
    text = _registry().source(name)
    if text is None:
        raise ApiError(404, "not_found", f"no pack {name!r}")
    return text, 200, {"Content-Type": "application/yaml; charset=utf-8"}


@bp.delete("/<name>")
@require("publisher")
def delete(name: str) -> Any:
    pack_name(name)
    if not _registry().delete(name):
        raise ApiError(404, "not_found", f"no pack {name!r}")
    return "", 204
