"""What changed between two versions of the rules, in plain words.

Both sides are compiled snapshots (from files, folders or published revisions), compared
trigger by trigger and sequence by sequence: "pricing-discount: dwell threshold 3s -> 5s",
then settings, segments, models and the content catalog's fields. A snapshot published
before a key existed reads as having its default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import plain_words

Trigger = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    trigger: str  # a trigger or sequence id, or "settings", "segments", "models...", "content"
    kind: str  # "added", "removed" or "changed"
    what: str  # "trigger", "sequence", "pack", "pages", "event", "condition", "content", ...
    old: Any
    new: Any
    text: str

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cap(value: int | None) -> str:
    return "none" if value is None else str(value)


def _none(value: Any) -> str:
    return "none" if value is None else str(value)


def _percent(value: float) -> str:
    return f"{plain_words.number(value)}%"


def _journey(value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "none"
    text = f"within {plain_words.duration(value['within_ms'])}"
    per = ", ".join(f"{k}: {plain_words.duration(v)}"
                    for k, v in (value.get("by_segment") or {}).items())
    return text + (f" ({per})" if per else "")


# (what, how to read it from a compiled trigger, how to say it)
_FIELDS: tuple[tuple[str, Callable[[Trigger], Any], Callable[[Any], str]], ...] = (
    ("pack", lambda t: t["pack"], str),
    ("pages", lambda t: list(t["pages"]), plain_words.pages),
    ("event", lambda t: t["on"], plain_words.event),
    ("segment", lambda t: t.get("segment"), _none),
    ("consecutive", lambda t: t.get("consecutive", 1), str),
    ("group", lambda t: t.get("group"), _none),
    ("journey", lambda t: t.get("journey"), _journey),
    ("rollout", lambda t: t.get("rollout", 100), _percent),
    ("holdout", lambda t: t.get("holdout", 0), _percent),
    # None where the trigger has no adaptive condition: the condition's change says it
    ("explore", lambda t: t.get("explore"), _percent),
    ("salt", lambda t: t.get("salt") or t["id"], str),
    ("content", lambda t: t["action"]["content"], str),
    # page actions compile without these keys: the visitor's answer, no template
    ("channel", lambda t: t["action"].get("channel", "page"), str),
    ("template", lambda t: t["action"].get("template"), _none),
    ("tier", lambda t: t["action"]["tier"], str),
    ("delay", lambda t: t["action"]["delay_ms"], plain_words.duration),
    ("priority", lambda t: t["action"]["priority"], str),
    ("per_session cap", lambda t: t["cap"]["per_session"], _cap),
    ("per_page cap", lambda t: t["cap"]["per_page"],
     lambda v: "unlimited" if v is None else str(v)),
    ("cooldown", lambda t: t["cap"]["cooldown_ms"], plain_words.duration),
)


def diff_snapshots(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every change from `old` to `new`: triggers and sequences added, removed, and what
    changed in each; then limits, fatigue, segments, models and content."""
    changes = _diff_named(old["triggers"], new["triggers"], "trigger", plain_words.trigger,
                          diff_trigger)
    changes += _diff_named(old.get("sequences") or [], new.get("sequences") or [], "sequence",
                           plain_words.sequence, diff_sequence)
    changes += _diff_settings(old, new)
    changes += _diff_table("segments", old.get("segments") or {}, new.get("segments") or {},
                           lambda conds: plain_words.conditions(conds))
    old_models, new_models = old.get("models") or {}, new.get("models") or {}
    for section in ("intent", "intent_by_trigger", "baselines", "thresholds"):
        a, b = old_models.get(section), new_models.get(section)
        if section == "intent":
            a, b = {"intent": a} if a else {}, {"intent": b} if b else {}
        changes += _diff_table(f"models.{section}", a or {}, b or {}, _model_text)
    changes += _diff_learned(old_models.get("learned") or {}, new_models.get("learned") or {})
    # A snapshot compiled without the catalog (a pack file's side) has no `content`: its
    # fields are unknown there, not gone.
    if "content" in old and "content" in new:
        changes += _diff_content(old["content"], new["content"])
    return changes


