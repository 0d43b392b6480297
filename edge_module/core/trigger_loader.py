"""Loading a snapshot's triggers and sequences: their conditions built for the evaluator,
and what a session must keep track of for them (events, windows, mouse and form data)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from .catalog import (
    AGGREGATE_FIELDS,
    CHANGING,
    CHANNELS,
    CONTEXT_FIELDS,
    CONTEXT_OPERATORS,
    DEFAULT_ENTROPY_WINDOW_MS,
    DEFAULT_VELOCITY_WINDOW_MS,
    EVENT_TYPES,
    FALLING,
    MAX_CONSECUTIVE,
    MAX_TEMPLATE,
    MAX_WINDOW_MS,
    OPERATORS,
    RISING,
    SIGNALS,
    STEADY,
    TIERS,
)
from .globs import Glob
from .snapshot import (
    ABSENT,
    AVG,
    COUNT,
    FOCUS_TO_INPUT,
    INPUT_TO_SUBMIT,
    INTENT,
    MAX,
    MIN,
    MOUSE_ENTROPY,
    SCROLL_VELOCITY,
    SIGNAL_CODES,
    SINCE,
    VELOCITY_SPIKE,
    Condition,
    ContextCond,
    SegmentCond,
    Sequence,
    Step,
    Sustained,
    Trigger,
    filter_key,
    signal_conditions,
)
from .snapshot_checks import check, check_int, check_num, check_opt_str

OP_FUNCS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
DEFAULT_EXPLORE = 5.0  # percent: a trigger with adaptive conditions explores by default


def _filter(raw: Any, where: str) -> str:
    check(isinstance(raw, dict) and raw.get("type") in EVENT_TYPES,
          f"{where}: expected an event filter with a known type")
    check_opt_str(raw.get("name"), f"{where}.name")
    check_opt_str(raw.get("target"), f"{where}.target")
    return filter_key(raw)


def _motion(drift: str, op: str) -> str:
    """How a condition on a signal that drifts so moves while no event arrives."""
    if op in ("==", "!="):  # true at one moment, or false at one: either way, in time
        return CHANGING if drift in (RISING, FALLING) else drift
    if drift == RISING:
        return RISING if op in (">=", ">") else FALLING
    if drift == FALLING:
        return RISING if op in ("<", "<=") else FALLING
    return drift  # changing or steady, whatever the comparison


class TriggerLoader:
    """Builds the evaluator's structures, noting what the session must keep track of."""

    def __init__(self) -> None:
        self.tracked: dict[str, int] = {}
        self.agg_fields: dict[str, int] = {}
        self.mouse_keep = 0
        self.scroll_keep = 0
        self.forms = False
        self.segments_used: set[str] = set()
        self.next_index = 0

    def track(self, key: str, window: int) -> None:
        self.tracked[key] = max(self.tracked.get(key, 0), window)

    def conditions(self, raw: Any, where: str, prefix: str,
                   sustained: list[Sustained]) -> tuple[Any, ...]:
        check(isinstance(raw, list), f"{where}: expected a list")
        return tuple(self.condition(c, f"{where}[{i}]", f"{prefix}#{i}", sustained)
                     for i, c in enumerate(raw))

    def condition(self, raw: Any, where: str, key: str, sustained: list[Sustained]) -> Any:
        check(isinstance(raw, dict), f"{where}: expected an object")
        if "sustained" in raw:
            body = raw["sustained"]
            check(isinstance(body, dict), f"{where}.sustained: expected an object")
            inner = self.conditions(body.get("when", []), f"{where}.sustained.when", key,
                                    sustained)
            cond = Sustained(key, check_int(body.get("for_ms"), f"{where}.sustained.for_ms"), inner)
            sustained.append(cond)
            return cond
        if "context" in raw:
            return context_condition(raw, where, key)
        if "segment" in raw:
            name = raw["segment"]
            check(isinstance(name, str), f"{where}.segment: expected a segment name")
            self.segments_used.add(name)
            return SegmentCond(key, name)
        return self.signal(raw, where, key)

    def signal(self, raw: dict[str, Any], where: str, key: str) -> Condition:
        name = raw.get("signal")
        check(name in SIGNALS, f"{where}.signal: unknown signal {name!r}")
        spec, code = SIGNALS[name], SIGNAL_CODES[name]
        op = raw.get("op")
        check(op in OPERATORS, f"{where}.op: unknown operator {op!r}")
        value = check_num(raw.get("value"), f"{where}.value")
        window = raw.get("window_ms") or spec.default_window_ms or 0
        check_int(window, f"{where}.window_ms")
        check(window <= MAX_WINDOW_MS, f"{where}.window_ms: at most {MAX_WINDOW_MS}")
        check("window" not in spec.required or window > 0,
              f"{where}.window_ms: {name} needs a window")
        target = raw.get("target")
        if isinstance(target, dict):  # a recall target (only the control plane reads it)
            target = None
        cond = Condition(key, code, name, op, OP_FUNCS[op], value, window,
                         check_opt_str(target, f"{where}.target"))
        cond.motion = _motion(spec.drift, op)
        if code in (SCROLL_VELOCITY, VELOCITY_SPIKE):
            self.scroll_keep = max(self.scroll_keep, window)
        if code == VELOCITY_SPIKE:
            cond.baseline = raw.get("baseline", "session")
            check(cond.baseline in ("session", "cohort"),
                  f"{where}.baseline: expected session or cohort")
        if code == MOUSE_ENTROPY:
            self.mouse_keep = max(self.mouse_keep, window)
        if code == INTENT:
            self.mouse_keep = max(self.mouse_keep, DEFAULT_ENTROPY_WINDOW_MS)
            self.scroll_keep = max(self.scroll_keep, DEFAULT_VELOCITY_WINDOW_MS)
        if code in (FOCUS_TO_INPUT, INPUT_TO_SUBMIT):
            self.forms = True
        if code in (COUNT, SINCE, ABSENT):
            cond.event = _filter(raw.get("event"), f"{where}.event")
            self.track(cond.event, window)
        if code == ABSENT:
            cond.after = _filter(raw.get("after"), f"{where}.after")
            self.track(cond.after, 0)
        if code in (MIN, MAX, AVG):
            cond.field = raw.get("field")
            check(cond.field in AGGREGATE_FIELDS, f"{where}.field: unknown field {cond.field!r}")
            self.agg_fields[cond.field] = max(self.agg_fields.get(cond.field, 0), window)
        by_segment = raw.get("by_segment") or {}
        check(isinstance(by_segment, dict), f"{where}.by_segment: expected an object")
        cond.by_segment = tuple((str(k), check_num(v, f"{where}.by_segment.{k}"))
                                for k, v in by_segment.items())
        self.segments_used.update(k for k, _ in cond.by_segment)
        cond.mode = raw.get("mode") or "static"
        check(cond.mode in ("static", "adaptive", "hybrid"), f"{where}.mode: unknown mode")
        if cond.mode == "hybrid":
            cond.z = check_num(raw.get("z", 2.0), f"{where}.z")
        cond.model_key = check_opt_str(raw.get("model_key"), f"{where}.model_key") or key
        cond.static = not cond.by_segment and cond.mode != "adaptive"
        cond.hybrid = cond.mode == "hybrid"
        return cond


