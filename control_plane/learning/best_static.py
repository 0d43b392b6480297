"""The baseline `trigger-engine evaluate` compares the learning loop with: per device, the
static (dwell, depth) thresholds a grid search finds on the training sessions at a recall
target, and a pack holding them."""

from __future__ import annotations

import bisect
import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_module.core.globs import Glob
from edge_module.core.urls import url_path

from ..rulepack import Pack, load_pack_set
from ..rulepack.vocabulary import DEVICES
from .labelled_sessions import Labelled

# best_static's dwell grid (ms): fine where thresholds usually sit, coarser beyond 30 s
DWELL_GRID = (1, *range(250, 30_000, 250), *range(30_000, 120_001, 1000))


def moments(session: Labelled, pages: Sequence[Glob]) -> list[tuple[int, float]]:
    """(dwell, depth) at each request moment on one of `pages`, computed as the core
    computes them: dwell = now - page_view of the current page, depth = deepest scroll on
    that page so far."""
    out: list[tuple[int, float]] = []
    url: str | None = None
    pv = -1
    depth = 0.0
    for req in session.requests:
        events = sorted(enumerate(req.get("events") or []),
                        key=lambda item: (item[1]["ts_ms"], item[0]))
        ctx = req.get("context")
        ctx_url = ctx.get("url") if type(ctx) is dict and type(ctx.get("url")) is str else None
        now = max(req["now_ms"], events[-1][1]["ts_ms"]) if events else req["now_ms"]
        if url is None and not (events and events[0][1].get("type") == "page_view"):
            url, pv, depth = url_path(ctx_url or "/"), (events[0][1]["ts_ms"] if events
                                                        else now), 0.0
        for _, ev in events:
            kind = ev.get("type")
            if kind == "page_view" and ev["ts_ms"] >= pv:
                page_url = ev.get("url")
                url = url_path(page_url if type(page_url) is str else ctx_url or "/")
                pv, depth = ev["ts_ms"], 0.0
            elif kind == "scroll":
                d = ev.get("depth")
                if type(d) in (int, float) and d > depth:
                    depth = float(d)
        if url is not None and any(g.match(url) for g in pages):
            out.append((now - pv, depth))
    return out


