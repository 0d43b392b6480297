"""The SDK across a page's life, in Chromium against the real stack (sessions kept by the
edge): a tab hidden and shown again, a page left with events and a conversion still to
tell, one restored from the back/forward cache, and a single-page-app navigation while a
nudge waits to be drawn."""

from __future__ import annotations

import json
from typing import Any

from tests.servers import wait_for

# A tab switch as the page sees it (headless Chromium never hides a page by itself).
HIDE = """() => {
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
SHOW = """() => {
  delete document.visibilityState; delete document.hidden;
  document.dispatchEvent(new Event('visibilitychange'));
}"""

# the focus waits for the batch cadence, and the visitor switches tabs before it goes
FOCUS_THEN_HIDE = "() => { document.querySelector('#checkout-name').focus(); (" + HIDE + ")(); }"

FOCUS_PACK = """
pack: name-focus
description: A nudge when the checkout's name field takes focus (browser test)
triggers:
  - id: name-focus
    page: /checkout
    on: {type: focus, target: "#checkout-name"}
    action: {content: discount-nudge-10, tier: immediate}
    cap: {per_session: 1}
"""


def sent_events(v: Any, kind: str) -> list[dict[str, Any]]:
    """The events of `kind` in every decide the browser sent (any page of the visit)."""
    return [e for r in v.edge_requests() if r.url.endswith("/v1/decide") and r.post_data
            for e in json.loads(r.post_data)["events"] if e["type"] == kind]


def test_a_nudge_answered_while_the_tab_is_hidden_is_shown_when_it_is_back(
        visit: Any, stack: Any) -> None:
    stack.publish_pack("name-focus", FOCUS_PACK)
    v = visit()
    v.goto("/checkout")
    v.page.evaluate(FOCUS_THEN_HIDE)
    wait_for(lambda: stack.trigger_report().get("name-focus", {}).get("fires"),
             what="the nudge fired at the edge")
    v.page.wait_for_timeout(500)  # the answer is in the page: nothing is drawn unseen
    assert v.page.query_selector("[data-trigger='name-focus']") is None
    v.page.evaluate(SHOW)
    v.page.wait_for_selector("[data-trigger='name-focus']", state="visible", timeout=10_000)


def test_a_page_back_from_the_back_forward_cache_sends_its_page_view(
        visit: Any, bfcache_browser: Any) -> None:
    v = visit(bfcache_browser)
    v.goto("/features")
    v.page.evaluate("window.__kept = true")  # a page rebuilt from the network loses it
    v.goto("/pricing")
    v.page.go_back(wait_until="commit")  # a page restored whole has no load event
    assert v.page.evaluate("window.__kept === true"), "not restored from the bfcache"
    wait_for(lambda: [e["url"] for e in sent_events(v, "page_view")].count("/features") == 2,
             what="a second page view of /features")


def test_a_conversion_before_any_answer_is_reported_from_the_next_page(
        visit: Any, stack: Any) -> None:
    v = visit()
    v.page.route(stack.edge + "/v1/decide", lambda route: route.abort())  # the edge away
    v.goto("/features")
    v.page.evaluate("nudge.convert()")
    v.page.unroute(stack.edge + "/v1/decide")
    v.goto("/pricing")

    def accepted() -> list[int]:
        v.page.wait_for_timeout(100)  # Playwright tells its request events only while called
        return [r.response().status for r in v.edge_requests()
                if r.url.endswith("/v1/outcome") and r.post_data_json["type"] == "conversion"
                and r.response()]
    wait_for(accepted, what="the conversion at the edge")
    assert accepted() == [200]


def test_a_conversion_reports_at_once_with_the_visits_latest_answer(
        visit: Any, stack: Any) -> None:
    v = visit()
    v.goto("/features")
    v.page.wait_for_function("localStorage.getItem('nudge.decision') !== null")
    v.page.route(stack.edge + "/v1/decide", lambda route: route.abort())  # no answer here
    v.goto("/pricing")
    v.page.evaluate("nudge.convert()")
    v.page.wait_for_function(
        "window.__probe.sent.some(s => s.url.endsWith('/v1/outcome') && "
        "JSON.parse(s.body).type === 'conversion')")


def test_a_delayed_nudge_is_not_drawn_on_the_page_navigated_to(visit: Any, stack: Any) -> None:
    v = visit()
    answered = [False]

    def handle(route: Any) -> None:  # the page view of /pricing: a toast in 2 s
        actions = [] if answered[0] else [{"trigger": "later", "content": "discount-nudge-10",
                                           "tier": "immediate", "delay_ms": 2000}]
        answered[0] = True
        route.fulfill(status=200, headers={"Access-Control-Allow-Origin": stack.demo},
                      body=json.dumps({"decision_id": "d", "actions": actions}))
    v.page.route(stack.edge + "/v1/decide", handle)
    v.page.add_init_script("""addEventListener('DOMContentLoaded', () => nudge('on', 'action',
        () => setTimeout(() => document.querySelector('#nav-features').click())))""")
    v.goto("/pricing")
    v.page.wait_for_function("location.pathname === '/features'")
    v.page.wait_for_timeout(4000)  # twice the delay
    assert v.page.query_selector("[data-trigger='later']") is None


def test_events_sent_as_the_page_is_left_are_sent_once(visit: Any, stack: Any) -> None:
    v = visit()
    v.goto("/cart")
    v.page.evaluate("() => { nudge('track', 'cart_abandon'); location.href = '/features'; }")
    v.page.wait_for_url("**/features")
    v.page.wait_for_selector("[data-trigger='checkout-reminder']", timeout=15_000)
    # the edge keeps the session and may have applied them: never sent twice
    assert [e["name"] for e in sent_events(v, "custom")] == ["cart_abandon"]
