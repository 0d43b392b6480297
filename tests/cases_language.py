"""Packs of the whole trigger language, one per feature: what each decides is specified in
tests/core/test_language_semantics.py; tests/core/test_differential.py runs them all at once."""

from __future__ import annotations

POSITION = """
pack: position
triggers:
  - id: back-to-top
    when: [{scroll_position: "<= 10%"}, {scroll_depth: ">= 90%"}]
    action: {content: back-to-top}
"""

SPIKE = """
pack: spike
triggers:
  - id: skimming
    when: [{velocity_spike: {gte: 2.5, window: 1s, baseline: session}}]
    action: {content: summary}
"""

COHORT = """
pack: cohort
models:
  baselines: {scroll_velocity: {mean: 400, std: 100}}
triggers:
  - id: fast-for-the-cohort
    when: [{velocity_spike: {gte: 3, window: 1s, baseline: cohort}}]
    action: {content: summary}
"""

ENTROPY = """
pack: entropy
triggers:
  - id: erratic-mouse
    page: /signup
    when: [{mouse_entropy: {gte: 2.5, window: 2s}}]
    action: {content: help-prompt}
"""

DEPTH = """
pack: depth
triggers:
  - id: explorer
    when: [{pages: ">= 3"}, {session_time: "<= 60s"}]
    action: {content: tour}
"""

FORMS = """
pack: forms
triggers:
  - id: hesitant-email
    on: {type: input, target: "#email"}
    when: [{focus_to_input: {gte: 4s, target: "#email"}}]
    action: {content: email-help}
  - id: instant-submit
    on: submit
    when: [{input_to_submit: "<= 300ms"}]
    action: {content: bot-check}
"""

FAST_CLICK = """
pack: fast-click
triggers:
  - id: rage-landing
    on: click
    when: [{dwell: "<= 800ms"}]
    action: {content: slow-down}
"""

COUNT = """
pack: count
triggers:
  - id: rage-clicks
    on: click
    when: [{count: {event: click, window: 2s, gte: 4}}]
    action: {content: help-prompt}
  - id: long-hovers
    when: [{avg: {field: hover.duration_ms, window: 10s, gte: 800ms}}]
    action: {content: compare-table}
"""

TEMPORAL = """
pack: temporal
triggers:
  - id: added-then-checkout
    page: /checkout
    on: page_view
    when: [{since: {event: {type: custom, name: add_to_cart}, lte: 60s}}]
    action: {content: express-checkout}
  - id: stuck-on-field
    when: [{absent: {event: input, after: focus, gte: 5s}}]
    action: {content: field-help}
  - id: reading-deep
    when: [{sustained: {for: 5s, when: [{scroll_depth: ">= 80%"}]}}]
    action: {content: newsletter}
"""

VOLUME = """
pack: volume
triggers:
  - id: engaged-scroller
    when: [{scroll_depth: ">= 30%"}]
    consecutive: 3
    action: {content: related}
"""

CONTEXT = """
pack: context
segments:
  mobile: {device: mobile}
  dach_evening: {country: [DE, AT, CH], local_hour: ">= 18"}
  gold: {attribute: {name: crm_tier, in: [gold, platinum]}}
triggers:
  - id: deep-scroll
    when: [{scroll_depth: {gte: 90%, by_segment: {mobile: 60%}}}]
    action: {content: deep-reader}
  - id: evening-offer
    segment: dach_evening
    on: page_view
    action: {content: evening}
  - id: gold-perk
    on: page_view
    when: [{segment: gold}, {returning: true}, {weekday: [sat, sun]}]
    action: {content: perk}
  - id: from-search
    on: page_view
    when: [{referrer: "*google.*"}]
    action: {content: search-landing}
"""

ADAPTIVE = """
pack: adaptive
segments:
  mobile: {device: mobile}
models:
  thresholds: {"tuned#0": {"*": 0.5, mobile: 0.3}}
  baselines: {scroll_velocity: {mean: 300, std: 100}}
triggers:
  - id: tuned
    when: [{scroll_depth: {gte: 0.9, mode: adaptive}}]
    action: {content: tuned}
  - id: untuned
    when: [{scroll_depth: {gte: 0.9, mode: adaptive}}]
    action: {content: untuned}
  - id: anomalous
    when: [{scroll_velocity: {gte: 500, window: 1s, mode: hybrid, z: 2}}]
    action: {content: anomalous}
"""

INTENT = """
pack: intent
models:
  intent: {bias: -4, weights: {scroll_depth: 5, pages: 1}}
triggers:
  - id: high-intent
    when: [{intent: ">= 0.7"}]
    action: {content: demo-offer}
"""

GROUPS = """
pack: groups
models:
  intent_by_trigger:
    offer-a: {bias: -1, weights: {pages: 0}}
    offer-b: {bias: 2, weights: {pages: 0}}
settings:
  max_actions: 2
triggers:
  - {id: offer-a, on: page_view, group: offers, action: {content: a, priority: 5}}
  - {id: offer-b, on: page_view, group: offers, action: {content: b, priority: 5}}
  - {id: offer-c, on: page_view, group: offers, action: {content: c, priority: 1}}
  - {id: prefetch, on: page_view, action: {content: next-step, tier: predictive}}
  - {id: banner, on: page_view, action: {content: banner, priority: 0}}
  - {id: footer, on: page_view, action: {content: footer, priority: -1}}
"""

FATIGUE = """
pack: fatigue
settings:
  fatigue: {per_session: 3, per_minute: 2, quiet_after_dismiss: 30s}
triggers:
  - id: nudge
    on: page_view
    cap: {per_page: unlimited}
    action: {content: nudge}
"""

# One `sequences:` section for the sequence tests: run here, compiled and broken in
# test_language_sequences, checked against the editor schema in test_language_schema.
CART_RECOVERY = """
sequences:
  - id: cart-recovery
    start: {type: custom, name: cart_abandon}
    exit: [{type: custom, name: purchase}]
    steps:
      - {id: reminder, after: 3s, action: {content: cart-reminder, priority: 5}}
      - id: offer
        after: 5s
        timeout: 60s
        when: [{sustained: {for: 5s, when: [{scroll_depth: "> 80%"}]}}]
        action: {content: time-limited-offer, priority: 6}
"""
SEQUENCE = "\npack: recovery" + CART_RECOVERY

JOURNEY = """
pack: journey
segments:
  mobile: {device: mobile}
triggers:
  - id: welcome
    when: [{dwell: ">= 1s"}]
    journey: {within: 120s, by_segment: {mobile: 60s}}
    action: {content: welcome}
"""

ROLLOUT = """
pack: rollout
triggers:
  - {id: half, on: page_view, rollout: 50%, salt: s1, action: {content: half}}
  - {id: held, on: page_view, holdout: 50%, salt: s2, action: {content: held}}
"""
