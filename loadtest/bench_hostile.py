"""`python -m loadtest.bench_hostile`: the costliest batches a visitor can send, timed.

Each case is a pack a marketer would write (most from docs/rules-reference.md) and a full
batch a hostile visitor would send it (500 events: scrolls 1 ms apart, mouse moves in all
directions, clicks, mixed events, 32 page views of long paths). The figures: the decision
natively and in the component (p50 of a few calls, with a generous deadline), and how many
of 5 calls the decide deadline (EDGE_DECIDE_DEADLINE_MS, 50 ms by default) stopped.
`--compare BUILD` times another build's component beside this one (e.g. the previous
main), call by call, as `loadtest.bench` does.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from control_plane.rulepack import compile_snapshot, load_pack
from edge_module.core import decide_packed, load_snapshot, pack_envelope
from edge_module.core.errors import DecisionError
from edge_module.replay_client import T0

from .bench import bench_pack
from .bench_instructions import packer

INTENT = """models:
  intent:
    bias: -3.0
    weights: {dwell: 1.2, scroll_depth: 2.0, pages: 0.3, mouse_entropy: 1,
              scroll_velocity: 1, hover_total: 1}
    scale: {dwell: 10000}
"""


def _pack(*when: str, head: str = "", extra: str = "") -> str:
    lines = "".join(f"      - {w}\n" for w in when)
    return (f"pack: hostile\n{head}triggers:\n  - id: t\n    page: /p\n{extra}    when:\n"
            f"{lines}    action: {{content: c}}\n    cap: {{per_session: 1}}\n")


def _events(kind: str, n: int = 500) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "page_view", "ts_ms": T0, "url": "/p"}]
    for i in range(1, n):
        ts = T0 + i
        k = kind if kind != "mixed" else ("mousemove", "scroll", "hover")[i % 3]
        if k == "scroll":
            out.append({"type": "scroll", "ts_ms": ts, "depth": 1.0, "y": 1000 + i % 2})
        elif k == "mousemove":
            a = i * 2.4
            out.append({"type": "mousemove", "ts_ms": ts,
                        "x": round(500 + 100 * math.cos(a) * (i % 7 + 1), 1),
                        "y": round(500 + 100 * math.sin(a) * (i % 5 + 1), 1)})
        elif k == "hover":
            out.append({"type": "hover", "ts_ms": ts, "target": f"#t{i % 64}",
                        "duration_ms": 100})
        elif k == "click":
            out.append({"type": "click", "ts_ms": ts, "target": "#b"})
        else:  # page views of long paths, all distinct (32 at most are accepted)
            if i < (32 if kind == "pages" else n):
                out.append({"type": "page_view", "ts_ms": ts,
                            "url": "/landing/" + "\U0001f600" * 112 + f"/offer-{i}"})
            else:
                out.append({"type": "scroll", "ts_ms": ts, "depth": 0.5, "y": i})
    return out


def cases() -> list[tuple[str, str, str]]:
    """(name, pack YAML, batch kind)."""
    sustained = "sustained: {{for: 5s, when: [{}]}}".format
    return [
        ("500 events, a plain pack", _pack('dwell: ">= 100s"'), "mixed"),
        ("deep-reader (sustained velocity)",
         _pack(sustained('{scroll_depth: ">= 80%"}, {scroll_velocity: "< 200"}')), "scroll"),
        ("keeps-scrolling-fast (consecutive)",
         _pack('scroll_velocity: {gte: 1500, window: 1s}', extra="    consecutive: 3\n"),
         "scroll"),
        ("sustained mouse_entropy",
         _pack(sustained("{mouse_entropy: {gte: 0.5, window: 3s}}")), "mousemove"),
        ("sustained count",
         _pack(sustained("{count: {event: click, window: 3s, gte: 1}}")), "click"),
        ("sustained intent", _pack(sustained('{intent: ">= 0"}'), head=INTENT), "mixed"),
        ("sustained 8 entropy windows",
         _pack(sustained(", ".join(f"{{mouse_entropy: {{gte: 0, window: {w}s}}}}"
                                   for w in range(2, 10)))), "mousemove"),
        ("32 emoji page views, 500 triggers", bench_pack(500), "pages"),
        ("500 emoji page views, 500 triggers", bench_pack(500), "all pages"),
    ]


def _median_ms(call: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--compare", type=Path, metavar="BUILD")
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--deadline-ms", type=int, default=50)
    args = parser.parse_args()
    for build in filter(None, (args.build, args.compare)):
        if not (build / "decision-engine.wasm").is_file():
            parser.error(f"{build}: no decision-engine.wasm (a build/ folder: ./build.sh build)")

    from wasmtime import component as wcomponent

    from edge_module.runtime.component import (
        EpochTicker,
        GuestTrap,
        Instance,
        load_component,
        make_engine,
    )

    engine = make_engine()
    linker = wcomponent.Linker(engine)
    linker.add_wasip2()
    ticker = EpochTicker(engine)
    ticker.start()
    builds = {"wasm": args.build, **({"base": args.compare} if args.compare else {})}
    components = {k: load_component(engine, b / "decision-engine.wasm", b / "cache")
                  for k, b in builds.items()}
    print(f"{'case':<38}{'native ms':>10}" +
          "".join(f"{k + ' ms':>10}{'stopped':>9}" for k in components))
    for name, yaml_text, kind in cases():
        text = json.dumps(compile_snapshot([load_pack(yaml_text, "hostile.yaml")], "h", 0))
        snap = load_snapshot(text)
        request = {"session_id": "h", "now_ms": T0 + 500, "context": {"url": "/p"},
                   "events": _events(kind)}
        envelope = pack_envelope(None, None, request)  # as the edge host packs it
        try:
            decide_packed(snap, envelope)
            native = _median_ms(partial(decide_packed, snap, envelope), args.calls)
            row = f"{name:<38}{native:>10.1f}"
        except DecisionError as refused:  # beyond a limit of the batch: a 4xx
            row = f"{name:<38}{refused.status:>10}"
        for key, component in components.items():
            envelope = packer(builds[key])(None, None, request)  # objects for an older guest
            inst = Instance(engine, linker, component, memory_limit=64 << 20)
            assert inst.load_snapshot(text, 10_000).ok
            if not inst.decide_packed(envelope, 10_000).ok:  # refused
                row += f"{'refused':>10}{'':>9}"
                continue
            took = _median_ms(partial(inst.decide_packed, envelope, 10_000), args.calls)
            stopped = 0
            for _ in range(5):
                try:
                    inst.decide_packed(envelope, args.deadline_ms)
                except GuestTrap:
                    stopped += 1
                    inst = Instance(engine, linker, component, memory_limit=64 << 20)
                    assert inst.load_snapshot(text, 10_000).ok
            row += f"{took:>10.1f}{f'{stopped}/5':>9}"
        print(row, flush=True)
    ticker.stop()


if __name__ == "__main__":
    main()
