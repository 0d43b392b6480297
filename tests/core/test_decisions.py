"""What the decision core decides: every case runs natively and in the real component."""

from __future__ import annotations

import json

import pytest

from tests.cases_decisions import CHECKOUT, COOLDOWN, HOVER, MANY, OPENING, PAGES, PRICING, VELOCITY
from tests.factories import T0, Session, envelope, ev, loaded, request


def pricing_visit(decider) -> Session:
    return Session(loaded(decider, PRICING, CHECKOUT), url="/pricing")


# -- the pricing nudge: dwell and scroll depth ---------------------------------------------

def test_pricing_nudge_fires_once_dwell_and_depth_both_hold(decider):
    response = pricing_visit(decider).send(OPENING, now=3200)
    assert response["actions"] == [{"trigger": "pricing-discount", "content": "discount-nudge-10",
                                    "tier": "immediate", "delay_ms": 0, "priority": 10}]
    assert response["revision"] == "1"


def test_before_the_dwell_threshold_nothing_fires_and_next_check_is_the_threshold(decider):
    response = pricing_visit(decider).send(OPENING, now=1500)
    assert response["actions"] == []
    assert response["next_check_ms"] == T0 + 3000


def test_calling_back_at_next_check_fires_the_nudge(decider):
    visit = pricing_visit(decider)
    first = visit.send(OPENING, now=1500)
    second = visit.send([], now=first["next_check_ms"] - T0)
    assert [a["trigger"] for a in second["actions"]] == ["pricing-discount"]


def test_one_ms_before_next_check_nothing_fires(decider):
    visit = pricing_visit(decider)
    visit.send(OPENING, now=1500)
    assert visit.send([], now=2999)["actions"] == []


def test_per_session_cap_stops_a_second_nudge(decider):
    visit = pricing_visit(decider)
    assert visit.send(OPENING, now=3200)["actions"]
    again = visit.send([ev("scroll", 3300, depth=0.9, y=1600)], now=6000)
    assert again["actions"] == []
    assert again["next_check_ms"] is None


def test_shallow_scroll_never_fires_and_announces_no_check(decider):
    response = pricing_visit(decider).send(
        [ev("page_view", 0, url="/pricing"), ev("scroll", 1000, depth=0.5, y=800)], now=1500)
    assert response["actions"] == []
    assert response["next_check_ms"] is None


def test_a_page_the_trigger_does_not_cover_never_fires(decider):
    visit = Session(loaded(decider, PRICING), url="/about")
    response = visit.send([ev("page_view", 0, url="/about"), ev("scroll", 100, depth=1.0)],
                          now=9000)
    assert response["actions"] == []


def test_conditions_met_across_separate_requests_count_together(decider):
    visit = pricing_visit(decider)
    assert visit.send([ev("page_view", 0, url="/pricing")], now=100)["actions"] == []
    assert visit.send([ev("scroll", 1000, depth=0.8, y=1400)], now=1100)["actions"] == []
    assert visit.send([], now=3000)["actions"][0]["trigger"] == "pricing-discount"


def test_a_new_page_view_restarts_dwell(decider):
    visit = pricing_visit(decider)
    response = visit.send(OPENING + [ev("page_view", 2500, url="/pricing")], now=3200)
    assert response["actions"] == []  # depth resets with the new page; dwell is 700 ms


def test_events_out_of_order_in_a_batch_are_applied_by_time(decider):
    response = pricing_visit(decider).send(list(reversed(OPENING)), now=3200)
    assert [a["trigger"] for a in response["actions"]] == ["pricing-discount"]


def test_without_a_page_view_the_context_url_is_the_page_from_the_first_event(decider):
    visit = pricing_visit(decider)
    assert visit.send([ev("scroll", 0, depth=0.9, y=2000)], now=2900)["actions"] == []
    assert visit.send([], now=3000)["actions"][0]["trigger"] == "pricing-discount"


# -- queued actions: the cart reminder -----------------------------------------------------

def test_cart_abandon_queues_the_reminder_and_announces_when_it_is_due(decider):
    visit = Session(loaded(decider, CHECKOUT), url="/cart")
    response = visit.send([ev("custom", 0, name="cart_abandon")], now=10)
    assert response["actions"] == []
    assert response["next_check_ms"] == T0 + 3000


