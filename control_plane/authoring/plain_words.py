"""Compiled triggers in the words a marketer wrote them: "dwell >= 3s", "scroll_depth >= 78%".

Used wherever a tool talks about triggers (diff, lint, test reports), so they all say a
threshold the same way the pack does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge_module.core.catalog import SIGNALS

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


def signal_value(signal: str, value: float) -> str:
    """A condition's value in its signal's own unit."""
    kind = SIGNALS[signal].kind if signal in SIGNALS else "number"
    if kind == "duration":
        return duration(value)
    if kind == "ratio":
        return f"{round(value * 100, 6):g}%"
    return number(value)


def subject(cond: Mapping[str, Any]) -> str:
    """What a condition measures: "dwell", "hover on #cta", "scroll_velocity over 2s"."""
    signal = str(cond["signal"])
    if cond.get("target") is not None:
        return f"{signal} on {cond['target']}"
    if cond.get("window_ms") is not None:
        return f"{signal} over {duration(cond['window_ms'])}"
    return signal


def condition(cond: Mapping[str, Any]) -> str:
    """A compiled condition as written: "dwell >= 3s"."""
    return f"{subject(cond)} {cond['op']} {signal_value(str(cond['signal']), cond['value'])}"


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
    if trig.get("on"):
        parts.append(f"at {event(trig['on'])}")
    if trig.get("when"):
        parts.append(f"when {conditions(trig['when'])}")
    action = trig["action"]
    shown = action["content"]
    if action.get("tier") == "queued":
        shown += f" (queued {duration(action['delay_ms'])})"
    return " ".join(parts) + f" -> {shown}"
