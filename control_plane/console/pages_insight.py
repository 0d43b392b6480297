"""The console's "Experiments", "Learning" and "Audit" pages: the experiment report with its
sample-ratio check, the learning loop's recalibrations, and the trigger audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app, render_template

from edge_module.distribution.edge_store import StoreError

from ..blueprints.reports import in_report_lane
from ..distribution import publishing
from . import bp
from .pages import PERIODS, period, store
from .signin import READ_ROLES, signed_in
from .views_insight import audit_view, experiment_view, learning_view


def _published_snapshot() -> tuple[dict[str, Any] | None, str | None]:
    """The snapshot the edges are served (its experiment's split is what the arms are
    checked against), or why it could not be read."""
    try:
        served = publishing.served(current_app.extensions["edge_store"])
    except StoreError as exc:
        return None, f"The edge store could not be read ({exc}), so the split is not known."
    return (served[1] if served else None), None


@bp.get("/experiments")
@signed_in(*READ_ROLES)
@in_report_lane
def experiments() -> Any:
    name, since = period()
    snapshot, store_error = _published_snapshot()
    view = experiment_view(store(), snapshot, since,
                           float(current_app.config["FALSE_TRIGGER_WINDOW_S"]))
    return render_template("experiments.html", title="Experiments", period=name,
                           periods=PERIODS, view=view, store_error=store_error,
                           action="/experiments")


@bp.get("/learning")
@signed_in(*READ_ROLES)
@in_report_lane
def learning() -> Any:
    return _period_page("learning", "Learning", learning_view)


@bp.get("/audit")
@signed_in(*READ_ROLES)
@in_report_lane
def audit() -> Any:
    return _period_page("audit", "Audit", audit_view)


def _period_page(page: str, title: str, view: Callable[[Any, float], Any]) -> Any:
    """A page that shows one view of the telemetry store over the chosen period."""
    name, since = period()
    return render_template(f"{page}.html", title=title, period=name, periods=PERIODS,
                           view=view(store(), since), action=f"/{page}")
