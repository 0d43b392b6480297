"""The diff sees every field of a snapshot that changes what a visitor or a receiver gets:
channels and templates, per-channel fatigue, learned models and the catalog's content."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from control_plane.authoring import plain_words
from control_plane.authoring.pack_diff import diff_snapshots
from control_plane.rulepack import compile_snapshot, load_pack
from control_plane.rulepack.content_catalog import parse_catalog

HELP = """
pack: help
settings:
  fatigue: {per_session: 1, channels: separate}
triggers:
  - id: help-chat
    page: /checkout
    when:
      - dwell: ">= 2m"
    action: {content: help-chat-offer, tier: queued, delay: 1s}
"""

PUSHED = HELP.replace("delay: 1s}", "delay: 1s, channel: push, template: x1}")

SEQUENCE = """
pack: cart
sequences:
  - id: cart-recovery
    start: {type: custom, name: cart_abandon}
    steps:
      - {id: reminder, after: 3s, action: {content: cart-reminder}}
"""

# Every part of a snapshot at once: settings, segments, models, a channel trigger with
# each optional key, a sequence, and (with CATALOG) content fields and variants.
EVERYTHING = """
pack: everything
settings:
  max_actions: 2
  fatigue: {per_session: 3, per_minute: 2, quiet_after_dismiss: 30s, channels: separate}
  experiment: {salt: q4, adaptive: 45%, static: 45%, holdout: 10%}
  report_features: true
segments:
  mobile: {device: mobile}
models:
  intent: {bias: -3.0, weights: {dwell: 1.2}, scale: {dwell: 10000}}
  intent_by_trigger:
    pushed: {bias: -2.0, weights: {pages: 0.5}, scale: {pages: 3}}
  baselines:
    dwell: {mean: 20s, std: 8s, by_segment: {mobile: {mean: 10s, std: 4s}}}
  thresholds:
    "pushed#1": {"*": 0.7, mobile: 0.55}
  learned:
    "pushed#1":
      mobile:
        features: [dwell_ms, depth]
        transform: {dwell_ms: log1p}
        mean: {dwell_ms: 9.2}
        scale: {dwell_ms: 1.1}
        weights: {dwell_ms: 0.8, depth: 2.1}
        bias: -3.2
        calibration: {a: 1.0, b: 0.0}
