"""The SDK against an edge that keeps no sessions (`EDGE_SESSION_STORE=client`), in Chromium:
the visit's state is the token each answer carries, so an answer the page never reads
would take its events out of the visit."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from loadtest.browser_stack import BrowserStack
from tests.browser.routes import hold_decide
from tests.browser.test_sdk_page_life import FOCUS_PACK, FOCUS_THEN_HIDE, SHOW, sent_events
from tests.servers import wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserStack]:
    s = BrowserStack(tmp_path_factory.mktemp("browser-stack-client-state"), edge_env={
        "EDGE_SESSION_STORE": "client", "EDGE_STATE_TOKEN_KEYS": f"k1:{secrets.token_hex(32)}"})
    try:
        yield s
    finally:
        s.close()


def has_state(v: Any) -> None:
    v.page.wait_for_function("localStorage.getItem(nudgeKey('state')) !== null")


def leave_before_the_answer(v: Any, stack: Any) -> Any:
    """Track `cart_abandon` on /cart and go to /features while that request is held (as an
    answer still on its way when the page is left); the held request's route."""
    held = hold_decide(v.page, stack.edge, "cart_abandon")
    v.goto("/cart")
    v.page.wait_for_function("localStorage.getItem(nudgeKey('decision')) !== null")
    v.page.evaluate("nudge('track', 'cart_abandon')")
    wait_for(lambda: v.page.wait_for_timeout(50) or held, what="the request held")
    v.page.evaluate("location.href = '/features'")
    v.page.wait_for_url("**/features")
    return held[0]


def test_events_sent_as_the_page_is_left_stay_in_the_visit(visit: Any, stack: Any) -> None:
    v = visit()
    held = leave_before_the_answer(v, stack)  # the new state never reaches a page
    v.page.wait_for_selector("[data-trigger='checkout-reminder']", timeout=15_000)
    held.abort()


def test_events_answered_are_not_sent_again(visit: Any) -> None:
    v = visit()
    v.goto("/cart")
    has_state(v)
    v.page.evaluate("nudge('track', 'cart_abandon')")
    v.page.wait_for_selector("[data-trigger='checkout-reminder']", timeout=15_000)
    v.goto("/features")
    has_state(v)
    v.page.wait_for_timeout(1000)
    assert [e["name"] for e in sent_events(v, "custom")] == ["cart_abandon"]


def test_a_hidden_tabs_answer_keeps_the_visits_state(visit: Any, stack: Any) -> None:
    stack.publish_pack("name-focus", FOCUS_PACK)
    v = visit()
    v.goto("/checkout")
    has_state(v)
    token = v.page.evaluate("localStorage.getItem(nudgeKey('state'))")
    v.page.evaluate(FOCUS_THEN_HIDE)
    v.page.wait_for_function("t => localStorage.getItem(nudgeKey('state')) !== t", arg=token)
    v.page.evaluate(SHOW)
    v.page.wait_for_selector("[data-trigger='name-focus']", state="visible", timeout=10_000)
    # the focus is in the visit's state: the next request does not tell it again
    v.page.mouse.click(5, 300)
    v.page.wait_for_timeout(1000)
    focus = [json.dumps(e) for e in sent_events(v, "focus")]
    assert len(focus) == len(set(focus)), focus


ONCE_PACK = """
pack: once-a-visit
description: A nudge at most once a visit, whichever tab asks (browser test)
triggers:
  - id: once-a-visit
    on: {type: custom, name: wishlist_add}
    action: {content: discount-nudge-10, tier: immediate}
    cap: {per_session: 1}
"""


