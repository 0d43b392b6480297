"""The SDK against an edge that answers badly (a stale clock, an overload signal without a
floor, a malformed action) and a page that does odd things (loads the SDK twice, types while
a nudge closes, piles up events while the edge is away, forbids inline styles, pollutes
Object.prototype): in Chromium, with the edge's answers made up by Playwright's routing.
Nothing here may flood the edge, lose the visit, steal focus, outlive a withdrawn consent
or throw into the page."""

from __future__ import annotations

import json
from typing import Any

from loadtest.stack import wait_for

TOAST = {"trigger": "pricing-discount", "content": "discount-nudge-10", "tier": "immediate"}


def answer_with(v: Any, stack: Any, status: int = 200, body: Any = None,
                headers: dict[str, str] | None = None) -> list[int]:
    """Route the page's decides to a made-up answer; the sizes of the bodies sent."""
    sizes: list[int] = []

    def handle(route: Any) -> None:
        sizes.append(len(route.request.post_data or ""))
        route.fulfill(status=status, body=json.dumps(body if body is not None else {}),
                      headers={"Access-Control-Allow-Origin": stack.demo,
                               "Access-Control-Expose-Headers": "Retry-After",
                               **(headers or {})})
    v.page.route(stack.edge + "/v1/decide", handle)
    return sizes


def decides(v: Any) -> list[dict[str, Any]]:
    return [s for s in v.probe()["sent"] if s["url"].endswith("/v1/decide")]


def test_an_edge_naming_a_moment_already_past_is_asked_again_at_most_once_a_second(
        visit: Any, stack: Any) -> None:
    v = visit()
    answer_with(v, stack, body={"decision_id": "d", "actions": [], "next_check_ms": 0})
    v.goto("/features")
    start = v.page.evaluate("Date.now()")
    v.page.wait_for_timeout(4000)
    seconds = (v.page.evaluate("Date.now()") - start) / 1000
    # the page view and its first scroll reading, then one call-back a second at most
    # (without the floor: hundreds of requests a second)
    assert len(decides(v)) <= 3 + seconds


def test_an_overloaded_edge_saying_retry_now_is_backed_off_from(visit: Any, stack: Any) -> None:
    v = visit()
    answer_with(v, stack, status=503, body={"error": {"code": "overloaded"}},
                headers={"Retry-After": "0"})
    v.goto("/features")
    v.page.wait_for_timeout(4000)
    assert len(decides(v)) <= 4  # 1 s, 2 s, 5 s... apart (without the floor: hundreds)


def test_a_malformed_action_spoils_only_itself(visit: Any, stack: Any) -> None:
    v = visit()
    bad = {**TOAST, "trigger": "bad", "variant": {"fields": {"title": {"toString": 1}}}}
    due = [0]

    def handle(route: Any) -> None:
        route.fulfill(status=200, headers={"Access-Control-Allow-Origin": stack.demo},
                      body=json.dumps({"decision_id": "d", "actions": [bad, TOAST],
                                       "next_check_ms": due[0]}))
    v.page.route(stack.edge + "/v1/decide", handle)
    v.goto("/features")
    due[0] = v.page.evaluate("Date.now()") + 1500  # later answers ask for a call-back
    v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    # the field that is not text is left out (it threw, and took the answer with it): the
    # site's own title for the content stands
    title = v.page.query_selector("[data-trigger='bad'] h2")
    assert title is None or "[object" not in title.inner_text()
    v.page.mouse.click(5, 300)  # an answer naming the call-back moment
    wait_for(lambda: any(json.loads(s["body"])["events"] == [] for s in decides(v)),
             what="the call-back the answer asked for")


