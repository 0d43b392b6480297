"""The SDK across a page's life, in Chromium against the real stack (sessions kept by the
edge): a tab hidden and shown again, a page left with events and a conversion still to
tell, one restored from the back/forward cache, and a single-page-app navigation while a
nudge waits to be drawn."""

from __future__ import annotations

import json
from typing import Any

from tests.browser.routes import hold_decide
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
    v.page.wait_for_function("localStorage.getItem(nudgeKey('decision')) !== null")
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
    # the listener is in the snippet's queue before the SDK can answer (it may before the
    # page's DOMContentLoaded); the click waits for the store's own navigation to be wired
    v.page.add_init_script("""
        (function(w,n){w[n]=w[n]||function(){(w[n].q=w[n].q||[]).push(arguments)}})(window,"nudge");
        nudge('on', 'action', () => {
          const go = () => document.querySelector('#nav-features').click();
          if (document.readyState === 'complete') setTimeout(go); else addEventListener('load', go);
        });""")
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
    # The reminder shows the edge got the event. The edge keeps the session and may have
    # applied it: the next page must not send it again. Playwright does not always report
    # a request a page makes as it unloads (a clean-clone CI run saw none while the
    # reminder showed), so the unloading page's send may be missing here; the next page's
    # requests, which would carry a resend, always are.
    assert [e["name"] for e in sent_events(v, "custom")] in ([], ["cart_abandon"])


def conversions(*pages: Any) -> list[str]:
    """The decision ids of the conversions the pages sent (fetch, as the probe saw them)."""
    return [json.loads(s["body"])["decision_id"] for p in pages
            for s in p.evaluate("window.__probe.sent") if s["url"].endswith("/v1/outcome")
            and json.loads(s["body"])["type"] == "conversion"]


def test_a_conversion_another_tab_reported_is_not_reported_again(
        visit: Any, stack: Any) -> None:
    v = visit()
    held: list[Any] = []
    v.page.route(stack.edge + "/v1/decide", lambda route: held.append(route))  # slow answers
    v.goto("/features")
    wait_for(lambda: v.page.wait_for_timeout(50) or held, what="the first tab's request")
    v.page.evaluate("nudge.convert()")  # before any answer of the visit
    v.page.evaluate(HIDE)  # the visitor switches to another tab of the same visit
    other = v.context.new_page()
    other.goto(stack.demo + "/pricing")
    other.wait_for_function("window.__probe.sent.some(s => s.url.endsWith('/v1/outcome'))")
    v.page.evaluate(SHOW)
    with v.page.expect_response(stack.edge + "/v1/decide"):
        for route in held:
            route.continue_()
    v.page.unroute(stack.edge + "/v1/decide")
    v.page.wait_for_timeout(1000)  # time for the first tab to report what it has
    assert len(conversions(v.page, other)) == 1, conversions(v.page, other)


def test_a_conversion_is_not_reported_again_by_a_page_back_from_the_cache(
        visit: Any, stack: Any, bfcache_browser: Any) -> None:
    v = visit(bfcache_browser)
    v.page.route(stack.edge + "/v1/decide", lambda route: route.abort())  # the edge away
    v.goto("/features")
    v.page.evaluate("nudge.convert(); window.__kept = true")
    tried = v.page.evaluate("window.__probe.sent.length")
    v.page.unroute(stack.edge + "/v1/decide")
    v.goto("/pricing")  # whose answer reports the conversion
    v.page.wait_for_function("window.__probe.sent.some(s => s.url.endsWith('/v1/outcome'))")
    v.page.go_back(wait_until="commit")
    assert v.page.evaluate("window.__kept === true"), "not restored from the bfcache"
    # the page back sends its retry with its page view, and reads the answer
    with v.page.expect_response(stack.edge + "/v1/decide", timeout=15_000):
        v.page.wait_for_function("n => window.__probe.sent.length > n", arg=tried)
    v.page.wait_for_timeout(1000)  # time for it to report what it has

    def reported() -> list[Any]:
        return [r for r in v.edge_requests() if r.url.endswith("/v1/outcome")
                and r.post_data_json["type"] == "conversion"]
    assert len(reported()) == 1, [r.post_data for r in reported()]


