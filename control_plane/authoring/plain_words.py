"""Compiled triggers in the words a marketer wrote them: "dwell >= 3s", "scroll_depth >= 78%".

Used wherever a tool talks about triggers (diff, lint, test reports), so they all say a
threshold the same way the pack does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge_module.core.catalog import SIGNALS

from ..rulepack.vocabulary import value_kind

_UNITS = ((3_600_000, "h"), (60_000, "m"), (1000, "s"))


def duration(ms: float | None) -> str:
    """3000 -> "3s", 1500 -> "1.5s", 500 -> "500ms", 120000 -> "2m"."""
    if ms is None:
        return "none"
    if ms == 0:
        return "0s"
    for size, unit in _UNITS:
        if ms >= size and ms % size == 0:
            return f"{int(ms // size)}{unit}"
    if ms >= 1000:
        return f"{ms / 1000:g}s"
    return f"{ms:g}ms"


def number(value: float) -> str:
    return f"{value:g}"


def signal_value(signal: str, value: float, field: str | None = None) -> str:
    """A condition's value in its signal's own unit."""
    kind = value_kind(signal, field) if signal in SIGNALS else "number"
    if kind == "duration":
        return duration(value)
    if kind == "ratio":
        return f"{round(value * 100, 6):g}%"
    return number(value)


def subject(cond: Mapping[str, Any]) -> str:
    """What a condition measures: "dwell", "hover on #cta", "scroll_velocity over 2s",
    "count of click over 10s", "since custom event add_to_cart"."""
    signal = str(cond["signal"])
    text = signal
    if cond.get("field") is not None:
        text = f"{signal} {cond['field']}"
    if cond.get("event") is not None:
        joint = {"count": "of", "since": "", "absent": ""}.get(signal, "of")
        text = " ".join(w for w in (signal, joint, event(cond["event"])) if w)
    if cond.get("after") is not None:
        text += f" after {event(cond['after'])}"
    if isinstance(cond.get("target"), str):  # an element; a mapping is a recall target
        text += f" on {cond['target']}"
    if cond.get("window_ms") is not None:
        text += f" over {duration(cond['window_ms'])}"
    if cond.get("baseline") == "cohort":
        text += " (against the cohort)"
    return text


def condition(cond: Mapping[str, Any]) -> str:
    """A compiled condition as written: "dwell >= 3s", "device in [mobile, tablet]"."""
    if "context" in cond:
        return _context(cond)
    if "segment" in cond:
        return f"in segment {cond['segment']}"
    if "sustained" in cond:
        inner = cond["sustained"]
        return f"for {duration(inner['for_ms'])}: ({conditions(inner['when'])})"
    signal, field = str(cond["signal"]), cond.get("field")
    text = f"{subject(cond)} {cond['op']} {signal_value(signal, cond['value'], field)}"
    notes = [f"{seg}: {signal_value(signal, v, field)}"
             for seg, v in (cond.get("by_segment") or {}).items()]
    mode = cond.get("mode", "static")
    if mode == "adaptive":
        target = cond.get("target")
        recall = target.get("recall") if isinstance(target, dict) else None
        # the default recall target (95 %) goes without saying, as it goes unwritten
        notes.append("adaptive" if recall in (None, 0.95)
                     else f"adaptive, recall {round(recall * 100, 6):g}%")
    elif mode == "hybrid":
        notes.append(f"hybrid, z {number(cond.get('z') or 0)}")
    return text + (f" ({', '.join(notes)})" if notes else "")


def _context(cond: Mapping[str, Any]) -> str:
    name = f"attribute {cond['name']}" if cond.get("name") else str(cond["context"])
    value = cond["value"]
    if isinstance(value, list):
        shown = "[" + ", ".join(_scalar(v) for v in value) + "]"
    else:
        shown = _scalar(value)
    op = "matches" if cond["op"] == "glob" else cond["op"]
    return f"{name} {op} {shown}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return number(value)
    return str(value)


def conditions(conds: Sequence[Mapping[str, Any]]) -> str:
    return " and ".join(condition(c) for c in conds) if conds else "always"


def pages(globs: Sequence[str]) -> str:
    return "every page" if list(globs) == ["*"] else ", ".join(globs)


def event(on: Mapping[str, Any] | None) -> str:
    """The event a trigger fires on: "custom event cart_abandon", "click on #buy"."""
    if on is None:
        return "as soon as its conditions hold"
    if on.get("name") is not None:
        return f"{on['type']} event {on['name']}"
    if on.get("target") is not None:
        return f"{on['type']} on {on['target']}"
    return str(on["type"])


def trigger(trig: Mapping[str, Any]) -> str:
    """One line about a compiled trigger: "on /pricing when dwell >= 3s -> discount-nudge-10"."""
    parts = [f"on {pages(trig['pages'])}"]
    if trig.get("segment"):
        parts.append(f"for segment {trig['segment']}")
    if trig.get("on"):
        parts.append(f"at {event(trig['on'])}")
    if trig.get("when"):
        parts.append(f"when {conditions(trig['when'])}")
    return " ".join(parts) + f" -> {action(trig['action'])}"


def action(act: Mapping[str, Any]) -> str:
    """What an action delivers, and where: "discount-nudge-10", "cart-reminder (queued 3s)",
    "help-chat-offer by webhook with template sales-callback"."""
    shown = str(act["content"])
    channel = act.get("channel", "page")
    if channel != "page":  # it leaves the page: say to which receiver
        shown += f" by {channel}"
        if act.get("template") is not None:
            shown += f" with template {act['template']}"
    if act.get("tier") == "queued":
        shown += f" (queued {duration(act['delay_ms'])})"
    return shown


def sequence(seq: Mapping[str, Any]) -> str:
    """One line about a compiled sequence: "at custom event cart_abandon: 3s -> cart-reminder"."""
    steps = []
    for step in seq["steps"]:
        text = f"{duration(step['after_ms'])}"
        if step.get("when"):
            text += f" when {conditions(step['when'])}"
        steps.append(f"{text} -> {action(step['action'])}")
    tail = ""
    if seq.get("exit"):
        tail = " (ends at " + ", ".join(event(e) for e in seq["exit"]) + ")"
    return f"at {event(seq['start'])}: " + "; then ".join(steps) + tail
