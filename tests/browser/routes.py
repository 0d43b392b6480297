"""Holding the edge's answers in a browser test: the request goes out, its answer waits
until the test fulfils or releases it (or never comes)."""

from __future__ import annotations

from typing import Any


def hold_decide(where: Any, edge: str, marker: str, every: bool = False) -> list[Any]:
    """Hold the first decide request whose body names `marker` (each one, with `every`)
    in `where` (a page or a browser context); the others go on. The held routes, filled
    in as they come."""
    held: list[Any] = []

    def hold(route: Any) -> None:
        if (every or not held) and marker in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    where.route(edge + "/v1/decide", hold)
    return held