def test_a_batch_whose_answer_was_given_up_on_is_not_sent_again(
        visit: Any, stack: Any) -> None:
    v = visit()
    # the page's 10 s wait for an answer, shortened
    v.context.add_init_script("""(() => { const t = AbortSignal.timeout.bind(AbortSignal);
        AbortSignal.timeout = () => t(1000); })()""")
    # the edge applies it but its answer never comes
    held = hold_decide(v.page, stack.edge, "add_to_cart")
    v.goto("/features")
    v.page.evaluate("nudge('track', 'add_to_cart')")
    wait_for(lambda: v.page.wait_for_timeout(50) or held, what="the request held")
    v.page.wait_for_function("window.__probe.sent.some(s => s.body.includes('add_to_cart'))")
    v.page.evaluate("setTimeout(() => nudge('track', 'after'), 1500)")
    v.page.wait_for_function("window.__probe.sent.some(s => s.body.includes('\"after\"'))",
                             timeout=15_000)
    # the page's own record comes first; Playwright reports the request a moment later (a
    # clean-clone CI run read its list in between)
    wait_for(lambda: v.page.wait_for_timeout(50) or any(
        '"after"' in (r.post_data or "") for r in v.edge_requests()),
        what="Playwright's report of the request")
    # the edge keeps the session and may have applied it: never sent twice
    assert [e["name"] for e in sent_events(v, "custom")] == ["add_to_cart", "after"]


def test_an_answer_for_the_page_before_a_navigation_is_not_drawn(
        visit: Any, stack: Any) -> None:
    v = visit()
    held = hold_decide(v.page, stack.edge, "go_on", every=True)
    v.goto("/pricing")
    v.page.wait_for_function("localStorage.getItem(nudgeKey('decision')) !== null")
    v.page.evaluate("nudge('track', 'go_on')")
    wait_for(lambda: v.page.wait_for_timeout(50) or held, what="the request held")
    v.page.click("#nav-features")  # a single-page-app navigation while it goes
    v.page.wait_for_function("location.pathname === '/features'")
    held[0].fulfill(status=200, headers={"Access-Control-Allow-Origin": stack.demo},
                    body=json.dumps({"decision_id": "for-pricing", "actions": [
                        {"trigger": "stale", "content": "discount-nudge-10",
                         "tier": "immediate"}]}))
    v.page.wait_for_function(  # the answer is read
        "JSON.parse(localStorage.getItem(nudgeKey('decision'))).decision_id === 'for-pricing'")
    v.page.wait_for_timeout(500)
    assert v.page.query_selector("[data-trigger='stale']") is None


def test_an_outcome_being_sent_as_the_page_is_left_is_sent_once(
        visit: Any, stack: Any) -> None:
    v = visit()
    v.context.add_init_script("""(() => { const b = navigator.sendBeacon.bind(navigator);
        navigator.sendBeacon = (url, data) => {  // the beacons a page left sent
          const sent = JSON.parse(localStorage.getItem('beacons') || '[]');
          localStorage.setItem('beacons', JSON.stringify(sent.concat(String(url))));
          return b(url, data);
        }; })()""")
    v.goto("/features")
    v.page.wait_for_function("localStorage.getItem(nudgeKey('decision')) !== null")
    v.page.route(stack.edge + "/v1/outcome", lambda route: None)  # its answer never comes
    v.page.evaluate("nudge.convert()")
    v.page.wait_for_function("window.__probe.sent.some(s => s.url.endsWith('/v1/outcome'))")
    v.page.click("#nav-cart")  # the page is left while the conversion goes
    v.page.wait_for_url("**/cart")
    beacons = v.page.evaluate("JSON.parse(localStorage.getItem('beacons') || '[]')")
    assert [b for b in beacons if b.endswith("/v1/outcome")] == []