def _diff_named(old: Sequence[Trigger], new: Sequence[Trigger], what: str,
                describe: Callable[[Trigger], str],
                diff_one: Callable[[Trigger, Trigger], list[Change]]) -> list[Change]:
    before = {t["id"]: t for t in old}
    after = {t["id"]: t for t in new}
    changes: list[Change] = []
    for tid, item in after.items():
        if tid not in before:
            changes.append(Change(tid, "added", what, None, item,
                                  f"{tid}: added (pack {item['pack']}): {describe(item)}"))
        else:
            changes.extend(diff_one(before[tid], item))
    for tid, item in before.items():
        if tid not in after:
            changes.append(Change(tid, "removed", what, item, None,
                                  f"{tid}: removed (pack {item['pack']}): {describe(item)}"))
    return changes


def _numbers(table: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {plain_words.number(v)}" for k, v in table.items())


def _model_text(value: Any) -> str:
    if isinstance(value, Mapping) and "weights" in value:
        text = (f"bias {plain_words.number(value.get('bias', 0))}, "
                f"weights {_numbers(value['weights'])}")
        return text + (f", scale {_numbers(value['scale'])}" if value.get("scale") else "")
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_model_text(v)}" for k, v in value.items())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return plain_words.number(value)
    return str(value)


def _diff_table(name: str, old: Mapping[str, Any], new: Mapping[str, Any],
                say: Callable[[Any], str]) -> list[Change]:
    changes = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        kind = "added" if a is None else "removed" if b is None else "changed"
        if kind == "changed":
            text = f"{name}: {key} {say(a)} -> {say(b)}"
        else:
            text = f"{name}: {key} {kind}: {say(b if a is None else a)}"
        changes.append(Change(name, kind, key, a, b, text))
    return changes


# What a learned model scores with, part by part; its `trained` notes change no score.
_LEARNED_PARTS: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("features", lambda v: ", ".join(v) or "none"),
    ("transform", lambda v: ", ".join(f"{k} {t}" for k, t in v.items()) or "none"),
    ("mean", _numbers),
    ("scale", _numbers),
    ("weights", _numbers),
    ("bias", plain_words.number),
    ("calibration", _numbers),
)


def _or_none(say: Callable[[Any], str], value: Any) -> str:
    return "none" if value is None else say(value)  # a part an older compiler did not write


def _learned_text(model: Mapping[str, Any]) -> str:
    return "; ".join(f"{part} {say(model[part])}" for part, say in _LEARNED_PARTS
                     if part in model)


def _diff_learned(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """models.learned per model key and segment: added, removed, or which parts changed."""
    changes = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key) or {}, new.get(key) or {}
        for segment in dict.fromkeys([*before, *after]):
            a, b = before.get(segment), after.get(segment)
            name = f"models.learned: {key} ({segment})"
            if a is None or b is None:
                kind = "added" if a is None else "removed"
                text = f"{name} {kind}: {_learned_text(b if a is None else a)}"
                changes.append(Change("models.learned", kind, f"{key} {segment}", a, b, text))
                continue
            parts = [f"{part} {_or_none(say, a.get(part))} -> {_or_none(say, b.get(part))}"
                     for part, say in _LEARNED_PARTS if a.get(part) != b.get(part)]
            if parts:
                changes.append(Change("models.learned", "changed", f"{key} {segment}", a, b,
                                      f"{name}: " + "; ".join(parts)))
    return changes


def _quoted(value: Any) -> str:
    return "none" if value is None else repr(value)


def _when(when: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in when.items())


