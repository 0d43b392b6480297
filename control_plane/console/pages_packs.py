"""The console's "Packs and revisions" and "Fleet" pages, and the publish and rollback
forms (publisher only, each behind a confirmation step).

Publishing and rolling back call the same functions as `POST /v1/snapshots` and
`/v1/snapshots/rollback`; each change that takes effect is written to the audit trail
(`distribution.change_log`) with the signed-in person's name and role.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for

from edge_module.distribution.edge_store import StoreError

from ..distribution import change_log, publishing
from ..distribution.fleet import STALE_AFTER_MS
from ..rulepack import RulePackError
from . import bp
from .signin import READ_ROLES, current_role, signed_in
from .views_packs import fleet_view as arrange_fleet
from .views_packs import (
    history,
    pack_overview,
    pack_page,
    publish_plan,
    published_numbers,
    revision_diff,
    rollback_plan,
    short,
)


def _registry() -> Any:
    return current_app.extensions["pack_registry"]


def _store() -> Any:
    return current_app.extensions["edge_store"]


def _current_sequence() -> str:
    """What the confirmation was shown against: a change since then is not confirmed."""
    entry = publishing.current_entry(_store(), fresh=True)  # it guards a write
    return "none" if entry is None else str(entry.sequence)


def _record(action: str, entry: publishing.Published) -> None:
    change_log.record(current_app.config["DATA_DIR"],
                      change_log.Change.of(action, entry, str(session.get("name")),
                                           current_role() or "", "console"))


def _unconfirmed(back: str) -> Any | None:
    """A redirect back to the confirmation if the form was not confirmed, or the published
    revision changed since it was shown; None when the change may go ahead."""
    if request.form.get("confirm") != "yes":
        flash("Nothing was changed: tick the box to confirm first.", "error")
        return redirect(back)
    if request.form.get("expect") != _current_sequence():
        flash("Nothing was changed: the published revision changed since this page was "
              "shown. Check what it would do now.", "error")
        return redirect(back)
    return None


@bp.get("/packs")
@signed_in(*READ_ROLES)
def packs() -> Any:
    return render_template("packs.html", title="Packs and revisions",
                           view=pack_overview(_registry()),
                           history=history(_store(), current_app.config["DATA_DIR"]),
                           current=publishing.current(_store()),
                           numbers=published_numbers(_store()))


@bp.get("/packs/<name>")
@signed_in(*READ_ROLES)
def pack(name: str) -> Any:
    try:
        view = pack_page(_registry(), name)
    except ValueError:  # not a pack name the registry could hold
        view = None
    if view is None:
        abort(404, f"There is no pack named {name!r} in the registry.")
    return render_template("packs_detail.html", title=f"Pack {name}", view=view)


def _revision_arg(name: str) -> int | None:
    """A revision number from the query or form; anything else (superscript digits, which
    `str.isdigit` takes, or a number of thousands of digits) is None."""
    value = request.values.get(name, "")
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return int(value) if int(value) >= 1 else None


def _rollback_target() -> int:
    revision = _revision_arg("revision")
    if revision is None:
        abort(400, "Say which revision to roll back to: revision=N (a published revision).")
    return revision


@bp.get("/revisions/diff")
@signed_in(*READ_ROLES)
def revisions_diff() -> Any:
    numbers = published_numbers(_store())
    old, new = _revision_arg("old"), _revision_arg("new")
    if old is None and new is None and len(numbers) >= 2:
        old, new = numbers[1], numbers[0]
    changes, error = None, None
    if old is not None and new is not None:
        try:
            changes = revision_diff(_store(), old, new)
        except publishing.RevisionError as exc:
            error = exc.message
    elif request.args:
        error = "Pick two published revisions."
    return render_template("revisions_diff.html", title="Revision diff", numbers=numbers,
                           old=old, new=new, changes=changes, error=error)


@bp.get("/revisions/publish")
@signed_in("publisher")
def publish_confirm() -> Any:
    return render_template("packs_publish.html", title="Publish",
                           plan=publish_plan(_registry(), _store()),
                           expect=_current_sequence())


@bp.post("/revisions/publish")
@signed_in("publisher")
def publish() -> Any:
    back = url_for("console.publish_confirm")
    refused = _unconfirmed(back)
    if refused is not None:
        return refused
    registry = _registry()
    try:
        packs = registry.packs()
        if not packs:
            flash("Nothing was published: the registry holds no rule packs.", "error")
            return redirect(back)
        registry.check_content(packs)  # as the API does: the catalog may have changed
        signer = current_app.extensions["key_ring"].active()
        published = publishing.publish(_store(), packs, signer, catalog=registry.catalog())
    except RulePackError as exc:
        flash(f"Nothing was published: the packs do not validate: {short(exc.problems[0])}",
              "error")
        return redirect(back)
    except (publishing.PublishError, StoreError) as exc:
        flash(f"Nothing was published: {exc}", "error")
        return redirect(back)
    _record("publish", published)
    flash(f"Published revision {published.revision}: {published.triggers} trigger(s) from "
          f"{', '.join(published.packs)}. Edges serve it from their next sync.", "ok")
    return redirect(url_for("console.packs"))


@bp.get("/revisions/rollback")
@signed_in("publisher")
def rollback_confirm() -> Any:
    revision = _rollback_target()
    try:
        plan = rollback_plan(_store(), revision)
    except publishing.RevisionError as exc:
        abort(404 if exc.code == "unknown_revision" else 409, exc.message)
    return render_template("packs_rollback.html", title="Roll back", plan=plan,
                           expect=_current_sequence())


@bp.post("/revisions/rollback")
@signed_in("publisher")
def rollback() -> Any:
    revision = _rollback_target()
    refused = _unconfirmed(url_for("console.rollback_confirm", revision=revision))
    if refused is not None:
        return refused
    try:
        signer = current_app.extensions["key_ring"].active()
        done = publishing.rollback(_store(), revision, signer)
    except (publishing.RevisionError, publishing.PublishError, StoreError) as exc:
        flash(f"Nothing was rolled back: {getattr(exc, 'message', exc)}", "error")
        return redirect(url_for("console.packs"))
    if not done.changed:
        flash(f"Revision {revision} is already served; nothing was changed.", "ok")
    else:
        _record("rollback", done.entry)
        flash(f"Revision {revision} is served again instead of {done.entry.rollback_from}. "
              "Edges switch at their next sync.", "ok")
    return redirect(url_for("console.packs"))


@bp.get("/fleet")
@signed_in(*READ_ROLES)
def fleet() -> Any:
    return render_template("fleet.html", title="Fleet",
                           view=arrange_fleet(current_app.extensions["fleet"], _store()),
                           stale_after_s=STALE_AFTER_MS // 1000)
