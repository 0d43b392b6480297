"""The SDK's own promises, in Chromium against the real stack: the ES module build loads
cross-origin, a modal is accessible, the last events travel by beacon when the page goes
away, an idle page does not poll, and a broken edge answer never reaches the page."""

from __future__ import annotations

import json
from typing import Any

from loadtest.browser_stack import request
from tests.servers import wait_for


def test_the_es_module_build_loads_cross_origin_and_decides(visit: Any, stack: Any) -> None:
    v = visit()
    v.goto("/pricing?sdk=module")  # the store's page with the ES module install
    assert v.page.evaluate("document.querySelector('script[type=module]') !== null")
    v.page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    nudge = v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    assert nudge.inner_text().startswith("10 % off")


MODAL_PACK = """
pack: newsletter-on-features
description: Newsletter sign-up as a modal on the features page (browser test)
triggers:
  - id: newsletter-modal
    description: page view of /features -> newsletter modal
    page: /features
    on: {type: page_view}
    action: {content: newsletter-signup, tier: immediate}
"""


def test_a_modal_takes_focus_and_escape_gives_it_back(visit: Any, stack: Any) -> None:
    stack.publish_pack("newsletter-on-features", MODAL_PACK)
    v = visit()
    v.goto("/")
    v.page.focus("#nav-features")
    v.page.keyboard.press("Enter")  # SPA navigation to /features
    modal = v.page.wait_for_selector("[data-trigger='newsletter-modal']", timeout=10_000)
    assert modal.get_attribute("role") == "dialog"
    assert modal.get_attribute("aria-modal") == "true"
    assert v.page.evaluate("document.activeElement.closest('[data-trigger]') !== null")
    v.page.keyboard.press("Escape")
    v.page.wait_for_selector("[data-trigger='newsletter-modal']", state="detached")
    assert v.page.evaluate("document.activeElement.id") == "nav-features"
    wait_for(lambda: stack.trigger_report().get("newsletter-modal", {}).get("dismissals"),
             what="the dismissal in the reports")


def test_events_still_queued_when_the_page_goes_away_travel_by_beacon(visit: Any,
                                                                      stack: Any) -> None:
    v = visit()
    v.goto("/features")
    decisions = request("GET", stack.edge + "/healthz")[1]["decisions"]
    v.page.mouse.move(200, 200)  # waits for the 250 ms batch cadence...
    v.page.close()  # ...which the page does not live to see: pagehide sends it by beacon
    wait_for(lambda: request("GET", stack.edge + "/healthz")[1]["decisions"] > decisions,
             what="the beacon's decision at the edge")


def test_an_idle_page_does_not_poll(visit: Any) -> None:
    v = visit()
    v.goto("/features")  # nothing timed can come due here: next_check_ms is null

    def decides() -> list[list[dict]]:
        """The events of each decide the SDK has sent, read in the page (Playwright tells
        its request events only while it is called: a poll of `v.requests` sees no new one)."""
        return [json.loads(s["body"])["events"] for s in v.probe()["sent"]
                if s["url"].endswith("/v1/decide")]

    def silent_for_3_s() -> bool:  # by the page's clock, since the SDK's last request
        sent, now = v.probe()["sent"], v.page.evaluate("Date.now()")
        return bool(sent) and now - sent[-1]["at"] >= 3000

    # What the page's loading sends (the page view, the first scroll depth read on the next
    # animation frame, and, in this module, the newsletter modal's impression and focus)
    # goes out in one batch or several, later on a loaded machine: no count taken at a
    # fixed moment tells "settled". The page falls silent for 3 s, and nothing it sent was
    # what polling sends: a decide with no event to tell (the SDK asks "is anything due?"
    # so), or events told again.
    wait_for(silent_for_3_s, timeout_s=30, what="the page to fall silent for 3 s")
    sent = [(r.url.rsplit("/", 1)[-1], r.post_data_json) for r in v.edge_requests()]
    assert {kind for kind, _ in sent} <= {"decide", "outcome"}, sent
    batches = decides()
    assert all(batches), batches  # not one poll
    events = [json.dumps(e, sort_keys=True) for batch in batches for e in batch]
    assert len(set(events)) == len(events), batches  # nor an event told twice
    outcomes = [json.dumps(body, sort_keys=True) for kind, body in sent if kind == "outcome"]
    assert len(set(outcomes)) == len(outcomes), outcomes


def test_a_broken_edge_answer_never_reaches_the_page(visit: Any, stack: Any) -> None:
    v = visit()
    hostile = ('{"revision": "1", "decision_id": "d", "next_check_ms": "soon", "actions": ['
               '{"trigger": "x", "content": "<img src=x onerror=alert(1)>", "tier": "immediate"},'
               '{"trigger": "pricing-discount", "content": "discount-nudge-10", '
               '"tier": "immediate", "delay_ms": 0}]}')
    v.page.route(stack.edge + "/v1/decide", lambda route: route.fulfill(
        status=200, body=hostile, headers={"Access-Control-Allow-Origin": stack.demo}))
    v.goto("/pricing")
    toast = v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    # content ids are only looked up in the site's catalog: nothing else is rendered
    assert len(v.page.query_selector_all("[data-trigger]")) == 1 and toast.is_visible()
    assert v.page.query_selector("img") is None
    v.goto("/pricing")  # and invalid JSON is an error event, not an exception in the page
    v.page.unroute(stack.edge + "/v1/decide")
    v.page.route(stack.edge + "/v1/decide", lambda route: route.fulfill(
        status=200, body="{not json", headers={"Access-Control-Allow-Origin": stack.demo}))
    v.page.evaluate("() => { window.__errors = []; nudge.on('error', e => __errors.push(e)); }")
    v.page.mouse.click(10, 300)
    v.page.wait_for_function("window.__errors.length > 0")


