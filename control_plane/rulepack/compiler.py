"""From validated packs to the snapshot the decision core loads (`edge_module.core.snapshot`).

The result is a plain, JSON-ready dict built in a fixed key order with sorted index lists,
so the same packs always give the same snapshot (and the same bytes once dumped).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from edge_module.core.catalog import DEFAULT_MAX_ACTIONS, DEFAULT_MAX_EVENTS, SNAPSHOT_FORMAT

from .model import ConditionSpec, Pack, TriggerSpec
from .problems import Problem, RulePackError, sort_problems


def compile_snapshot(packs: Sequence[Pack], revision: str, created_ms: int) -> dict[str, Any]:
    """The snapshot of `packs`, in order; `RulePackError` for clashes between packs."""
    if not isinstance(revision, str) or not revision:
        raise ValueError("revision must be a non-empty string")
    if type(created_ms) is not int or created_ms < 0:
        raise ValueError("created_ms must be an integer >= 0 (ms since epoch)")
    problems = cross_pack_problems(packs)
    if problems:
        raise RulePackError(problems)
    triggers: list[dict[str, Any]] = []
    buckets: dict[str, dict[str, set[int]]] = {"exact": {}, "prefix": {}, "pattern": {}}
    any_page: set[int] = set()
    for pack in packs:
        for spec in pack.triggers:
            position = len(triggers)
            triggers.append(_trigger(pack, spec))
            for glob in spec.pages:
                kind, key = page_bucket(glob)
                if kind == "any":
                    any_page.add(position)
                else:
                    buckets[kind].setdefault(key, set()).add(position)
    return {
        "format": SNAPSHOT_FORMAT,
        "revision": revision,
        "created_ms": created_ms,
        "packs": [
            {"pack": p.name, "file": p.file, "sha256": p.sha256, "triggers": len(p.triggers)}
            for p in packs
        ],
        "limits": {"max_events": DEFAULT_MAX_EVENTS, "max_actions": DEFAULT_MAX_ACTIONS},
        "triggers": triggers,
        "index": {
            "exact": {k: sorted(v) for k, v in sorted(buckets["exact"].items())},
            "prefix": [[k, sorted(v)] for k, v in sorted(buckets["prefix"].items())],
            "pattern": [[k, sorted(v)] for k, v in sorted(buckets["pattern"].items())],
            "any": sorted(any_page),
        },
    }


def cross_pack_problems(packs: Sequence[Pack]) -> list[Problem]:
    """Pack names and trigger ids used twice across `packs` (each pack is valid by itself)."""
    problems: list[Problem] = []
    pack_seen: dict[str, Pack] = {}
    trigger_seen: dict[str, tuple[Pack, TriggerSpec]] = {}
    for pack in packs:
        # Clashes are found by name, not identity: the same pack passed twice clashes too.
        if pack.name in pack_seen:
            first_pack = pack_seen[pack.name]
            problems.append(Problem(
                pack.file, pack.line, pack.column,
                f"pack name {pack.name!r} is also used by "
                f"{first_pack.file}:{first_pack.line}:{first_pack.column}",
                expected="a pack name unique across all packs",
            ))
        else:
            pack_seen[pack.name] = pack
        for spec in pack.triggers:
            if spec.id not in trigger_seen:
                trigger_seen[spec.id] = (pack, spec)
                continue
            other_pack, other = trigger_seen[spec.id]
            problems.append(Problem(
                pack.file, spec.line, spec.column,
                f"trigger id {spec.id!r} is also defined in "
                f"{other_pack.file}:{other.line}:{other.column} (pack {other_pack.name!r})",
                trigger=spec.id,
                expected="a trigger id unique across all packs",
            ))
    return sort_problems(problems)


def page_bucket(glob: str) -> tuple[str, str]:
    """Where a page glob goes in the index: ("any" | "exact" | "prefix" | "pattern", key)."""
    glob = re.sub(r"\*+", "*", glob)  # "**" means the same as "*"
    if glob == "*":
        return "any", "*"
    stars = glob.count("*")
    if stars == 0:
        return "exact", glob
    if stars == 1 and glob.endswith("*"):
        return "prefix", glob[:-1]
    return "pattern", "^" + ".*".join(re.escape(part) for part in glob.split("*")) + r"\Z"


def _trigger(pack: Pack, spec: TriggerSpec) -> dict[str, Any]:
    on = None
    if spec.on is not None:
        on = {"type": spec.on.type, "name": spec.on.name, "target": spec.on.target}
    return {
        "id": spec.id,
        "pack": pack.name,
        "pages": list(spec.pages),
        "on": on,
        "when": [_condition(c) for c in spec.when],
        "action": {
            "content": spec.action.content,
            "tier": spec.action.tier,
            "delay_ms": spec.action.delay_ms,
            "priority": spec.action.priority,
        },
        "cap": {
            "per_session": spec.cap.per_session,
            "per_page": spec.cap.per_page,
            "cooldown_ms": spec.cap.cooldown_ms,
        },
    }


def _condition(cond: ConditionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"signal": cond.signal, "op": cond.op, "value": cond.value}
    if cond.window_ms is not None:
        out["window_ms"] = cond.window_ms
    if cond.target is not None:
        out["target"] = cond.target
    return out