def test_tabs_of_one_visit_take_turns_so_a_once_a_visit_nudge_shows_once(
        visit: Any, stack: Any) -> None:
    stack.publish_pack("once-a-visit", ONCE_PACK)
    v = visit()
    v.goto("/features")
    has_state(v)
    other = v.context.new_page()  # a second tab of the same visit
    other.goto(stack.demo + "/pricing")
    other.wait_for_function("window.nudge && typeof window.nudge.track === 'function'")
    # the first tab's request is slow to come back
    held = hold_decide(v.context, stack.edge, "wishlist_add")
    v.page.evaluate("nudge('track', 'wishlist_add')")
    wait_for(lambda: v.page.wait_for_timeout(50) or held, what="the first tab's request")
    other.evaluate("nudge('track', 'wishlist_add')")
    other.wait_for_timeout(1000)  # time to send the same state, were it not its turn
    held[0].continue_()
    v.page.wait_for_selector("[data-trigger='once-a-visit']", timeout=10_000)
    other.wait_for_function("window.__probe.sent.some(s => s.body.includes('wishlist_add'))")
    other.wait_for_timeout(2000)
    assert other.query_selector("[data-trigger='once-a-visit']") is None


def test_a_state_token_the_edge_refuses_is_dropped_and_the_visit_goes_on(visit: Any) -> None:
    v = visit()
    v.goto("/cart")
    has_state(v)
    # a token this edge cannot use (its key rotated away, another deployment)
    v.page.evaluate("""() => { const s = JSON.parse(localStorage.getItem(nudgeKey('state')));
        localStorage.setItem(nudgeKey('state'), JSON.stringify({sid: s.sid, token: 'v1.gone.1.x.y'}));
    }""")
    v.page.evaluate("nudge('track', 'cart_abandon')")
    v.page.wait_for_selector("[data-trigger='checkout-reminder']", timeout=15_000)
    assert "v1.gone" not in v.page.evaluate("localStorage.getItem(nudgeKey('state'))")


def test_a_web_lock_refused_does_not_stop_the_visit(visit: Any) -> None:
    v = visit()
    v.context.add_init_script("""navigator.locks.request = () =>
        Promise.reject(new DOMException('refused', 'InvalidStateError'))""")
    v.goto("/cart")
    has_state(v)
    v.page.evaluate("nudge('track', 'cart_abandon')")
    v.page.wait_for_selector("[data-trigger='checkout-reminder']", timeout=15_000)


def test_a_page_left_while_its_request_goes_is_kept_in_the_back_forward_cache(
        visit: Any, stack: Any, bfcache_browser: Any) -> None:
    v = visit(bfcache_browser)
    v.goto("/features")
    has_state(v)
    v.page.evaluate("window.__kept = true")  # a page rebuilt from the network loses it
    # the click's answer is still on its way as the page is left
    held = hold_decide(v.page, stack.edge, "#nav-cart")
    v.page.click("#nav-cart")
    v.page.wait_for_url("**/cart")
    has_state(v)
    v.page.wait_for_function("window.nudge && typeof window.nudge.track === 'function'")
    v.page.go_back(wait_until="commit")
    assert v.page.evaluate("window.__kept === true"), "not restored from the bfcache"
    if held:
        held[0].abort()


def test_a_second_install_on_the_site_keeps_its_own_visit(visit: Any, stack: Any) -> None:
    v = visit()
    v.goto("/features")
    has_state(v)
    # another copy of the SDK (a module of another URL) installed for another site
    v.page.evaluate("""async (edge) => {
        const other = await import(edge + '/sdk/nudge.mjs?second');
        other.init({edge: edge, site: 'second'});
        other.track('from_second');
    }""", stack.edge)
    v.page.wait_for_function("window.__probe.sent.some(s => s.body.includes('from_second'))")
    first = json.loads(v.page.evaluate("""localStorage.getItem(Object.keys(localStorage).find(
        (k) => k.startsWith('nudge.session@') && !k.endsWith('/second')))"""))["id"]
    second = next(json.loads(s["body"]) for s in v.page.evaluate("window.__probe.sent")
                  if s["url"].endswith("/v1/decide") and "from_second" in s["body"])
    # its own session, and the first install's state is not sent for it
    assert second["session_id"] != first
    assert "state_token" not in second