def test_a_toast_closing_leaves_focus_where_the_visitor_types(visit: Any, stack: Any) -> None:
    v = visit()
    shown = [False]

    def handle(route: Any) -> None:  # the toast appears while the visitor is in the name field
        events = json.loads(route.request.post_data or "{}").get("events") or []
        show = not shown[0] and any("checkout-name" in str(e.get("target")) for e in events)
        shown[0] = shown[0] or show
        route.fulfill(status=200, headers={"Access-Control-Allow-Origin": stack.demo},
                      body=json.dumps({"decision_id": "d", "actions": [TOAST] if show else []}))
    v.page.route(stack.edge + "/v1/decide", handle)
    v.goto("/checkout")
    v.page.click("#checkout-name")
    v.page.keyboard.type("Ada")
    v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    v.page.click("#checkout-email")  # the visitor moves on to the next field
    v.page.keyboard.type("ada@example.com")
    v.page.keyboard.press("Escape")  # closes the toast (WCAG 1.4.13)...
    v.page.keyboard.type("x")  # ...and typing goes on in the same field
    assert v.page.query_selector("[data-trigger='pricing-discount']") is None
    assert v.page.input_value("#checkout-email") == "ada@example.comx"
    assert v.page.input_value("#checkout-name") == "Ada"
    assert v.page.evaluate("document.activeElement.id") == "checkout-email"


def test_the_sdk_loaded_twice_still_stops_on_a_withdrawn_consent(visit: Any,
                                                                 stack: Any) -> None:
    v = visit()
    answer_with(v, stack, body={"decision_id": "d", "actions": []})
    v.goto("/features")
    v.page.evaluate("""() => new Promise(done => {
        const src = [...document.scripts].map(s => s.src).find(s => s.includes('/nudge.'));
        const again = document.createElement('script');
        again.src = src; again.onload = done; document.head.appendChild(again);
    })""")
    v.page.evaluate("nudge.consent('denied')")
    before = len(decides(v))
    v.page.mouse.click(5, 300)
    v.page.evaluate("nudge.track('after-denial')")
    v.page.wait_for_timeout(1500)
    assert len(decides(v)) == before
    assert v.page.evaluate("JSON.stringify(localStorage)") == "{}"


def test_a_backlog_over_64_kib_still_reaches_the_edge(visit: Any, stack: Any) -> None:
    v = visit()
    up = [False]
    sizes: list[int] = []

    def handle(route: Any) -> None:
        sizes.append(len(route.request.post_data or ""))
        if not up[0]:
            route.fulfill(status=503, body="{}", headers={
                "Access-Control-Allow-Origin": stack.demo})
        else:
            route.fulfill(status=200, body='{"decision_id": "d", "actions": []}',
                          headers={"Access-Control-Allow-Origin": stack.demo})
    v.page.route(stack.edge + "/v1/decide", handle)
    v.goto("/features")
    v.page.evaluate("for (let i = 0; i < 300; i++) nudge.track('x'.repeat(200) + i)")
    up[0] = True  # the edge is back: the backlog (about 70 KB) goes in one request

    def arrived() -> bool:
        v.page.wait_for_timeout(100)  # Playwright routes requests only while it is called
        return any(size > 64 * 1024 for size in sizes)
    wait_for(arrived, timeout_s=40, what="the large batch at the edge")


def test_nudges_are_styled_under_a_policy_that_forbids_inline_styles(
        visit: Any, stack: Any) -> None:
    v = visit()
    # the policy as the page's first element (a page Playwright serves itself is not on
    # loopback to Chromium, which then refuses it the edge's script)
    v.context.add_init_script("""new MutationObserver((_, watch) => {
        if (!document.head) return;
        watch.disconnect();
        const policy = document.createElement('meta');
        policy.httpEquiv = 'Content-Security-Policy';
        policy.content = "style-src 'self'";
        document.head.prepend(policy);
    }).observe(document, {childList: true, subtree: true})""")
    answer_with(v, stack, body={"decision_id": "d", "actions": [TOAST]})
    v.goto("/pricing")
    toast = v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    assert toast.evaluate("e => getComputedStyle(e).position") == "fixed"


def test_a_polluted_object_prototype_does_not_change_what_is_drawn(
        visit: Any, stack: Any) -> None:
    v = visit()
    v.context.add_init_script("Object.prototype.variant = "
                              "{fields: {title: 'written by a script', style: 'modal'}}")
    answer_with(v, stack, body={"decision_id": "d", "actions": [TOAST]})
    v.goto("/pricing")
    toast = v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    # the site's own title, as a toast
    assert toast.query_selector("h2").inner_text() == "10 % off your first order"
    assert toast.get_attribute("role") == "status"