triggers:
  - id: pushed
    page: [/pricing, /plans/*]
    on: {type: click, target: "#buy"}
    segment: mobile
    when:
      - dwell: {gte: 30s, mode: hybrid}
      - intent: {gte: 0.8, mode: adaptive}
    consecutive: 2
    group: offers
    journey: {within: 120s, by_segment: {mobile: 60s}}
    rollout: 90%
    holdout: 5%
    explore: 10%
    salt: s1
    action: {content: discount-nudge-10, channel: email, template: t1, tier: queued,
             delay: 30m, priority: 3}
    cap: {per_session: 2, per_page: 1, cooldown: 10s}
sequences:
  - id: recovery
    start: {type: custom, name: cart_abandon}
    exit: [{type: custom, name: purchase}]
    steps:
      - {id: mail, after: 3s, timeout: 60s, action: {content: discount-nudge-10,
         channel: email, template: t2}}
"""

CATALOG = """
content:
  help-chat-offer: Help chat
  discount-nudge-10:
    description: 10 % off
    fields: {title: 10 % off, body: Save today., style: toast}
    variants:
      - name: mobile
        when: {device: mobile}
        fields: {style: slide-in}
      - name: de
        when: {locale: de}
        fields: {title: 10 % Rabatt}
"""


def snapshot(text: str, catalog: str | None = None) -> dict[str, Any]:
    content = None if catalog is None else parse_catalog(textwrap.dedent(catalog), "catalog.yaml")
    return compile_snapshot([load_pack(textwrap.dedent(text), "p.yaml")], "r", 0, content)


def changes(before: str, after: str, catalog_before: str | None = None,
            catalog_after: str | None = None) -> list[str]:
    return [str(c) for c in diff_snapshots(snapshot(before, catalog_before),
                                           snapshot(after, catalog_after))]


def test_a_trigger_moved_from_the_page_to_a_channel_is_a_change():
    assert changes(HELP, PUSHED) == ["help-chat: channel page -> push",
                                     "help-chat: template none -> x1"]


def test_a_changed_template_alone_is_a_change():
    assert changes(PUSHED, PUSHED.replace("template: x1", "template: x2")) == [
        "help-chat: template x1 -> x2"]


def test_a_changed_channel_of_a_sequence_step_is_a_change():
    after = SEQUENCE.replace("{content: cart-reminder}",
                             "{content: cart-reminder, channel: email, template: cart-email}")
    assert changes(SEQUENCE, after) == ["cart-recovery/reminder: channel page -> email",
                                        "cart-recovery/reminder: template none -> cart-email"]


def test_shared_and_separate_fatigue_budgets_are_a_change():
    assert changes(HELP, HELP.replace("channels: separate", "channels: shared")) == [
        "settings: fatigue channels separate -> shared"]


def test_a_channel_trigger_is_described_with_its_channel_and_template():
    [added] = [c for c in diff_snapshots(snapshot(HELP.replace("pack: help", "pack: x")
                                                  .replace("id: help-chat", "id: other")),
                                         snapshot(PUSHED)) if c.kind == "added"]
    assert added.text == ("help-chat: added (pack help): on /checkout when dwell >= 2m -> "
                          "help-chat-offer by push with template x1 (queued 1s)")


def test_a_page_action_is_described_without_a_channel():
    action = {"content": "c", "tier": "immediate", "delay_ms": 0, "priority": 0}
    assert plain_words.action(action) == "c"
    assert plain_words.action({**action, "channel": "webhook"}) == "c by webhook"


def test_a_changed_learned_model_says_which_parts_changed():
    after = EVERYTHING.replace("bias: -3.2", "bias: -3.0").replace("b: 0.0}", "b: 0.5}")
    assert changes(EVERYTHING, after) == [
        "models.learned: pushed#1 (mobile): bias -3.2 -> -3; calibration a 1, b 0 -> a 1, b 0.5"]


def test_learned_notes_alone_change_nothing_visitors_get():
    after = EVERYTHING.replace("calibration: {a: 1.0, b: 0.0}",
                               "calibration: {a: 1.0, b: 0.0}\n        trained: {rows: 9}")
    assert changes(EVERYTHING, after) == []


def test_a_changed_intent_scale_is_said():
    assert changes(EVERYTHING, EVERYTHING.replace("scale: {dwell: 10000}",
                                                  "scale: {dwell: 5000}")) == [
        "models.intent: intent bias -3, weights dwell 1.2, scale dwell 10000 -> "
        "bias -3, weights dwell 1.2, scale dwell 5000"]


def test_changed_catalog_fields_and_variants_are_said():
    after = (CATALOG.replace("title: 10 % off,", "title: 15 % off,")
             .replace("fields: {style: slide-in}", "fields: {style: banner}")
             .replace("{locale: de}", "{locale: de-AT}"))
    assert changes(EVERYTHING, EVERYTHING, CATALOG, after) == [
        "content: discount-nudge-10 title '10 % off' -> '15 % off'",
        "content: discount-nudge-10 variant mobile style 'slide-in' -> 'banner'",
        "content: discount-nudge-10 variant de when locale de -> locale de-AT",
    ]


def test_a_side_compiled_without_the_catalog_says_nothing_about_content():
    assert changes(EVERYTHING, EVERYTHING, CATALOG, None) == []


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    elif value is not None:
        yield path


def _mutated(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}-x"


# What a diff leaves out on purpose: names, bookkeeping, what is derived from other keys,
# and what changes no decision (a model key moves with its condition; `trained` notes).
_NOT_FOR_VISITORS = {"format", "revision", "created_ms", "packs", "index", "id",
                     "model_key", "trained"}


def _every_field() -> list[tuple[Any, ...]]:
    base = snapshot(EVERYTHING, CATALOG)
    return [p for p in _leaves(base) if not _NOT_FOR_VISITORS & set(map(str, p))]


@pytest.mark.parametrize("path", _every_field(), ids=lambda p: ".".join(map(str, p)))
def test_every_field_of_a_snapshot_shows_in_the_diff(path):
    before = snapshot(EVERYTHING, CATALOG)
    after = copy.deepcopy(before)
    holder = after
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = _mutated(holder[path[-1]])
    assert diff_snapshots(before, after), f"{'.'.join(map(str, path))} changed unnoticed"


def test_a_learned_part_one_side_lacks_reads_as_none():
    before = snapshot(EVERYTHING)
    after = copy.deepcopy(before)
    del before["models"]["learned"]["pushed#1"]["mobile"]["transform"]
    assert [str(c) for c in diff_snapshots(before, after)] == [
        "models.learned: pushed#1 (mobile): transform none -> dwell_ms log1p"]