def test_the_queued_reminder_is_delivered_when_due_and_only_once(decider):
    visit = Session(loaded(decider, CHECKOUT), url="/cart")
    visit.send([ev("custom", 0, name="cart_abandon")], now=10)
    assert visit.send([], now=2999)["actions"] == []
    due = visit.send([], now=3000)
    assert due["actions"] == [{"trigger": "checkout-reminder", "content": "cart-reminder",
                               "tier": "queued", "delay_ms": 0, "priority": 5,
                               "due_ms": T0 + 3000}]
    assert due["next_check_ms"] is None
    assert visit.send([ev("custom", 4000, name="cart_abandon")], now=9000)["actions"] == []


def test_other_custom_events_do_not_queue_the_reminder(decider):
    visit = Session(loaded(decider, CHECKOUT), url="/cart")
    response = visit.send([ev("custom", 0, name="add_to_cart")], now=10)
    assert response["next_check_ms"] is None


def test_a_queued_action_is_dropped_when_the_visitor_leaves_its_pages(decider):
    scoped = """
    pack: scoped
    triggers:
      - id: cart-only
        page: /cart
        on: {type: custom, name: cart_abandon}
        action: {content: c, tier: queued, delay: 3s}
    """
    visit = Session(loaded(decider, scoped), url="/cart")
    visit.send([ev("page_view", 0, url="/cart"), ev("custom", 100, name="cart_abandon")], now=100)
    assert visit.send([ev("page_view", 1000, url="/home")], now=3200)["actions"] == []


# -- other signals ---------------------------------------------------------------------------


def test_a_fast_scroll_fires_the_velocity_trigger(decider):
    visit = Session(loaded(decider, VELOCITY), url="/blog/post-1")
    response = visit.send([ev("page_view", 0, url="/blog/post-1"),
                           ev("scroll", 400, depth=0.5, y=900),
                           ev("scroll", 600, depth=0.9, y=1600)], now=700)
    assert [a["trigger"] for a in response["actions"]] == ["fast-scroller"]


def test_a_slow_scroll_does_not_fire_the_velocity_trigger(decider):
    visit = Session(loaded(decider, VELOCITY), url="/blog/post-1")
    response = visit.send([ev("page_view", 0, url="/blog/post-1"),
                           ev("scroll", 500, depth=0.1, y=300)], now=700)
    assert "fast-scroller" not in [a["trigger"] for a in response["actions"]]


def test_next_check_is_when_fast_scrolling_leaves_the_window(decider):
    visit = Session(loaded(decider, VELOCITY), url="/blog/post-1")
    response = visit.send([ev("page_view", 0, url="/blog/post-1"),
                           ev("scroll", 600, depth=0.9, y=1600)], now=700)
    # calm-reader needs velocity < 100 px/s: the 1600 px move at 600 ms leaves the window at 1600
    assert response["next_check_ms"] == T0 + 1600
    later = visit.send([], now=1600)
    assert [a["trigger"] for a in later["actions"]] == ["calm-reader"]


def test_hover_time_on_a_target_adds_up(decider):
    visit = Session(loaded(decider, HOVER), url="/")
    assert visit.send([ev("hover", 100, target="#cta", duration_ms=500)], now=700)["actions"] == []
    response = visit.send([ev("hover", 800, target="#cta", duration_ms=450)], now=1300)
    assert [a["trigger"] for a in response["actions"]] == ["cta-hesitation"]


def test_hovering_another_target_does_not_count(decider):
    visit = Session(loaded(decider, HOVER), url="/")
    response = visit.send([ev("hover", 100, target="#logo", duration_ms=5000)], now=5200)
    assert response["actions"] == []


@pytest.mark.parametrize("url,fires", [("/products/shoe", True), ("/products/", True),
                                       ("/products", False), ("/about/products/x", False),
                                       ("https://shop.example/products/x?ref=ad", True)])
def test_page_globs_match_paths(decider, url, fires):
    visit = Session(loaded(decider, PAGES), url=url)
    response = visit.send([ev("page_view", 0, url=url)], now=10)
    assert ("product-view" in [a["trigger"] for a in response["actions"]]) is fires


def test_an_event_trigger_needs_its_target(decider):
    visit = Session(loaded(decider, PAGES), url="/")
    assert visit.send([ev("click", 0, target="#other")], now=5)["actions"] == []
    assert visit.send([ev("click", 10, target="#buy")], now=15)["actions"][0]["content"] == \
        "buy-thanks"


# -- priorities, caps and cooldowns ---------------------------------------------------------