def context_condition(raw: dict[str, Any], where: str, key: str) -> ContextCond:
    fld = raw.get("context")
    check(fld in CONTEXT_FIELDS, f"{where}.context: unknown context field {fld!r}")
    op = raw.get("op")
    check(op in CONTEXT_OPERATORS, f"{where}.op: unknown operator {op!r}")
    value = raw.get("value")
    if op == "in":
        check(isinstance(value, list), f"{where}.value: `in` needs a list")
        value = frozenset(v for v in value if isinstance(v, (str, int, float, bool)))
    cond = ContextCond(key, fld, check_opt_str(raw.get("name"), f"{where}.name"), op, value)
    if op == "glob":
        check(isinstance(value, str), f"{where}.value: a glob is a string")
        cond.pattern = Glob(value, ignore_case=True)
    return cond


def _action(raw: Any, where: str) -> dict[str, Any]:
    check(isinstance(raw, dict), f"{where}: expected an object")
    check(isinstance(raw.get("content"), str), f"{where}.content: expected a string")
    check(raw.get("tier", "immediate") in TIERS, f"{where}.tier: expected one of {TIERS}")
    channel = raw.get("channel", "page")
    check(channel in CHANNELS, f"{where}.channel: expected one of {CHANNELS}")
    check(channel == "page" or raw.get("tier", "immediate") != "predictive",
          f"{where}.tier: a {channel} action cannot be predictive")
    template = check_opt_str(raw.get("template"), f"{where}.template")
    check(template is None or len(template) <= MAX_TEMPLATE,
          f"{where}.template: at most {MAX_TEMPLATE} characters")
    return raw


