"""Rule packs: validate, submit, list, read, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import MethodNotAllowed

from ..auth import require
from ..authoring.lint import lint
from ..distribution.pack_registry import PackNameMismatch, PackRegistry
from ..errors import ApiError
from ..rulepack import Pack, RulePackError
from ..rulepack.pack_limits import PackLimitError
from ..rulepack.pack_set import check_joining

_Checked = TypeVar("_Checked")

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
    """What a valid pack holds, and its lint findings (`authoring.lint`: never fires,
    uncapped, content not in the catalog, duplicates and overlaps with the registry's
    other packs too, costly conditions) as `warnings`: valid, but likely not meant."""
    registry = _registry()
    try:
        others = [p for p in registry.packs() if p.name != pack.name]
        catalog = registry.catalog()
    except RulePackError:  # a stored pack or the catalog is broken: this pack alone
        others, catalog = [], None
    # the newcomer last: a duplicate is reported on the later of the two
    findings = [f.to_dict() for f in lint([*others, pack], catalog, focus=pack)]
    return {"pack": pack.name, "triggers": [t.id for t in pack.triggers],
            "warnings": findings}


def _every_problem(check: Callable[[], _Checked], text: str, filename: str) -> _Checked:
    """`check()`: the registry's own check of the pack `text`, or its submission. When that
    refuses the pack, it stops at the first stage that finds problems (the pack alone, then
    the catalog, then the packs together); the answer lists every problem at once instead,
    found by the same checks (`check_joining`)."""
    try:
        return check()
    except PackLimitError:
        raise  # 413: nothing was validated
    except RulePackError as refused:
        registry = _registry()
        try:
            others = registry.packs()
        except RulePackError:
            raise refused from None  # a stored pack is broken: the check's own answer
        try:
            check_joining(text, filename, others, registry.catalog)
        except RulePackError as every:
            raise every from None
        raise refused from None  # the registry changed in between: the check's own answer


@bp.post("/validate")
@require("publisher", "author")
def validate() -> Any:
    """Validate a pack as submitting it would (alone, with the registry's other packs and
    against the content catalog) without storing it: 200 with a summary, 422 with every
    problem, 413 past a size limit. Parsing untrusted YAML costs CPU, so it takes a
    publisher or author token."""
    text, filename = body_text(), request.args.get("file", "pack.yaml")
    pack = _every_problem(lambda: _registry().check(text, filename), text, filename)
    return jsonify(ok=True, **_summary(pack))


@bp.put("/<name>")
@require("publisher")
def submit(name: str) -> Any:
    """Validate a pack with the others and store it; publishing is a separate step."""
    registry = _registry()
    pack_name(name)
    text, filename = body_text(), request.args.get("file", f"{name}.yaml")
    try:
        pack, existed = _every_problem(lambda: registry.submit(name, text, filename), text,
                                      filename)
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