def test_a_conversion_counts_for_the_visits_latest_answer_from_any_tab(
        visit: Any, stack: Any) -> None:
    v = visit()
    v.goto("/features")
    v.page.wait_for_function("localStorage.getItem(nudgeKey('decision')) !== null")
    mine = v.page.evaluate("JSON.parse(localStorage.getItem(nudgeKey('decision'))).decision_id")
    other = v.context.new_page()  # another tab of the visit is answered later
    other.goto(stack.demo + "/pricing")
    other.wait_for_function(
        "d => JSON.parse(localStorage.getItem(nudgeKey('decision'))).decision_id !== d", arg=mine)
    latest = other.evaluate("JSON.parse(localStorage.getItem(nudgeKey('decision'))).decision_id")
    v.page.evaluate("nudge.convert()")
    v.page.wait_for_function("window.__probe.sent.some(s => s.url.endsWith('/v1/outcome'))")
    assert conversions(v.page) == [latest]


def browse_while_the_edge_is_away(v: Any, stack: Any, pages: int) -> None:
    """A single-page app's `pages` navigations while the edge cannot be reached: the SDK
    keeps their page views queued (a failed send gives its batch back to the queue)."""
    v.goto("/features")
    wait_for(lambda: v.page.wait_for_timeout(50) or sent_events(v, "page_view"),
             what="the first page view")
    v.page.route(stack.edge + "/v1/decide", lambda route: route.abort())
    v.page.evaluate("""(n) => { for (let i = 0; i < n; i++) {
        history.pushState({}, '', '/features/section-' + i); } }""", pages)
    v.page.wait_for_timeout(500)


def test_page_views_queued_while_the_edge_is_away_go_in_batches_it_accepts(
        visit: Any, stack: Any) -> None:
    """The edge takes at most 32 page views in one batch (each new path costs it a page
    scope); a single-page app browsed while the edge was unreachable sends its queue in
    batches within that, and loses none of it."""
    v = visit()
    browse_while_the_edge_is_away(v, stack, 70)
    v.page.unroute(stack.edge + "/v1/decide")
    answered: list[Any] = []
    v.page.on("response", lambda r: answered.append(r) if r.url.endswith("/v1/decide") else None)

    def delivered() -> list[str]:
        return [e["url"] for r in answered if r.status == 200
                for e in json.loads(r.request.post_data)["events"] if e["type"] == "page_view"]

    wait_for(lambda: v.page.wait_for_timeout(100) or len(delivered()) >= 70,
             what="the queued page views delivered", timeout_s=40)
    assert delivered() == [f"/features/section-{i}" for i in range(70)]
    assert all(r.status == 200 for r in answered), [r.status for r in answered]
    assert max(sum(e["type"] == "page_view" for e in json.loads(r.request.post_data)["events"])
               for r in answered) == 32


def test_a_page_left_with_more_page_views_queued_than_a_batch_holds_sends_them_all(
        visit: Any, stack: Any) -> None:
    v = visit()
    v.context.add_init_script("""(() => { window.__beacons = [];
        navigator.sendBeacon = (url, blob) => {
          blob.text().then((t) => window.__beacons.push(JSON.parse(t))); return true; };
    })()""")
    browse_while_the_edge_is_away(v, stack, 70)
    v.page.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide'))")
    v.page.wait_for_function("window.__beacons.length >= 3")
    beacons = v.page.evaluate("window.__beacons")
    views = [[e["url"] for e in b["events"] if e["type"] == "page_view"] for b in beacons]
    assert [url for batch in views for url in batch] == \
        [f"/features/section-{i}" for i in range(70)]
    assert [len(batch) for batch in views] == [32, 32, 6]
