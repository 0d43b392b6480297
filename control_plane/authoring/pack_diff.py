"""What changed between two versions of the rules, in plain words.

Both sides are compiled snapshots (from files, folders or published revisions), compared
trigger by trigger: "pricing-discount: dwell threshold 3s -> 5s".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import plain_words

Trigger = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    trigger: str
    kind: str  # "added", "removed" or "changed"
    what: str  # "trigger", "pack", "pages", "event", "condition", "content", "tier", ...
    old: Any
    new: Any
    text: str

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cap(value: int | None) -> str:
    return "none" if value is None else str(value)


# (what, how to read it from a compiled trigger, how to say it)
_FIELDS: tuple[tuple[str, Callable[[Trigger], Any], Callable[[Any], str]], ...] = (
    ("pack", lambda t: t["pack"], str),
    ("pages", lambda t: list(t["pages"]), plain_words.pages),
    ("event", lambda t: t["on"], plain_words.event),
    ("content", lambda t: t["action"]["content"], str),
    ("tier", lambda t: t["action"]["tier"], str),
    ("delay", lambda t: t["action"]["delay_ms"], plain_words.duration),
    ("priority", lambda t: t["action"]["priority"], str),
    ("per_session cap", lambda t: t["cap"]["per_session"], _cap),
    ("per_page cap", lambda t: t["cap"]["per_page"],
     lambda v: "unlimited" if v is None else str(v)),
    ("cooldown", lambda t: t["cap"]["cooldown_ms"], plain_words.duration),
)


def diff_snapshots(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every change from `old` to `new`: triggers added, removed, and what changed in each."""
    before = {t["id"]: t for t in old["triggers"]}
    after = {t["id"]: t for t in new["triggers"]}
    changes: list[Change] = []
    for tid, trig in after.items():
        if tid not in before:
            changes.append(Change(tid, "added", "trigger", None, trig,
                                  f"{tid}: added (pack {trig['pack']}): "
                                  f"{plain_words.trigger(trig)}"))
        else:
            changes.extend(diff_trigger(before[tid], trig))
    for tid, trig in before.items():
        if tid not in after:
            changes.append(Change(tid, "removed", "trigger", trig, None,
                                  f"{tid}: removed (pack {trig['pack']}): "
                                  f"{plain_words.trigger(trig)}"))
    return changes


def diff_trigger(old: Trigger, new: Trigger) -> list[Change]:
    """What changed in one trigger, field by field and condition by condition."""
    tid = new["id"]
    changes = []
    for what, read, say in _FIELDS:
        a, b = read(old), read(new)
        if a != b:
            changes.append(Change(tid, "changed", what, a, b, f"{tid}: {what} {say(a)} -> {say(b)}"))
    changes.extend(_diff_conditions(tid, old["when"], new["when"]))
    return changes


def _subject_key(cond: Mapping[str, Any]) -> tuple[Any, ...]:
    return cond["signal"], cond.get("window_ms"), cond.get("target")


def _diff_conditions(tid: str, old: Sequence[Mapping[str, Any]],
                     new: Sequence[Mapping[str, Any]]) -> list[Change]:
    changes = []
    keys = list(dict.fromkeys([_subject_key(c) for c in (*old, *new)]))
    for key in keys:
        a = [c for c in old if _subject_key(c) == key]
        b = [c for c in new if _subject_key(c) == key]
        if len(a) == 1 and len(b) == 1:
            changes.extend(_diff_condition(tid, a[0], b[0]))
            continue
        # Several bounds on one quantity (a range): say which went and which came.
        for cond in a:
            if cond not in b:
                text = f"{tid}: condition removed: {plain_words.condition(cond)}"
                changes.append(Change(tid, "changed", "condition", cond, None, text))
        for cond in b:
            if cond not in a:
                text = f"{tid}: condition added: {plain_words.condition(cond)}"
                changes.append(Change(tid, "changed", "condition", None, cond, text))
    return changes


def _diff_condition(tid: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    if a["op"] == b["op"] and a["value"] == b["value"]:
        return []
    subject = plain_words.subject(a)
    signal = str(a["signal"])
    if a["op"] == b["op"]:
        text = (f"{tid}: {subject} threshold {plain_words.signal_value(signal, a['value'])} -> "
                f"{plain_words.signal_value(signal, b['value'])}")
    elif a["value"] == b["value"]:
        text = f"{tid}: {subject} operator {a['op']} -> {b['op']}"
    else:
        text = (f"{tid}: condition {plain_words.condition(a)} -> "
                f"{plain_words.condition(b)}")
    return [Change(tid, "changed", "condition", dict(a), dict(b), text)]
