"""The console in Chromium, against the real stack after a visitor's journey through the
demo store: sign in, every page renders real data, plots are drawn, and without a session
nothing is shown or changed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.servers import wait_for

PAGES = ("/triggers", "/experiments", "/learning", "/audit", "/packs", "/fleet")


@pytest.fixture(scope="module")
def traffic(browser: Any, stack: Any) -> None:
    """One visitor sees the pricing nudge, clicks it and buys: the data the pages show."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(stack.demo + "/pricing")
    page.wait_for_function("window.nudge && typeof window.nudge.track === 'function'")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_selector("[data-trigger='pricing-discount']", state="visible", timeout=10_000)
    page.click("[data-trigger='pricing-discount'] a")
    page.wait_for_url("**/checkout*")
    page.fill("#checkout-name", "Ada")
    page.fill("#checkout-email", "ada@example.com")
    page.fill("#checkout-card", "4242424242424242")
    page.click("#checkout-submit")
    page.wait_for_selector("#thank-you", state="visible")
    ctx.close()
    wait_for(lambda: stack.trigger_report().get("pricing-discount", {}).get("conversions"),
             timeout_s=30, what="the journey's telemetry at the control plane")


def sign_in(page: Any, stack: Any, token: str, name: str = "Ada") -> None:
    page.goto(stack.control + "/sign-in")
    page.fill("#token", token)
    page.fill("#name", name)
    page.click("button[type=submit]")
    page.wait_for_url("**/triggers")


def test_without_a_session_every_page_leads_to_sign_in(browser: Any, stack: Any) -> None:
    page = browser.new_context().new_page()
    for path in PAGES:
        page.goto(stack.control + path)
        assert page.url.startswith(stack.control + "/sign-in"), path
        assert page.query_selector("#token") is not None


def test_signed_in_every_page_renders_the_journeys_data(browser: Any, stack: Any,
                                                        traffic: None) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, stack, stack.publisher)
    row = page.wait_for_selector("tr[data-trigger='pricing-discount']")
    fires = int(row.query_selector_all("td")[2].inner_text())
    assert fires >= 1
    points = page.query_selector_all("svg.chart .point")
    assert points, "the hourly plot has data points"
    assert page.query_selector("svg.chart polyline") is not None
    for path in PAGES[1:]:
        response = page.goto(stack.control + path)
        assert response is not None and response.status == 200, path
        assert page.query_selector("h1") is not None, path
        assert "Traceback" not in page.content()
    assert not errors


def test_the_pages_fit_a_phone(browser: Any, stack: Any, traffic: None) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    sign_in(page, stack, stack.publisher)
    for path in PAGES:
        page.goto(stack.control + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than the phone"


def test_a_forged_csrf_token_is_refused(browser: Any, stack: Any) -> None:
    page = browser.new_context().new_page()
    sign_in(page, stack, stack.publisher)
    page.evaluate("document.querySelector('form.who input[name=csrf]').value = 'forged'")
    page.click("form.who button")
    assert "security token" in page.content()
    page.goto(stack.control + "/triggers")
    assert page.url.endswith("/triggers"), "still signed in: the forged sign-out did nothing"


def test_a_viewer_sees_but_cannot_sign_in_with_another_role(browser: Any, stack: Any) -> None:
    page = browser.new_context().new_page()
    viewer = (stack.work / "control" / "viewer.token").read_text().strip()
    sign_in(page, stack, viewer, name="Vi")
    assert re.search(r"Vi \(viewer\)", page.inner_text("header"))


def test_publish_and_roll_back_from_the_console_change_what_the_edge_serves(
        browser: Any, stack: Any) -> None:
    from loadtest.browser_stack import ROOT, request

    for name in ("pricing-discount", "checkout-reminder"):  # the registry holds rules/
        stack.publish_pack(name, (ROOT / "rules" / f"{name}.yaml").read_text())

    def served() -> int:
        return int(request("GET", stack.edge + "/healthz")[1]["revision"])

    before = served()
    page = browser.new_context().new_page()
    sign_in(page, stack, stack.publisher, name="Grace")
    page.goto(stack.control + "/revisions/publish")
    page.check("form.confirm input[name=confirm]")
    page.click("form.confirm button[type=submit]")
    assert "Published revision" in page.inner_text(".flash")
    wait_for(lambda: served() == before + 1, what="the edge serving the console's publish")
    page.goto(stack.control + f"/revisions/rollback?revision={before}")
    page.check("form.confirm input[name=confirm]")
    page.click("form.confirm button[type=submit]")
    wait_for(lambda: served() == before, what="the edge serving the rolled-back revision")
    page.goto(stack.control + "/packs")
    assert "Grace" in page.inner_text("main")  # who did it, in the history