def load_trigger(loader: TriggerLoader, index: int, raw: Any, where: str = "") -> Trigger:
    where = where or f"triggers[{index}]"
    check(isinstance(raw, dict), f"{where}: expected an object")
    tid = raw.get("id")
    check(isinstance(tid, str) and tid != "", f"{where}.id: expected a non-empty string")
    on = raw.get("on")
    on_key = on_target = None
    if on is not None:
        check(isinstance(on, dict) and isinstance(on.get("type"), str),
              f"{where}.on: expected an object with a type")
        on_key = on["type"] if on.get("name") is None else f"{on['type']}:{on['name']}"
        on_target = on.get("target")
    sustained: list[Sustained] = []
    conditions = loader.conditions(raw.get("when", []), f"{where}.when", tid, sustained)
    action = _action(raw.get("action"), f"{where}.action")
    cap = raw.get("cap") or {}
    check(isinstance(cap, dict), f"{where}.cap: expected an object")
    per_session = cap.get("per_session")
    per_page = cap.get("per_page")
    journey = raw.get("journey")
    check(journey is None or isinstance(journey, dict), f"{where}.journey: expected an object")
    segment = check_opt_str(raw.get("segment"), f"{where}.segment")
    if segment:
        loader.segments_used.add(segment)
    journey_by_segment = tuple((str(k), check_int(v, f"{where}.journey.by_segment.{k}"))
                               for k, v in ((journey or {}).get("by_segment") or {}).items())
    loader.segments_used.update(k for k, _ in journey_by_segment)
    consecutive = check_int(raw.get("consecutive", 1), f"{where}.consecutive", 1)
    check(consecutive <= MAX_CONSECUTIVE, f"{where}.consecutive: at most {MAX_CONSECUTIVE}")
    signals = tuple(signal_conditions(conditions))
    adaptive = [c for c in signals if c.mode == "adaptive"]
    explore = raw.get("explore")
    explore = (DEFAULT_EXPLORE if adaptive else 0.0) if explore is None else \
        check_num(explore, f"{where}.explore")
    check(0 <= explore <= 100, f"{where}.explore: expected a percentage from 0 to 100")
    salt = str(raw.get("salt") or tid)
    for c in adaptive:
        c.explore, c.slice_of, c.slice_salt = float(explore), tid, salt
    return Trigger(
        index=index,
        id=tid,
        pack=str(raw.get("pack", "")),
        on_key=on_key,
        on_target=on_target,
        conditions=conditions,
        sustained=tuple(sustained),
        content=action["content"],
        tier=action.get("tier", "immediate"),
        channel=action.get("channel", "page"),
        template=action.get("template"),
        delay_ms=check_int(action.get("delay_ms", 0), f"{where}.action.delay_ms"),
        priority=check_int(action.get("priority", 0), f"{where}.action.priority", minimum=-(10**6)),
        per_session=None if per_session is None else check_int(per_session, f"{where}.cap.per_session"),
        per_page=None if per_page is None else check_int(per_page, f"{where}.cap.per_page"),
        cooldown_ms=check_int(cap.get("cooldown_ms", 0), f"{where}.cap.cooldown_ms"),
        segment=segment,
        consecutive=consecutive,
        group=check_opt_str(raw.get("group"), f"{where}.group"),
        journey_ms=None if journey is None else check_int(journey.get("within_ms"),
                                                      f"{where}.journey.within_ms"),
        journey_by_segment=journey_by_segment,
        rollout=check_num(raw.get("rollout", 100), f"{where}.rollout"),
        holdout=check_num(raw.get("holdout", 0), f"{where}.holdout"),
        salt=salt,
        timed=any(c.motion in (RISING, CHANGING) for c in conditions),
        plain=segment is None and journey is None and raw.get("rollout", 100) >= 100,
        by_motion=tuple(sorted(conditions, key=lambda c: c.motion != STEADY)),
        explore=float(explore),
        signals=signals,
        has_intent=any(c.signal == INTENT for c in signals),
    )




def load_sequence(loader: TriggerLoader, i: int, raw: Any) -> Sequence:
    where = f"sequences[{i}]"
    check(isinstance(raw, dict) and isinstance(raw.get("id"), str), f"{where}: expected an id")
    exits = raw.get("exit") or []
    check(isinstance(exits, list), f"{where}.exit: expected a list of event filters")
    steps_raw = raw.get("steps")
    check(isinstance(steps_raw, list) and steps_raw, f"{where}.steps: expected a list")
    steps = []
    for k, step in enumerate(steps_raw):
        swhere = f"{where}.steps[{k}]"
        check(isinstance(step, dict) and isinstance(step.get("id"), str), f"{swhere}: needs an id")
        as_trigger = {"id": f"{raw['id']}/{step['id']}", "pack": raw.get("pack", ""),
                      "when": step.get("when", []), "action": step.get("action"),
                      "cap": {"per_page": None}}
        timeout = step.get("timeout_ms")
        loader.next_index += 1
        steps.append(Step(step["id"], load_trigger(loader, loader.next_index, as_trigger, swhere),
                          check_int(step.get("after_ms", 0), f"{swhere}.after_ms"),
                          None if timeout is None else check_int(timeout, f"{swhere}.timeout_ms")))
    start = _filter(raw.get("start"), f"{where}.start")
    loader.track(start, 0)
    exit_keys = tuple(_filter(e, f"{where}.exit[{j}]") for j, e in enumerate(exits))
    for key in exit_keys:
        loader.track(key, 0)
    return Sequence(raw["id"], start, exit_keys, tuple(steps))
