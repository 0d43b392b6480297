"""The console's pages: sign-in, and one page per thing a marketer or operator looks at.
Numbers come from the same functions as `trigger-engine report` and `audit`
(control_plane/telemetry/); this module only arranges them."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from edge_module.distribution.edge_store import StoreError

from ..blueprints.reports import ReportsBusy, in_report_lane
from ..telemetry.reports import PERIODS, period_start
from . import bp, charts
from .signin import (
    READ_ROLES,
    SignOutNotRecorded,
    check_csrf,
    configure,
    csrf_token,
    current_role,
    end_session,
    safe_next,
    sign_in,
    signed_in,
    signin_failed,
    signin_retry_after,
)
from .views import trigger_overview
from .views_insight import when


@bp.record_once
def _setup(state: Any) -> None:
    configure(state.app)


@bp.context_processor
def _common() -> dict[str, Any]:
    return {"role": current_role(), "csrf": csrf_token(), "session": session}


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> Any:
    """Console pages answer errors as pages (the API answers JSON)."""
    heading = {401: "Sign in first", 403: "Not allowed", 404: "Not found"}.get(
        exc.code or 500, exc.name)
    return render_template("error.html", title=heading, heading=heading,
                           message=exc.description), exc.code or 500


@bp.errorhandler(StoreError)
def _store_error(exc: StoreError) -> Any:
    """The edge store away (or damaged): a page saying so, never the API's JSON; nothing
    a console form asked for was done (a publish writes the manifest last)."""
    return render_template("error.html", title="Edge store unavailable",
                           heading="The edge store cannot be read now",
                           message=f"{exc}. Nothing was changed; try again when it answers."
                           ), 503


@bp.errorhandler(ReportsBusy)
def _reports_busy(exc: ReportsBusy) -> Any:
    """The report lane full (pages over the reports run in it, as the API's reports do):
    a page saying so, at once, rather than a wait for a thread."""
    return render_template("error.html", title="Reports busy",
                           heading="The reports are busy",
                           message=f"Other reports are being computed right now. Try again "
                                   f"in {exc.retry_after_s} seconds."
                           ), 503, {"Retry-After": str(exc.retry_after_s)}


def store() -> Any:
    return current_app.extensions["telemetry_store"]


def period() -> tuple[str, int]:
    """The period the page shows (?period=, default 7 days) and its start (ms)."""
    name = request.args.get("period", "7d")
    name = name if name in PERIODS else "7d"
    return name, period_start(name, int(time.time() * 1000))


@bp.get("/")
def home() -> Any:
    return redirect("/triggers")


@bp.get("/sign-in")
def sign_in_page() -> Any:
    if current_role() is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template("sign_in.html", title="Sign in",
                           next=safe_next(request.args.get("next")), error=None)


@bp.post("/sign-in")
def sign_in_post() -> Any:
    check_csrf()  # a sign-in form posted from elsewhere must not sign a victim in
    nxt = safe_next(request.form.get("next"))
    wait = signin_retry_after()  # before the token is compared: a guess learns nothing
    if wait is not None:
        return render_template("sign_in.html", title="Sign in", next=nxt,
                               error=f"Too many wrong tokens from your address: try again "
                                     f"in {wait} s."), 429, {"Retry-After": str(wait)}
    if sign_in(request.form.get("token", ""), request.form.get("name", "")) is None:
        signin_failed()
        return render_template("sign_in.html", title="Sign in", next=nxt,
                               error="That token is not a publisher or viewer token."), 403
    return redirect(nxt)


@bp.post("/sign-out")
def sign_out() -> Any:
    check_csrf()
    try:
        end_session()
    except SignOutNotRecorded as exc:
        return render_template(
            "error.html", title="Sign-out not recorded", heading="Sign-out not recorded",
            message="You are signed out in this browser, but the sign-out could not be "
                    "recorded on the server: a copy of this session's cookie taken before "
                    f"still works until {when(exc.until_s * 1000)} (8 h after sign-in), "
                    "unless the sign-out is recorded first or the token you signed in with "
                    "is removed from the control plane's configuration (which signs out "
                    "every session made with it). This browser keeps the sign-out and "
                    "records it when you press the button below, sign in or sign out here.",
            retry_signout=True), 503
    return redirect(url_for("console.sign_in_page"))


@bp.get("/triggers")
@signed_in(*READ_ROLES)
@in_report_lane
def triggers() -> Any:
    name, since = period()
    view = trigger_overview(store(), current_app.extensions["pack_registry"], since,
                            pack=request.args.get("pack") or None,
                            device=request.args.get("device") or None,
                            sort=request.args.get("sort", "fires"),
                            trigger=request.args.get("trigger") or None,
                            window_s=float(current_app.config["FALSE_TRIGGER_WINDOW_S"]))
    chart = charts.time_series(view["series"], f"Fires and conversions per hour, "
                               f"{view['series_of']}")
    return render_template("triggers.html", title="Triggers", period=name, periods=PERIODS,
                           view=view, chart=chart, args=request.args)