def _own_fields(variant: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's fields that differ from its id's: the snapshot holds them merged."""
    return {k: v for k, v in variant["fields"].items() if base.get(k) != v}


def _diff_content(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """The catalog's fields and variants per content id: what a renderer shows."""
    changes: list[Change] = []

    def change(kind: str, what: str, a: Any, b: Any, text: str) -> None:
        changes.append(Change("content", kind, what, a, b, f"content: {text}"))

    for cid in dict.fromkeys([*old, *new]):
        a, b = old.get(cid), new.get(cid)
        if a is None or b is None:
            kind = "added" if a is None else "removed"
            entry = b if a is None else a
            variants = ", ".join(v["name"] for v in entry["variants"]) or "none"
            change(kind, cid, a, b, f"{cid} {kind}: title {_quoted(entry['fields'].get('title'))}"
                                    f", variants {variants}")
            continue
        base_a, base_b = a["fields"], b["fields"]
        for key in dict.fromkeys([*base_a, *base_b]):
            if base_a.get(key) != base_b.get(key):
                change("changed", cid, base_a.get(key), base_b.get(key),
                       f"{cid} {key} {_quoted(base_a.get(key))} -> {_quoted(base_b.get(key))}")
        before = {v["name"]: v for v in a["variants"]}
        after = {v["name"]: v for v in b["variants"]}
        for name in dict.fromkeys([*before, *after]):
            va, vb = before.get(name), after.get(name)
            what = f"{cid} variant {name}"
            if va is None or vb is None:
                kind = "added" if va is None else "removed"
                shown = vb if va is None else va
                change(kind, what, va, vb, f"{what} {kind} (when {_when(shown['when'])})")
                continue
            if va["when"] != vb["when"]:
                change("changed", what, va["when"], vb["when"],
                       f"{what} when {_when(va['when'])} -> {_when(vb['when'])}")
            own_a, own_b = _own_fields(va, base_a), _own_fields(vb, base_b)
            for key in dict.fromkeys([*own_a, *own_b]):
                if own_a.get(key) != own_b.get(key):
                    change("changed", what, own_a.get(key), own_b.get(key),
                           f"{what} {key} {_quoted(own_a.get(key, base_a.get(key)))} -> "
                           f"{_quoted(own_b.get(key, base_b.get(key)))}")
        kept_a = [n for n in before if n in after]
        kept_b = [n for n in after if n in before]
        if kept_a != kept_b:  # among equally specific variants, the first written wins
            change("changed", f"{cid} variants", kept_a, kept_b,
                   f"{cid} variant order {', '.join(kept_a)} -> {', '.join(kept_b)}")
    return changes


def _experiment(exp: Any) -> str:
    if not exp:
        return "none"
    arms = exp.get("arms") or {}
    return (", ".join(f"{arm} {arms.get(arm, 0):g}%" for arm in ("adaptive", "static", "holdout"))
            + f" (salt {exp.get('salt')})")


def _diff_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    fatigue_default = {"per_session": None, "per_minute": None, "quiet_after_dismiss_ms": 0}
    old_limits, new_limits = old.get("limits") or {}, new.get("limits") or {}
    fields: tuple[tuple[str, Any, Any, Callable[[Any], str]], ...] = (
        ("max_actions", old_limits.get("max_actions"), new_limits.get("max_actions"), _none),
        ("max_events", old_limits.get("max_events"), new_limits.get("max_events"), _none),
        *((f"fatigue {k}", (old.get("fatigue") or fatigue_default).get(k),
           (new.get("fatigue") or fatigue_default).get(k),
           plain_words.duration if k.endswith("_ms") else _cap)
          for k in fatigue_default),
        # absent: one budget for every channel
        ("fatigue channels", (old.get("fatigue") or {}).get("channels", "shared"),
         (new.get("fatigue") or {}).get("channels", "shared"), str),
        ("experiment", old.get("experiment"), new.get("experiment"), _experiment),
        ("report_features", bool((old.get("settings") or {}).get("report_features")),
         bool((new.get("settings") or {}).get("report_features")), str),
    )
    return [Change("settings", "changed", what, a, b, f"settings: {what} {say(a)} -> {say(b)}")
            for what, a, b, say in fields if a != b]


def diff_trigger(old: Trigger, new: Trigger) -> list[Change]:
    """What changed in one trigger, field by field and condition by condition."""
    tid = new["id"]
    changes = []
    for what, read, say in _FIELDS:
        a, b = read(old), read(new)
        if a != b and not (what == "explore" and None in (a, b)):
            changes.append(Change(tid, "changed", what, a, b, f"{tid}: {what} {say(a)} -> {say(b)}"))
    changes.extend(_diff_conditions(tid, old["when"], new["when"]))
    return changes


def diff_sequence(old: Trigger, new: Trigger) -> list[Change]:
    """What changed in one sequence: its events, then step by step."""
    sid = new["id"]
    changes = []
    for what, a, b, say in (
            ("pack", old["pack"], new["pack"], str),
            ("start", old["start"], new["start"], plain_words.event),
            ("exit", old["exit"], new["exit"],
             lambda v: ", ".join(plain_words.event(e) for e in v) or "none")):
        if a != b:
            changes.append(Change(sid, "changed", what, a, b, f"{sid}: {what} {say(a)} -> {say(b)}"))
    before = {s["id"]: s for s in old["steps"]}
    after = {s["id"]: s for s in new["steps"]}
    if list(before) != list(after):
        changes.append(Change(sid, "changed", "steps", list(before), list(after),
                              f"{sid}: steps {', '.join(before)} -> {', '.join(after)}"))
    for step_id, step in after.items():
        if step_id not in before:
            continue
        name = f"{sid}/{step_id}"
        prior = before[step_id]
        for what, read, say in _STEP_FIELDS:
            a, b = read(prior), read(step)
            if a != b:
                changes.append(Change(name, "changed", what, a, b,
                                      f"{name}: {what} {say(a)} -> {say(b)}"))
        changes.extend(_diff_conditions(name, prior["when"], step["when"]))
    return changes


_STEP_FIELDS: tuple[tuple[str, Callable[[Trigger], Any], Callable[[Any], str]], ...] = (
    ("after", lambda s: s["after_ms"], plain_words.duration),
    ("timeout", lambda s: s["timeout_ms"], plain_words.duration),
    *(f for f in _FIELDS if f[0] in ("content", "channel", "template", "tier", "delay",
                                      "priority")),
)


def _subject_key(cond: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a condition tests, without its threshold: conditions with one key are compared."""
    if "signal" in cond:
        target = cond.get("target")  # an element; a mapping is a recall target (tuning)
        return ("signal", cond["signal"], cond.get("window_ms"),
                target if isinstance(target, str) else None,
                cond.get("baseline"), repr(cond.get("event")), repr(cond.get("after")),
                cond.get("field"))
    if "context" in cond:
        return ("context", cond["context"], cond.get("name"))
    return ("other", repr(_comparable(cond)))


def _comparable(cond: Mapping[str, Any]) -> Mapping[str, Any]:
    """A condition without its model key, which moves with its position in `when`."""
    if "sustained" in cond:
        inner = cond["sustained"]
        return {"sustained": {**inner, "when": [_comparable(c) for c in inner["when"]]}}
    return {k: v for k, v in cond.items() if k != "model_key"}


def _diff_conditions(tid: str, old: Sequence[Mapping[str, Any]],
                     new: Sequence[Mapping[str, Any]]) -> list[Change]:
    changes = []
    old = [_comparable(c) for c in old]
    new = [_comparable(c) for c in new]
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
                changes.append(Change(tid, "changed", "condition", dict(cond), None, text))
        for cond in b:
            if cond not in a:
                text = f"{tid}: condition added: {plain_words.condition(cond)}"
                changes.append(Change(tid, "changed", "condition", None, dict(cond), text))
    return changes


_TUNING = ("by_segment", "mode", "z", "target")  # how a threshold is chosen, besides value


def _diff_condition(tid: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    if a == b:
        return []
    if "signal" not in a:
        text = f"{tid}: condition {plain_words.condition(a)} -> {plain_words.condition(b)}"
        return [Change(tid, "changed", "condition", dict(a), dict(b), text)]
    subject = plain_words.subject(a)
    signal, field = str(a["signal"]), a.get("field")
    same_tuning = all(a.get(k) == b.get(k) for k in _TUNING)
    if a["op"] == b["op"] and a["value"] != b["value"] and same_tuning:
        text = (f"{tid}: {subject} threshold {plain_words.signal_value(signal, a['value'], field)}"
                f" -> {plain_words.signal_value(signal, b['value'], field)}")
    elif a["value"] == b["value"] and a["op"] != b["op"] and same_tuning:
        text = f"{tid}: {subject} operator {a['op']} -> {b['op']}"
    else:
        text = (f"{tid}: condition {plain_words.condition(a)} -> "
                f"{plain_words.condition(b)}")
    return [Change(tid, "changed", "condition", dict(a), dict(b), text)]