def test_at_most_three_actions_highest_priority_first(decider):
    visit = Session(loaded(decider, MANY), url="/")
    response = visit.send([ev("page_view", 0, url="/")], now=0)
    assert [a["trigger"] for a in response["actions"]] == ["top", "high", "mid"]


def test_a_state_trigger_crowded_out_fires_on_the_next_call(decider):
    crowded = MANY.replace("priority: 1}", "priority: 8}").replace("priority: 5}", "priority: 0}")
    visit = Session(loaded(decider, crowded), url="/")
    first = visit.send([ev("page_view", 0, url="/")], now=0)
    assert "mid" not in [a["trigger"] for a in first["actions"]]
    assert first["next_check_ms"] == T0  # due now: call again right away
    assert [a["trigger"] for a in visit.send([], now=10)["actions"]] == ["mid"]


def test_cooldown_spaces_firings_and_next_check_names_its_end(decider):
    visit = Session(loaded(decider, COOLDOWN), url="/")
    assert visit.send([ev("page_view", 0, url="/")], now=0)["actions"]
    waiting = visit.send([], now=1000)
    assert waiting["actions"] == []
    assert waiting["next_check_ms"] == T0 + 10_000
    assert visit.send([], now=10_000)["actions"]


def test_state_triggers_fire_once_per_page_view_by_default(decider):
    once = COOLDOWN.replace("cap: {per_page: unlimited, cooldown: 10s}", "cap: {}")
    visit = Session(loaded(decider, once), url="/")
    assert visit.send([ev("page_view", 0, url="/")], now=0)["actions"]
    assert visit.send([], now=5000)["actions"] == []
    assert visit.send([ev("page_view", 6000, url="/")], now=6000)["actions"]


# -- determinism and state -------------------------------------------------------------------

def test_the_same_input_gives_the_same_output(decider):
    loaded(decider, PRICING, CHECKOUT)
    env = envelope(request(OPENING + [ev("custom", 1200, name="cart_abandon")], 3200,
                           url="/pricing"))
    assert decider.decide(env).text == decider.decide(env).text


def test_unreadable_state_starts_a_fresh_session(decider):
    loaded(decider, PRICING)
    out = decider.decide(envelope(request(OPENING, 3200, url="/pricing"), state={"v": 99}))
    assert out.ok and out.response["actions"]


def test_state_stays_small(decider):
    visit = pricing_visit(decider)
    visit.send(OPENING + [ev("scroll", 1000 + i * 10, depth=0.5, y=i) for i in range(400)],
               now=6000)
    assert len(json.dumps(visit.state)) < 600


# -- bad input: a clear error, never a trap ----------------------------------------------------

def error_of(decider, req) -> dict:
    loaded(decider, PRICING)
    out = decider.decide(envelope(req))
    assert not out.ok
    return out.error


@pytest.mark.parametrize("req,code,field", [
    ({"context": {}}, "invalid_request", "session_id"),
    ({"session_id": 7}, "invalid_request", "session_id"),
    ({"session_id": "s", "now_ms": "soon"}, "invalid_request", "now_ms"),
    ({"session_id": "s", "now_ms": 1, "events": "scroll"}, "invalid_request", "events"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": "teleport", "ts_ms": 1}]},
     "invalid_event", "events[0].type"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": "scroll", "ts_ms": "x"}]},
     "invalid_event", "events[0].ts_ms"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": "scroll", "ts_ms": 1, "depth": 1.4}]},
     "invalid_event", "events[0].depth"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": "hover", "ts_ms": 1}]},
     "invalid_event", "events[0].target"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": "custom", "ts_ms": 1}]},
     "invalid_event", "events[0].name"),
    ({"session_id": "s", "now_ms": 1, "events": [None]}, "invalid_event", "events[0]"),
    ({"session_id": "s", "now_ms": 1, "context": []}, "invalid_request", "context"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": [], "ts_ms": 1}]},
     "invalid_event", "events[0].type"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": "page_view", "ts_ms": 1,
                                                   "url": "/" + "a" * 3000}]},
     "invalid_event", "events[0].url"),
    ({"session_id": "s", "now_ms": 1, "context": {"url": "/" + "a" * 3000}},
     "invalid_request", "context.url"),
    ({"session_id": "s", "now_ms": 1, "context": {"local_hour": "18"}},
     "invalid_request", "context.local_hour"),
    ({"session_id": "s", "now_ms": 1, "context": {"local_hour": 24}},
     "invalid_request", "context.local_hour"),
    ({"session_id": "s", "now_ms": 1, "context": {"local_hour": 7.5}},
     "invalid_request", "context.local_hour"),
    ({"session_id": "s", "now_ms": 1, "context": {"local_hour": True}},
     "invalid_request", "context.local_hour"),
    ({"session_id": "s", "now_ms": 1, "context": {"weekday": "Saturday"}},
     "invalid_request", "context.weekday"),
    ({"session_id": "s", "now_ms": 1, "context": {"weekday": 7}},
     "invalid_request", "context.weekday"),
    ({"session_id": "s", "now_ms": 1, "context": {"returning": "yes"}},
     "invalid_request", "context.returning"),
    ({"session_id": "s", "now_ms": 1, "context": {"returning": 1}},
     "invalid_request", "context.returning"),
    ({"session_id": "s", "now_ms": 1, "events": [{"type": "click", "ts_ms": 1,
                                                   "target": "#" * 300}]},
     "invalid_event", "events[0].target"),
])
def test_malformed_requests_name_the_field(decider, req, code, field):
    err = error_of(decider, req)
    assert (err["code"], err["field"], err["status"]) == (code, field, 400)
    assert err["message"]


