"""Instructions per decision, natively and in the component: a figure machine noise cannot move.

Each case runs in a child process under valgrind (`cachegrind`, cache simulation off:
only instruction counts) twice, making 0 and N decisions of `loadtest.bench`'s case after
the same set-up; the difference over N is the cost of one decision, the host's packing of
the envelope included (compact events for a guest that reads them, objects for an older
one) and, for the component, the host's call (everything but the epoch ticker, which is
not started: its thread would add wake-ups). `PYTHONHASHSEED=0` keeps dict layouts, and so the counts,
the same from run to run.

Valgrind's emulated CPU offers the JIT fewer features than the real one, so the component
is compiled under valgrind once (minutes; cached in `<build>/cache-valgrind`, keyed like
the real cache) and the counts are of that machine code, not of what the host runs. Where
valgrind is missing (`apt install valgrind`) the command says so and exits 0: it is a
measurement, not a check.
"""

from __future__ import annotations

import argparse
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CHILD = "--child"
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _case(triggers: int) -> tuple[str, tuple[object, bytes, dict]]:
    """The bench case: (snapshot JSON, the envelope's parts: now_ms, state, request)."""
    from control_plane.rulepack import compile_snapshot, load_pack
    from loadtest.bench import bench_pack, envelope_for

    text = json.dumps(compile_snapshot([load_pack(bench_pack(triggers), "bench.yaml")], "b", 0))
    doc = json.loads(envelope_for(text))
    return text, (doc["now_ms"], marshal.dumps(doc["state"], 4), doc["request"])


def packer(build: Path | None) -> Callable[..., str]:
    """How the host packs an envelope for `build`'s guest (None: this checkout's core):
    with compact events where the guest reads them, objects for a guest from before."""
    from edge_module.core import pack, pack_envelope

    if build is None or (build / "guest-src" / "edge_module" / "core" / "compact.py").is_file():
        return pack_envelope
    return lambda now_ms, state, request: pack((now_ms, state, request))


def child(mode: str, decisions: int, triggers: int, build: Path | None) -> None:
    """Set up one case (native, or the component of `build`) and make `decisions` calls,
    each packing its envelope as the host does (that is the host's work per decision)."""
    if mode != "native" and not (build and (build / "decision-engine.wasm").is_file()):
        raise SystemExit(f"{build}: no decision-engine.wasm")  # before any import: seconds
    text, parts = _case(triggers)
    pack_for = packer(build if mode != "native" else None)
    if mode == "native":
        from edge_module.core import decide_packed, load_snapshot

        snap = load_snapshot(text)
        decide_packed(snap, pack_for(*parts))  # warm: the plan compiles its bucket first

        def call() -> object:
            return decide_packed(snap, pack_for(*parts))
    else:
        from wasmtime import component as wcomponent

        from edge_module.runtime.component import Instance, load_component, make_engine

        assert build is not None
        engine = make_engine()
        component = load_component(engine, build / "decision-engine.wasm",
                                   build / "cache-valgrind")
        linker = wcomponent.Linker(engine)
        linker.add_wasip2()
        inst = Instance(engine, linker, component, memory_limit=64 << 20)
        if not inst.load_snapshot(text, 10 ** 9).ok:
            raise SystemExit("the component refused the bench snapshot")
        if not inst.decide_packed(pack_for(*parts), 10 ** 9).ok:  # warm, as natively
            raise SystemExit("the component refused the bench envelope")

        def call() -> object:
            return inst.decide_packed(pack_for(*parts), 10 ** 9)
    for _ in range(decisions):
        call()


def count(mode: str, decisions: int, triggers: int, build: Path | None) -> int:
    """Instructions executed by a child process making `decisions` decisions."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, "-m", "loadtest.bench_instructions", CHILD, mode, str(decisions),
           str(triggers), str(build or "")]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"valgrind run failed ({mode}, {decisions} decisions):\n{tail}")
    return int(found.group(1).replace(",", ""))


def compile_once(build: Path) -> None:
    """Fill `<build>/cache-valgrind` (a compile under valgrind), so that no counted run
    compiles."""
    from edge_module.runtime.component import cache_key

    wasm = build / "decision-engine.wasm"
    if (build / "cache-valgrind" / f"decision-engine-{cache_key(wasm)}.cwasm").exists():
        return
    print(f"  compiling {wasm} under valgrind once (a minute or two)", flush=True)
    cmd = ["valgrind", "--tool=none", "-q", sys.executable, "-m", "loadtest.bench_instructions",
           CHILD, "component", "0", "1", str(build)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"valgrind compile failed:\n{done.stderr.strip()[-2000:]}")


def per_decision(mode: str, decisions: int, triggers: int, build: Path | None) -> float:
    if build is not None:
        compile_once(build)
    return (count(mode, decisions, triggers, build) - count(mode, 0, triggers, build)) / decisions


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        mode, decisions, triggers, build = sys.argv[2:6]
        child(mode, int(decisions), int(triggers), Path(build) if build else None)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--triggers", type=int, default=30)
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--compare", type=Path, metavar="BUILD",
                        help="another build's component (e.g. of the previous main), "
                        "counted the same way (row `base`)")
    args = parser.parse_args()
    if args.decisions < 1 or args.triggers < 1:
        parser.error("--decisions and --triggers must be 1 or more")
    for build in filter(None, (args.build, args.compare)):
        if not (build / "decision-engine.wasm").is_file():
            parser.error(f"{build}: no decision-engine.wasm (a build/ folder: ./build.sh build)")
    if shutil.which("valgrind") is None:
        print("instructions per decision: skipped, valgrind is not installed "
              "(apt install valgrind)")
        return
    rows = [("native", "native", None), ("wasm", "component", args.build)]
    if args.compare is not None:
        rows.append(("base", "component", args.compare))
    print(f"instructions per decision ({args.triggers} triggers, 20-event batch; valgrind "
          f"cachegrind, {args.decisions} decisions less 0)")
    counted: dict[str, float] = {}
    for label, mode, build in rows:
        started = time.monotonic()
        counted[label] = per_decision(mode, args.decisions, args.triggers, build)
        print(f"{label:<9}packed {counted[label]:>12,.0f}   "
              f"({time.monotonic() - started:.0f} s under valgrind)")
    print(f"  component / native: {counted['wasm'] / counted['native']:.2f}x")
    if "base" in counted:
        print(f"  component against {args.compare}: {counted['wasm'] / counted['base']:.2f}x")


if __name__ == "__main__":
    main()
