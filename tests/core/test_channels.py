"""Actions on other channels (push, email, webhook): never in the visitor's answer, returned
as deliveries for the host to send at their due moment; fatigue, caps and groups count them
with the page's nudges (one budget) unless the pack gives each channel its own. Natively, in
the component and on the packed path."""

from __future__ import annotations

import pytest

from control_plane.rulepack import RulePackError, load_pack
from tests.factories import T0, Session, envelope, ev, loaded, pack, request

PUSH = """\
id: pricing-push
page: /pricing
when:
  - dwell: ">= 3s"
  - scroll_depth: ">= 78%"
action: {content: discount-nudge-10, channel: push, template: push-discount, priority: 10}
cap: {per_session: 1}
"""

BANNER = """\
id: pricing-banner
page: /pricing
when:
  - dwell: ">= 3s"
action: {content: discount-nudge-10, priority: 5}
cap: {per_session: 1}
"""

EMAIL_LATER = """\
id: cart-email
on: {type: custom, name: cart_abandon}
action: {content: cart-reminder, channel: email, template: cart-email, tier: queued, delay: 30m}
cap: {per_session: 1}
"""


def read_pricing(s: Session, **extra) -> dict:
    return s.send([ev("page_view", 0, url="/pricing"),
                   ev("scroll", 1000, depth=0.8, y=1400)], 3200, **extra)


def test_a_push_action_is_a_delivery_and_not_shown_on_the_page(decider):
    loaded(decider, pack(PUSH))
    out = read_pricing(Session(decider, "/pricing"))
    assert out["actions"] == []
    assert out["deliveries"] == [{
        "trigger": "pricing-push", "content": "discount-nudge-10", "tier": "immediate",
        "delay_ms": 0, "priority": 10, "channel": "push", "template": "push-discount",
        "send_at_ms": T0 + 3200, "firing": f"{T0}.1"}]


def test_page_only_snapshots_answer_without_deliveries(decider):
    loaded(decider, pack(BANNER))
    out = read_pricing(Session(decider, "/pricing"))
    assert [a["trigger"] for a in out["actions"]] == ["pricing-banner"]
    assert "deliveries" not in out and "channel" not in out["actions"][0]


def test_a_queued_channel_action_leaves_at_once_with_its_due_moment(decider):
    loaded(decider, pack(EMAIL_LATER))
    s = Session(decider, "/cart")
    out = s.send([ev("page_view", 0, url="/cart"), ev("custom", 500, name="cart_abandon")], 600)
    [email] = out["deliveries"]
    assert email["channel"] == "email" and email["send_at_ms"] == T0 + 500 + 30 * 60_000
    # not held in the session: the visitor need not come back for it to be sent
    assert out["next_check_ms"] is None
    assert "deliveries" not in s.send([], 31 * 60_000)


def test_one_budget_for_every_channel_by_default(decider):
    loaded(decider, pack(PUSH, BANNER).replace(
        "triggers:", "settings:\n  fatigue: {per_session: 1}\ntriggers:"))
    out = read_pricing(Session(decider, "/pricing"))
    assert [d["trigger"] for d in out["deliveries"]] == ["pricing-push"]  # higher priority
    assert out["actions"] == []  # the push spent the visitor's one nudge


def test_separate_budgets_let_the_page_nudge_through_too(decider):
    loaded(decider, pack(PUSH, BANNER).replace(
        "triggers:", "settings:\n  fatigue: {per_session: 1, channels: separate}\ntriggers:"))
    s = Session(decider, "/pricing")
    out = read_pricing(s)
    assert [d["trigger"] for d in out["deliveries"]] == ["pricing-push"]
    assert [a["trigger"] for a in out["actions"]] == ["pricing-banner"]


def test_a_group_holds_across_channels(decider):
    loaded(decider, pack(PUSH + "group: offers\n", BANNER + "group: offers\n"))
    out = read_pricing(Session(decider, "/pricing"))
    assert [d["trigger"] for d in out["deliveries"]] == ["pricing-push"]
    assert out["actions"] == []