@pytest.mark.parametrize("context", [{"local_hour": 0}, {"local_hour": 23.0},
                                     {"weekday": "sun"}, {"weekday": 0}, {"returning": False},
                                     {"local_hour": None, "weekday": None, "returning": None}])
def test_every_documented_context_value_is_taken(decider, context):
    loaded(decider, PRICING)
    out = decider.decide(envelope({"session_id": "s", "now_ms": 1, "context": context}))
    assert out.ok, out.error


def test_an_oversized_batch_is_refused_with_413(decider):
    events = [{"type": "mousemove", "ts_ms": i, "x": 1, "y": 1} for i in range(501)]
    err = error_of(decider, {"session_id": "s", "now_ms": 600, "events": events})
    assert (err["code"], err["status"]) == ("batch_too_large", 413)
    assert "500" in err["message"]


def test_more_than_32_page_views_in_a_batch_are_refused_with_413(decider):
    """Each new path costs the edge a page scope: 500 page views of distinct paths took
    164 ms in the component on a 500-trigger pack. A browser sends each page view at once,
    and the SDK splits a queue kept while the edge was away (test_sdk_page_life.py)."""
    loaded(decider, PRICING)
    views = [ev("page_view", i, url=f"/p/{i}") for i in range(33)]
    for at_most in (views[:32], views[:20] + [ev("scroll", 25, depth=0.5, y=10)] + views[20:32]):
        assert decider.decide(envelope(request(at_most, 100))).ok
    err = error_of(decider, request(views[:20] + [ev("scroll", 25, depth=0.5, y=10)] + views[20:],
                                    100))
    assert (err["code"], err["field"], err["status"]) == ("batch_too_large", "events[33]", 413)
    assert "32 page views" in err["message"]


def test_an_envelope_that_is_not_json_is_an_error_not_a_trap(decider):
    loaded(decider, PRICING)
    out = decider.decide("{not json")
    assert out.error["code"] in ("invalid_json", "invalid_envelope")  # packed: not marshal
    assert decider.decide(envelope(request(OPENING, 3200, url="/pricing"))).ok


def test_deciding_before_any_snapshot_is_not_ready(decider):
    out = decider.decide(envelope(request([], 1)))
    assert (out.error["code"], out.error["status"]) == ("no_snapshot", 503)


@pytest.mark.parametrize("text,fragment", [
    ("not json", "not JSON"),
    ('{"format": "other/9", "revision": "1", "triggers": [], "index": {}}', "format"),
    ('{"format": "edge-triggers/1", "revision": "", "triggers": [], "index": {}}', "revision"),
    ('{"format": "edge-triggers/1", "revision": "2", "triggers": [{"id": "x"}], "index": {}}',
     "action"),
])
def test_a_bad_snapshot_is_refused_and_the_previous_one_stays(decider, text, fragment):
    loaded(decider, PRICING)
    out = decider.load(text)
    assert fragment in out.error["message"]
    # the pool keeps the guest's reason, not its code
    assert out.error.get("code", "invalid_snapshot") == "invalid_snapshot"
    response = decider.decide(envelope(request(OPENING, 3200, url="/pricing")))
    assert response.response["revision"] == "1"