def test_listening_for_a_name_objects_inherit_is_refused_quietly(visit: Any) -> None:
    v = visit()
    v.goto("/features")
    kinds = ["__proto__", "constructor", "toString", "hasOwnProperty"]
    assert v.page.evaluate("k => k.map(kind => typeof nudge.on(kind, () => {}))", kinds) == \
        ["function"] * len(kinds)


def answer_when_asked(v: Any, stack: Any, actions: list[Any]) -> None:
    """Route decides: `actions` in the answer to the request carrying `nudge.track('go')`,
    none otherwise (the page registers its listeners first)."""
    def handle(route: Any) -> None:
        events = json.loads(route.request.post_data or "{}").get("events") or []
        go = any(e.get("type") == "custom" and e.get("name") == "go" for e in events)
        route.fulfill(status=200, headers={"Access-Control-Allow-Origin": stack.demo},
                      body=json.dumps({"decision_id": "d", "actions": actions if go else []}))
    v.page.route(stack.edge + "/v1/decide", handle)


LISTEN = "window.__acts = []; nudge.on('action', (a) => __acts.push(a.trigger));"


def test_every_action_reaches_the_listeners_whatever_comes_before_it(visit: Any,
                                                                    stack: Any) -> None:
    """The answer was cut to its first 3 entries before malformed ones were skipped: an
    answer of three bad entries lost every valid action, and content the site draws itself
    (its `action` listener) was lost behind three such actions."""
    v = visit()
    unknown = [{"trigger": f"u{n}", "content": f"site-drawn-{n}", "tier": "immediate"}
               for n in range(3)]
    answer_when_asked(v, stack, [None, 5, "x", *unknown, TOAST])
    v.goto("/features")
    v.page.evaluate(LISTEN + "nudge.track('go');")
    v.page.wait_for_selector("[data-trigger='pricing-discount']", timeout=10_000)
    assert v.page.evaluate("window.__acts") == ["u0", "u1", "u2", "pricing-discount"]


def test_toasts_of_one_answer_stand_apart_and_at_most_three_are_on_screen(
        visit: Any, stack: Any) -> None:
    """Each toast sat exactly on the one before: only the last could be read or clicked,
    and every one counted an impression."""
    v = visit()
    answer_when_asked(v, stack, [{**TOAST, "trigger": f"t{n}"} for n in range(4)])
    v.goto("/features")
    v.page.evaluate(LISTEN + "nudge.track('go');")
    v.page.wait_for_selector("[data-trigger='t2']", timeout=10_000)
    boxes = [v.page.query_selector(f"[data-trigger='t{n}']").bounding_box() for n in range(3)]
    for low, high in zip(boxes, boxes[1:]):  # each new one above the last, clear of it
        assert high["y"] + high["height"] <= low["y"], boxes
    assert v.page.query_selector("[data-trigger='t3']") is None  # 3 on screen at most
    assert v.page.evaluate("window.__acts") == ["t0", "t1", "t2", "t3"]  # all told


def test_a_form_with_a_control_named_id_is_named_by_its_own_id(visit: Any,
                                                               stack: Any) -> None:
    """`<input name="id">` (Shopify's cart forms) hides a form's `id` property: the submit's
    target was "#[object HTMLInputElement]", which no rule can name."""
    v = visit()
    answer_when_asked(v, stack, [])
    v.goto("/features")
    v.page.evaluate("""() => {
        const f = document.createElement('form');
        f.id = 'cart';
        f.innerHTML = '<input type="hidden" name="id" value="42"><button>Add</button>';
        f.addEventListener('submit', (e) => e.preventDefault());
        document.body.appendChild(f);
    }""")
    v.page.click("#cart button")
    wait_for(lambda: any(e.get("type") == "submit" for s in decides(v)
                         for e in json.loads(s["body"])["events"]), what="the submit sent")
    [target] = [e["target"] for s in decides(v) for e in json.loads(s["body"])["events"]
                if e.get("type") == "submit"]
    assert target == "#cart"