SITE_PACK = """
pack: cart-extras
description: A site-drawn banner and a prefetch hint on the cart (browser test)
triggers:
  - id: shipping-note
    description: page view of /cart -> the store's own free-shipping bar
    page: /cart
    on: {type: page_view}
    action: {content: free-shipping-banner, tier: immediate}
  - id: prefetch-checkout
    description: page view of /cart -> prepare the discount (a hint, nothing shown)
    page: /cart
    on: {type: page_view}
    action: {content: discount-nudge-10, tier: predictive}
"""


def test_site_renderers_and_predictive_hints(visit: Any, stack: Any) -> None:
    stack.publish_pack("cart-extras", SITE_PACK)
    v = visit()
    v.goto("/cart")
    bar = v.page.wait_for_selector("[data-trigger='shipping-note']", timeout=10_000)
    # the site's renderer drew it; the SDK only marked it
    assert "shipping-bar" in bar.get_attribute("class")
    assert bar.get_attribute("data-content") == "free-shipping-banner"
    # the predictive action prepared its link and drew nothing
    v.page.wait_for_selector("link[rel=prefetch][href$='/checkout?code=SAVE10']",
                             state="attached")
    assert v.page.query_selector("[data-trigger='prefetch-checkout']") is None
    bar.query_selector("button").click()  # the renderer's close(): a dismissal
    v.page.wait_for_selector("[data-trigger='shipping-note']", state="detached")
    wait_for(lambda: stack.trigger_report().get("shipping-note", {}).get("dismissals"),
             what="the dismissal in the reports")


def test_a_variant_the_edge_chose_is_drawn_as_text(visit: Any, stack: Any) -> None:
    answer = ('{"revision": "1", "decision_id": "d", "next_check_ms": null, "actions": [{'
              '"trigger": "pricing-discount", "content": "discount-nudge-10", "tier": "immediate",'
              ' "delay_ms": 0, "outcome_token": "t", "variant": {"name": "mobile-de", "fields": {'
              '"title": "<b>Heute 10 % Rabatt</b>", "body": "Nur heute.", "cta_text": "Los",'
              ' "cta_url": "javascript:alert(1)"}}}]}')
    v = visit()
    v.page.route(stack.edge + "/v1/decide", lambda route: route.fulfill(
        status=200, body=answer, headers={"Access-Control-Allow-Origin": stack.demo}))
    v.goto("/pricing")
    toast = v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    assert toast.query_selector("h2").inner_text() == "<b>Heute 10 % Rabatt</b>"
    assert toast.query_selector("b") is None
    assert "Nur heute." in toast.inner_text()
    assert toast.query_selector("a") is None  # a javascript: URL is never a link


PUSH_PACK = """
pack: wishlist-push
description: A push when the site reports a wishlist add (browser test)
triggers:
  - id: wishlist-push
    on: {type: custom, name: wishlist_add}
    action: {content: discount-nudge-10, channel: push, template: wishlist-discount}
    cap: {per_session: 1}
"""


def test_a_push_leaves_the_page_for_the_receiver_with_the_stores_signed_customer(
        visit: Any, stack: Any) -> None:
    stack.publish_pack("wishlist-push", PUSH_PACK)
    v = visit(locale="de-AT")
    v.context.add_cookies([{"name": "customer", "value": "cus_42", "url": stack.demo}])
    v.goto("/features")
    v.page.evaluate("() => nudge('track', 'wishlist_add')")
    wait_for(lambda: [c for c in stack.receiver.calls if c.body["trigger"] == "wishlist-push"],
             what="the push at the receiver")
    [call] = [c for c in stack.receiver.calls if c.body["trigger"] == "wishlist-push"]
    session = v.page.evaluate("() => JSON.parse(localStorage.getItem(nudgeKey('session'))).id")
    assert call.signed and call.body["session_id"] == session
    assert (call.body["crm_id"], call.body["crm_id_verified"]) == ("cus_42", True)
    assert call.body["template"] == "wishlist-discount"
    # the page was told nothing of it, and sent the store's context along
    assert v.page.query_selector("[data-trigger='wishlist-push']") is None
    sent = [r.post_data_json for r in v.edge_requests() if r.url.endswith("/v1/decide")]
    context = next(b["context"] for b in sent if b.get("context"))
    assert context["locale"] == "de-AT" and context["crm_id"] == "cus_42"
    assert context["crm_id_sig"] != ""