def test_a_dismiss_quiets_the_other_channels_only_when_they_share_the_budget(decider):
    later = PUSH.replace('">= 3s"', '">= 20s"').replace("pricing-push", "late-push")
    for channels, pushed in (("shared", False), ("separate", True)):
        loaded(decider, pack(BANNER, later).replace(
            "triggers:", "settings:\n  fatigue: {quiet_after_dismiss: 5m, channels: "
            f"{channels}}}\ntriggers:"))
        s = Session(decider, "/pricing", session=f"s-{channels}")
        assert [a["trigger"] for a in read_pricing(s)["actions"]] == ["pricing-banner"]
        s.send([ev("dismiss", 4000, trigger="pricing-banner")], 4000)
        out = s.send([], 21_000)
        assert ("deliveries" in out) is pushed, channels


def test_the_visitors_crm_id_travels_with_its_signature(decider):
    loaded(decider, pack(PUSH))
    s = Session(decider, "/pricing")
    out = read_pricing(s, context={"url": "/pricing", "crm_id": "cus_42",
                                   "crm_id_sig": "ab" * 32})
    [push] = out["deliveries"]
    assert (push["crm_id"], push["crm_id_sig"]) == ("cus_42", "ab" * 32)


@pytest.mark.parametrize("action, problem", [
    ("{content: c, channel: sms}", "unknown channel 'sms'"),
    ("{content: c, channel: push, tier: predictive}", "cannot be predictive"),
    ("{content: c, template: t}", "a template is for push, email or webhook"),
    ("{content: c, channel: email, template: '" + "t" * 129 + "'}", "template is 129"),
    # an email without one validated, and reached the receiver with template null
    ("{content: c, channel: email}", "an email action needs the receiver's template"),
    ("{content: c, channel: webhook, tier: queued, delay: 1h}", "webhook action needs"),
])
def test_channel_mistakes_are_reported_where_they_are(action, problem):
    text = f"pack: p\ntriggers:\n  - id: t\n    action: {action}\n"
    with pytest.raises(RulePackError) as err:
        load_pack(text, "p.yaml")
    assert problem in str(err.value) and "p.yaml:4:" in str(err.value)


def test_fatigue_channels_must_be_shared_or_separate():
    text = ("pack: p\nsettings:\n  fatigue: {channels: seperate}\ntriggers:\n  - id: t\n"
            "    action: {content: c}\n")
    with pytest.raises(RulePackError) as err:
        load_pack(text, "p.yaml")
    assert "unknown channels 'seperate'" in str(err.value) and "separate" in str(err.value)


def test_a_channel_action_waits_at_most_30_days():
    text = ("pack: p\ntriggers:\n  - id: t\n    action: {content: c, channel: email, "
            "template: e, tier: queued, delay: 744h}\n")
    with pytest.raises(RulePackError) as err:
        load_pack(text, "p.yaml")
    assert "waits at most 30 days" in str(err.value) and "p.yaml:4:" in str(err.value)
    load_pack(text.replace("744h", "720h"), "p.yaml")


def test_the_same_state_decided_again_names_the_same_firing(decider):
    loaded(decider, pack(PUSH))
    s = Session(decider, "/pricing")
    before = s.state
    first = read_pricing(s)["deliveries"][0]["firing"]
    replayed = Session(decider, "/pricing")
    replayed.client.state = before  # the visitor sends its old state (token) again
    assert read_pricing(replayed)["deliveries"][0]["firing"] == first


def test_the_per_decision_maximum_counts_every_channel(decider):
    loaded(decider, pack(PUSH, BANNER).replace(
        "triggers:", "settings:\n  max_actions: 1\n  fatigue: {channels: separate}\ntriggers:"))
    out = read_pricing(Session(decider, "/pricing"))
    assert [d["trigger"] for d in out.get("deliveries", [])] == ["pricing-push"]
    assert out["actions"] == []  # the one action of this decision was the push


def test_a_crm_id_that_is_not_a_string_is_refused_where_it_is(decider):
    loaded(decider, pack(PUSH))
    for name in ("crm_id", "crm_id_sig"):
        out = decider.decide(envelope(request([], 100, "s-x", "/pricing",
                                              context={"url": "/pricing", name: {"x": 1}})))
        assert not out.ok and f"context.{name} must be a string" in out.text
