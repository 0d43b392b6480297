"""`./build.sh bench`: decide latency natively and through the Wasm component.

The case: a pack of 30 triggers (a realistic mix of pages, signals and event triggers) and a
20-event batch on a session that already has history. Both paths get the same envelope
text; the component path is the host's own Instance (epoch deadline armed per call).
"""

from __future__ import annotations

import argparse
import json
import marshal
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from control_plane.rulepack import compile_snapshot, load_pack
from edge_module.core import decide_json, decide_packed, load_snapshot, pack, pack_envelope, unpack
from edge_module.replay_client import T0
from loadtest.bench_instructions import packer

SIGNALS = [
    'dwell: ">= {n}s"',
    'scroll_depth: ">= 0.{n}"',
    "scroll_velocity: {{gte: {n}00, window: 2s}}",
    'hover: {{target: "#cta-{n}", gte: {n}00ms}}',
]
BLOCK = 250
PAGES = ["/pricing", "/products/*", "/blog/*", "*", "/cart", "/checkout"]


def _page(i: int) -> str:
    """The first 30 triggers share the bench's pages; the rest are spread over a site's
    other pages (exact paths, sections, patterns), as a large pack is."""
    if i < 30:
        return PAGES[i % len(PAGES)]
    kind = i % 3
    if kind == 0:
        return f"/catalog/item-{i}"
    if kind == 1:
        return f"/section-{i % 40}/*"
    return f"/landing/*/offer-{i}"


def bench_pack(triggers: int) -> str:
    """A pack of `triggers` triggers spread over pages, conditions and event triggers."""
    lines = ["pack: bench", "triggers:"]
    for i in range(triggers):
        n = i % 9 + 1
        lines += [f"  - id: t{i:03d}", f"    page: \"{_page(i)}\""]
        if i % 5 == 4:
            lines.append("    on: {type: custom, name: " + f"evt_{i % 3}" + "}")
        lines.append("    when:")
        lines.append("      - " + SIGNALS[i % len(SIGNALS)].format(n=n))
        lines.append("      - " + SIGNALS[(i + 1) % len(SIGNALS)].format(n=n))
        lines += [f"    action: {{content: c-{i}, tier: immediate, priority: {i % 10}}}",
                  "    cap: {per_session: 1}"]
    return "\n".join(lines) + "\n"


def batch(start: int) -> list[dict]:
    """20 events: scrolls, mouse moves, a hover, a click and a custom event."""
    events: list[dict] = []
    for i in range(20):
        ts = T0 + start + i * 50
        kind = i % 5
        if kind in (0, 1):
            events.append({"type": "scroll", "ts_ms": ts, "depth": min(1.0, 0.02 * i), "y": 40 * i})
        elif kind == 2:
            events.append({"type": "mousemove", "ts_ms": ts, "x": 10 * i, "y": 5 * i})
        elif kind == 3:
            events.append({"type": "hover", "ts_ms": ts, "target": "#cta-1", "duration_ms": 120})
        else:
            events.append({"type": "custom", "ts_ms": ts, "name": "evt_1"})
    return events


def envelope_for(snapshot: str) -> str:
    """A steady-state envelope: the session's state after one earlier batch."""
    snap = load_snapshot(snapshot)
    first = {"session_id": "bench", "now_ms": T0 + 1000, "context": {"url": "/pricing"},
             "events": [{"type": "page_view", "ts_ms": T0, "url": "/pricing"}] + batch(0)[:5]}
    out = decide_json(snap, json.dumps({"now_ms": None, "state": None, "request": first}))
    state = out.partition("\n")[2]
    req = {"session_id": "bench", "now_ms": T0 + 2500, "context": {"url": "/pricing"},
           "events": batch(1500)}
    return '{"now_ms":null,"state":%s,"request":%s}' % (state, json.dumps(req))


