"""Checking what a trigger or a sequence step does (`action`) and how often it may (`cap`)."""

from __future__ import annotations

from edge_module.core.catalog import CHANNELS, MAX_CHANNEL_DELAY_MS, MAX_TEMPLATE, TIERS

from .checker import Checker, closest
from .source import Node, Scalar
from .validated import ActionSpec, CapSpec

ACTION_KEYS = ("content", "tier", "delay", "priority", "channel", "template")
CAP_KEYS = ("per_session", "per_page", "cooldown")
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000


class ActionChecker(Checker):
    """The checks of actions and caps, shared by triggers and sequence steps."""

    def action(self, node: Node) -> ActionSpec:
        action = self.mapping(node, "action",
                              "a mapping with content (and optionally tier, delay, priority, "
                              "channel, template)")
        if action is None:
            return ActionSpec("")
        found, _ = self.keys(action, ACTION_KEYS, ("content",), "action")
        content = (self.text(found["content"], "content", "a content id such as discount-nudge-10")
                   if "content" in found else None)
        tier = self.choice(found["tier"], "tier", TIERS) if "tier" in found else "immediate"
        delay = self.duration(found["delay"], "delay") if "delay" in found else 0
        priority = (self.integer(found["priority"], "priority", MIN_PRIORITY, MAX_PRIORITY)
                    if "priority" in found else 0)
        if tier == "queued" and delay == 0:
            where = found.get("delay") or found["tier"]
            self.report(where, "a queued action needs a delay greater than 0",
                        "a delay such as 3s, or tier: immediate")
        channel = (self.choice(found["channel"], "channel", CHANNELS) or "page"
                   if "channel" in found else "page")
        if channel != "page" and (delay or 0) > MAX_CHANNEL_DELAY_MS:
            self.report(found["delay"], f"{_article(channel)} {channel} action waits at most "
                        f"{MAX_CHANNEL_DELAY_MS // 86_400_000} days",
                        "a delay of at most 720h (30 days)")
        if channel != "page" and tier == "predictive":
            self.report(found["tier"], f"{_article(channel)} {channel} action cannot be "
                        "predictive (a hint to "
                        "prefetch is for the page)", "tier: immediate or queued")
        template = None
        if "template" in found:
            template = self.text(found["template"], "template",
                                 f"a template id of at most {MAX_TEMPLATE} characters")
            if template is not None and len(template) > MAX_TEMPLATE:
                self.report(found["template"], f"template is {len(template)} characters long",
                            f"a template id of at most {MAX_TEMPLATE} characters")
            if channel == "page":
                self.report(found["template"], "a template is for push, email or webhook "
                            "actions; the page draws the content itself",
                            "channel: push, email or webhook, or no template")
        elif channel != "page":  # (an unknown channel reads as page: reported already)
            self.report(found["channel"], f"{_article(channel)} {channel} action needs the "
                        "receiver's template", f"template: the {channel} template's id, "
                        f"such as {channel}-discount")
        where = found.get("content", action)
        return ActionSpec(content or "", tier or "immediate", delay or 0, priority or 0,
                          where.line, where.column, channel, template)

    def cap(self, node: Node) -> CapSpec:
        found = self.mapping_keys(node, "cap",
                                  "a mapping with per_session, per_page and/or cooldown", CAP_KEYS)
        if found is None:
            return CapSpec()
        per_session = (self.integer(found["per_session"], "per_session", 1, None,
                                    "an integer >= 1; leave per_session out for no limit")
                       if "per_session" in found else None)
        per_page: int | None = 1
        if "per_page" in found:
            per_page = self.per_page(found["per_page"])
        cooldown = self.duration(found["cooldown"], "cooldown") if "cooldown" in found else 0
        return CapSpec(per_session, per_page, cooldown or 0)

    def per_page(self, node: Node) -> int | None:
        expected = 'an integer >= 1, or "unlimited"'
        if isinstance(node, Scalar) and isinstance(node.value, str):
            if node.value != "unlimited":
                self.report(node, f"per_page {node.value!r} is not allowed", expected,
                            closest(node.value, ["unlimited"]))
            return None
        return self.integer(node, "per_page", 1, None, expected)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