def _reach(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """Sorted dwells and, per position, the deepest depth at that dwell or longer."""
    points = sorted(points)
    dwells = [d for d, _ in points]
    suffix = [0.0] * len(points)
    best = -1.0
    for i in range(len(points) - 1, -1, -1):
        best = max(best, points[i][1])
        suffix[i] = best
    return dwells, suffix


def grid_search(group: list[tuple[bool, tuple[list[int], list[float]]]], target: float
                ) -> dict[str, Any]:
    """The (dwell, depth) pair firing for the fewest low-intent sessions among those that
    fire for at least `target` of the high-intent ones (a session fires for (a, b) when at
    some moment dwell >= a and depth >= b)."""
    highs = [r for h, r in group if h]
    lows = [r for h, r in group if not h]
    if not highs:  # nothing to protect: the pair that fires least
        a, b = DWELL_GRID[-1], 1.0
        return _pick(a, b, highs, lows, True)
    need = max(1, math.ceil(target * len(highs) - 1e-9))
    best: tuple[int, int] | None = None  # (low fired, -high fired)
    chosen = None
    for a in DWELL_GRID:
        high_d = sorted((_deepest(r, a) for r in highs), reverse=True)
        b = high_d[need - 1]  # the deepest depth that still keeps `need` of them
        if b < 0:
            break  # too few high-intent sessions stay this long: longer a cannot do better
        key = (sum(1 for r in lows if _deepest(r, a) >= b), -sum(1 for x in high_d if x >= b))
        if best is None or key < best:
            best, chosen = key, (a, b)
    if chosen is None:  # the target is out of reach: the pair that catches most
        return _pick(DWELL_GRID[0], 0.0, highs, lows, False)
    return _pick(chosen[0], chosen[1], highs, lows, True)


def _deepest(reach: tuple[list[int], list[float]], a: int) -> float:
    dwells, suffix = reach
    i = bisect.bisect_left(dwells, a)
    return suffix[i] if i < len(dwells) else -1.0


def _pick(a: int, b: float, highs: list[Any], lows: list[Any], reached: bool
          ) -> dict[str, Any]:
    high_fired = sum(1 for r in highs if _deepest(r, a) >= b)
    return {"dwell_ms": a, "depth": b, "reached": reached,
            "recall": round(high_fired / len(highs), 4) if highs else None,
            "false_triggers": sum(1 for r in lows if _deepest(r, a) >= b),
            "high": len(highs), "low": len(lows)}


def best_static(trig: dict[str, Any], sessions: Sequence[Labelled], target: float
                ) -> dict[str, Any]:
    """Per device the rule language names (and "*" for every session: other devices use
    it), the grid search's pair on the training sessions; `training` holds what each pair
    does there. "Mobile" or "toaster" in a file failed the baseline's pack after the whole
    loop had run."""
    pages = [Glob(p) for p in (trig.get("pages") or ["*"])]
    groups: dict[str, list[tuple[bool, Any]]] = defaultdict(list)
    everyone: list[tuple[bool, Any]] = []
    for s in sessions:
        entry = (s.high, _reach(moments(s, pages)))
        everyone.append(entry)
        if s.device in DEVICES:  # a device the rule language names: others count under "*"
            groups[s.device].append(entry)
    found = {device: grid_search(group, target) for device, group in sorted(groups.items())}
    found["*"] = grid_search(everyone, target)
    return {"thresholds": {d: {"dwell_ms": f["dwell_ms"], "depth": f["depth"]}
                           for d, f in found.items()},
            "training": found}


def _segment_name(device: str) -> str | None:
    name = "device_" + "".join(c if c.isalnum() else "_" for c in device.lower())
    return name if len(device) <= 64 and device.replace("-", "").replace("_", "").isalnum() \
        else None


def static_pack(trig: dict[str, Any], static: dict[str, Any]) -> list[Pack]:
    """A pack holding only the trigger with the static per-device thresholds (segments by
    device + by_segment), compiled by the real compiler."""

    thresholds = static["thresholds"]
    default = thresholds["*"]
    devices = {d: _segment_name(d) for d in thresholds if d != "*"}
    lines = ["pack: evaluate-best-static"]
    if devices:
        lines.append("segments:")
        lines += [f"  {name}: {{device: {json.dumps(d)}}}" for d, name in devices.items()]
    dwell = ", ".join(f"{name}: {max(1, thresholds[d]['dwell_ms'])}ms"
                      for d, name in devices.items())
    depth = ", ".join(f"{name}: {thresholds[d]['depth']!r}" for d, name in devices.items())
    action = trig.get("action") or {}
    lines += [
        "triggers:",
        f"  - id: {json.dumps(trig['id'])}",
        f"    page: {json.dumps(list(trig.get('pages') or ['*']))}",
        "    when:",
        (f"      - dwell: {{gte: {max(1, default['dwell_ms'])}ms"
         + (f", by_segment: {{{dwell}}}" if devices else "") + "}"),
        (f"      - scroll_depth: {{gte: {default['depth']!r}"
         + (f", by_segment: {{{depth}}}" if devices else "") + "}"),
        (f"    action: {{content: {json.dumps(action.get('content', 'nudge'))}, "
         "tier: immediate}"),
        "    cap: {per_session: 1}",
    ]
    with tempfile.TemporaryDirectory(prefix="trigger-evaluate-static-") as tmp:
        path = Path(tmp) / "best-static.yaml"
        path.write_text("\n".join(lines) + "\n")
        return list(load_pack_set([path], None, check_content=False).packs)