def measure(cases: dict[str, Callable[[], object]], iterations: int) -> dict[str, list[float]]:
    """Latency samples (us) per case, in alternating blocks of 250 calls: each block runs
    warm, and machine noise (a shared VM) spreads over every case alike."""
    for call in cases.values():
        for _ in range(min(200, iterations)):
            call()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter_ns
    for _ in range(max(1, iterations // BLOCK)):
        for name, call in cases.items():
            out = samples[name]
            for _ in range(BLOCK):
                t = clock()
                call()
                out.append((clock() - t) / 1000)
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--triggers", type=int, nargs="+", default=[30, 500])
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--compare", type=Path, metavar="BUILD",
                        help="another build's component (a build/ directory, e.g. of the "
                        "previous main), measured in the same run, in alternating blocks "
                        "(rows `base`)")
    args = parser.parse_args()
    if args.iterations < 1 or min(args.triggers) < 1:
        parser.error("--iterations and --triggers must be 1 or more")
    for build in filter(None, (args.build, args.compare)):
        if not (build / "decision-engine.wasm").is_file():
            parser.error(f"{build}: no decision-engine.wasm (a build/ folder: ./build.sh build)")

    from wasmtime import component as wcomponent

    from edge_module.runtime.component import EpochTicker, Instance, load_component, make_engine

    engine = make_engine()
    component = load_component(engine, args.build / "decision-engine.wasm", args.build / "cache")
    base = None if args.compare is None else \
        load_component(engine, args.compare / "decision-engine.wasm", args.compare / "cache")
    linker = wcomponent.Linker(engine)
    linker.add_wasip2()
    ticker = EpochTicker(engine)
    ticker.start()

    print(f"machine: {platform.processor() or platform.machine()}, {_cpus()} cores, "
          f"Python {platform.python_version()}, {_cpu_model()}")
    cases: dict[str, Callable[[], object]] = {}
    state_bytes = {}
    for count in args.triggers:
        text = json.dumps(compile_snapshot([load_pack(bench_pack(count), "bench.yaml")], "b", 0))
        env = envelope_for(text)
        snap = load_snapshot(text)
        inst = Instance(engine, linker, component, memory_limit=64 << 20)
        assert inst.load_snapshot(text, 5000).ok
        native_out = decide_json(snap, env)
        result = inst.decide_json(env, 1000)
        assert result.ok and result.text == native_out, "native and component disagree"
        doc = json.loads(env)
        parts = (doc["now_ms"], marshal.dumps(doc["state"], 4), doc["request"])
        packed = pack_envelope(*parts)  # as the edge host packs it: events compact
        result = inst.decide_packed(packed, 1000)
        assert result.ok and unpack(result.text) == unpack(decide_packed(snap, packed))
        state_bytes[count] = len(native_out.partition("\n")[2])
        cases[f"{count}|native   JSON"] = partial(decide_json, snap, env)
        cases[f"{count}|native   packed"] = partial(decide_packed, snap, packed)
        cases[f"{count}|wasm     JSON"] = partial(inst.decide_json, env, 1000)
        cases[f"{count}|wasm     packed"] = partial(inst.decide_packed, packed, 1000)
        # the host's own work: packing the envelope, events compact and as objects
        cases[f"{count}|host     pack compact"] = partial(pack_envelope, *parts)
        cases[f"{count}|host     pack objects"] = partial(pack, parts)
        if base is not None:
            other = Instance(engine, linker, base, memory_limit=64 << 20)
            assert other.load_snapshot(text, 5000).ok
            base_packed = packer(args.compare)(*parts)  # objects for a guest from before
            result = other.decide_packed(base_packed, 1000)
            assert result.ok and unpack(result.text)[0] == unpack(decide_packed(snap, packed))[0]
            cases[f"{count}|base     packed"] = partial(other.decide_packed, base_packed, 1000)
    samples = measure(cases, args.iterations)  # every case in one run: ratios are fair
    print(f"{'case':<34}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}")
    p50: dict[str, float] = {}
    for count in args.triggers:
        print(f"-- {count} triggers, 20-event batch "
              f"(session state {state_bytes[count]} bytes as JSON)")
        for key, values in samples.items():
            n, label = key.split("|")
            if int(n) != count:
                continue
            p50[key] = pct(values, .5)
            print(f"{label:<34}{p50[key]:>10.1f}{pct(values, .99):>10.1f}"
                  f"{statistics.fmean(values):>10.1f}")
        print(f"  component / native p50 ratio: JSON "
              f"{p50[f'{count}|wasm     JSON'] / p50[f'{count}|native   JSON']:.2f}x, packed "
              f"{p50[f'{count}|wasm     packed'] / p50[f'{count}|native   packed']:.2f}x")
        if base is not None:
            print(f"  component p50 (packed) against {args.compare}: "
                  f"{p50[f'{count}|wasm     packed'] / p50[f'{count}|base     packed']:.2f}x")
            # the host's packing counted too, each build's own kind
            own = "compact" if packer(args.compare) is pack_envelope else "objects"
            ours = p50[f"{count}|wasm     packed"] + p50[f"{count}|host     pack compact"]
            theirs = p50[f"{count}|base     packed"] + p50[f"{count}|host     pack {own}"]
            print(f"  component + host packing p50 against {args.compare}: "
                  f"{ours / theirs:.2f}x")
    if len(args.triggers) > 1:
        small, large = min(args.triggers), max(args.triggers)
        print(f"  component p50 (packed), {large} vs {small} triggers: "
              f"{p50[f'{large}|wasm     packed'] / p50[f'{small}|wasm     packed']:.2f}x")
    ticker.stop()


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
