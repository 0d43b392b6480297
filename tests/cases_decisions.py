"""Packs and a visit shared by the decision, host, distribution, differential and pack-diff
tests.

Each pack is the smallest that shows one feature; `tests/core/test_decisions.py` specifies
what each decides."""

from __future__ import annotations

from tests.factories import ev

PRICING = """
pack: pricing
triggers:
  - id: pricing-discount
    page: /pricing
    when:
      - dwell: ">= 3s"
      - scroll_depth: ">= 78%"
    action: {content: discount-nudge-10, tier: immediate, priority: 10}
    cap: {per_session: 1}
"""

CHECKOUT = """
pack: checkout
triggers:
  - id: checkout-reminder
    on: {type: custom, name: cart_abandon}
    action: {content: cart-reminder, tier: queued, delay: 3s, priority: 5}
    cap: {per_session: 1}
"""

# A visitor on /pricing: the page view, then a scroll to 80 % one second in
OPENING = [ev("page_view", 0, url="/pricing"), ev("scroll", 1000, depth=0.8, y=1400)]

VELOCITY = """
pack: velocity
triggers:
  - id: fast-scroller
    page: /blog/*
    when:
      - scroll_velocity: {gte: 1000, window: 1s}
    action: {content: skim-summary}
  - id: calm-reader
    page: /blog/*
    when:
      - dwell: ">= 1s"
      - scroll_velocity: {lt: 100, window: 1s}
    action: {content: newsletter}
"""

HOVER = """
pack: hover
triggers:
  - id: cta-hesitation
    when:
      - hover: {target: "#cta", gte: 900ms}
    action: {content: cta-help}
"""

PAGES = """
pack: pages
triggers:
  - id: product-view
    page: /products/*
    on: page_view
    action: {content: product-tip}
  - id: buy-click
    on: {type: click, target: "#buy"}
    action: {content: buy-thanks}
"""

MANY = """
pack: many
triggers:
  - {id: low, on: page_view, action: {content: a, priority: 1}}
  - {id: top, on: page_view, action: {content: b, priority: 9}}
  - {id: mid, when: [{dwell: ">= 0s"}], action: {content: c, priority: 5}}
  - {id: high, when: [{dwell: ">= 0s"}], action: {content: d, priority: 7}}
"""

COOLDOWN = """
pack: cooldown
triggers:
  - id: ping
    when: [{dwell: ">= 0s"}]
    action: {content: ping}
    cap: {per_page: unlimited, cooldown: 10s}
"""

# The pack the authoring tools are tried on: rule-pack tests (test_case_runner) and backtests
# (test_simulate); content ids are placeholders, no catalog is checked.
SHOP = """\
pack: shop
triggers:
  - id: engaged
    page: /pricing
    when:
      - dwell: ">= 3s"
      - scroll_depth: ">= 50%"
    action: {content: nudge}
    cap: {per_session: 1}
  - id: abandon
    on: {type: custom, name: cart_abandon}
    action: {content: reminder, tier: queued, delay: 2s}
    cap: {per_session: 1}
  - id: clicked
    on: {type: click, target: "#buy"}
    action: {content: thanks}
    cap: {per_session: 1}
"""
