"""Where a component decision's instructions go, function by function, guest included.

`loadtest.bench_instructions` counts instructions per decision; this says where they run.
The component case of that bench runs twice under valgrind's callgrind (making 0 and N
decisions after the same set-up), with wasmtime writing a perf map of the machine code it
loads (`Config.profiler = "perfmap"`: `/tmp/perf-PID.map`, one line per wasm function,
named from the component's name sections: CPython's C functions, libc's, componentize-py's
runtime). Callgrind cannot name JIT code; every instruction address it counted there is
looked up in that map. The difference of the two runs over N is one decision's cost, the
host's call and its reading of the answer included.

    python -m loadtest.guest_profile [--build build] [--decisions 300] [--top 30] [--no-epoch]

`--no-epoch` profiles code compiled without epoch interruption (the checks wasmtime puts at
every function entry and loop header so that a deadline can stop a guest): what the edge's
deadlines cost, since the checks are inline and no function carries them. The edge never
runs that way. Groups are by function name (`GROUPS`), so they are approximate where a
name does not say what a function serves.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

CHILD = "--child"
GUEST = "guest"

# First match wins; a guest function matching none is "other guest code".
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interpreter loop", ("_PyEval_EvalFrameDefault",)),
    ("marshal", ("r_*", "w_*", "marshal_*", "_PyMarshal_*", "_Py_hashtable_*")),
    ("dicts", ("*dict*", "*Dict*", "unicodekeys_*", "dictkeys_*", "insert_*")),
    ("strings, hashing", ("*nicode*", "*utf8*", "*UTF8*", "ascii_*", "memcmp", "fnv",
                          "Py_HashBuffer", "*_hash")),
    ("numbers, comparisons", ("long_*", "float_*", "PyLong*", "_PyLong*", "PyFloat*",
                              "*RichCompare*", "x_add", "x_sub", "maybe_small_long")),
    ("memory, object lifetime", ("dl*", "malloc", "free", "calloc", "realloc", "*Malloc*",
                                 "*_Free", "*Mem_*", "*dealloc*", "*Dealloc*", "*_New*",
                                 "*GC_*", "_PyFrame_*", "*Frame*")),
)

# Entry points whose inclusive cost (everything they call) is worth a line of its own.
ENTRIES = (("marshal.loads", "marshal_loads"), ("marshal.dumps", "marshal_dumps"),
           ("the export, call to return", "wit_dylib_export_call"))


@dataclass(frozen=True)
class CodeMap:
    """A wasmtime perf map: sorted (start, size, name) of the JIT code of one process."""

    starts: list[int]
    entries: list[tuple[int, int, str]]

    @classmethod
    def read(cls, path: Path) -> CodeMap:
        """Wasmtime writes most functions twice, with their own name and as
        `wasm[8]::function[4035]::NAME`: one entry per range, NAME kept. Ranges never
        overlap otherwise; if they did, an address could be given the wrong name."""
        named: dict[tuple[int, int], str] = {}
        for line in path.read_text().splitlines():
            start, size, name = line.split(" ", 2)
            key = (int(start, 16), int(size, 16))
            if name.startswith("wasm[") and name.count("::") >= 2:
                named[key] = name.split("::", 2)[2]
            else:
                named.setdefault(key, name)
        entries = sorted((start, size, name) for (start, size), name in named.items())
        for (start, size, name), (after, _, other) in zip(entries, entries[1:]):
            if after < start + size:
                raise ValueError(f"{path}: code ranges overlap ({name} and {other})")
        return cls([start for start, _, _ in entries], entries)

    def name(self, address: int) -> str | None:
        """The guest function at `address`, or None outside the JIT code."""
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0:
            return None
        start, size, name = self.entries[i]
        return name if address < start + size else None


_NAMED = re.compile(r"\((\d+)\)(?: (.*))?")


def costs(callgrind_out: Path, code: CodeMap) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """(own instructions per function, inclusive instructions per call edge) of a callgrind
    file (`--dump-instr=yes`). Functions in `code` are `guest:NAME`; the rest
    `OBJECT:NAME`. Raises ValueError if the own costs do not add up to the file's total."""
    names: dict[tuple[str, str], str] = {}
    current = {"ob": "?", "fn": "?", "cob": "?", "cfn": "?"}
    positions, ir = 1, 0  # position columns per cost line; the column of `Ir` among the costs
    address = 0
    call: tuple[str, str, int] | None = None
    skip_next = False  # the position line after `jump=` / `jcnd=` carries no cost
    total: int | None = None
    own: Counter[str] = Counter()
    edges: Counter[tuple[str, str]] = Counter()

    def where(addr: int, ob: str, fn: str) -> str:
        found = code.name(addr)
        return f"{GUEST}:{found}" if found is not None else f"{ob.rsplit('/', 1)[-1]}:{fn}"

    with open(callgrind_out, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head = line[:1]
            if head in "0123456789+-*":
                fields = line.split()
                address = _position(fields[0], address)
                if skip_next:
                    skip_next = False
                    continue
                columns = fields[positions:]
                cost = int(columns[ir]) if ir < len(columns) else 0  # trailing zeros are left out
                me = where(address, current["ob"], current["fn"])
                if call is not None:
                    cob, cfn, target = call
                    call = None
                    current["cob"] = current["ob"]  # a callee's object is named per call
                    callee = where(target, cob, cfn)
                    if callee != me:  # unnamed JIT blocks of one function call each other
                        edges[(me, callee)] += cost
                else:
                    own[me] += cost
            elif line.startswith("calls="):
                # calls=COUNT TARGET-POSITION ...: the target may be relative to the last
                # position, which it does not move
                call = (current["cob"], current["cfn"], _position(line.split()[1], address))
            elif line.startswith(("jump=", "jcnd=")):
                skip_next = True
            elif line.startswith("positions:"):
                positions = len(line.split()) - 1
            elif line.startswith("events:"):
                events = line.split()[1:]
                if "Ir" not in events:
                    raise ValueError(f"{callgrind_out}: no Ir event (events: {' '.join(events)})")
                ir = events.index("Ir")
            elif line.startswith(("summary:", "totals:")):
                values = line.split()[1:]
                total = int(values[ir]) if ir < len(values) else 0
            elif "=" in line and line[:3] in ("ob=", "fn=", "cob", "cfn", "fl=", "fi=", "fe=",
                                              "cfi", "cfl"):
                key, value = line.rstrip("\n").split("=", 1)
                space = key.removeprefix("c")[:2]
                space = "fl" if space in ("fi", "fe") else space  # one space for file names
                named = _NAMED.fullmatch(value)
                if named is not None:
                    ident, text = named.groups()
                    if text is not None:
                        names[(space, ident)] = text
                    value = names.get((space, ident), value)
                if key in current:
                    current[key] = value
                    if key == "ob":
                        current["cob"] = value
    if total is not None and sum(own.values()) != total:
        raise ValueError(f"{callgrind_out}: own costs add up to {sum(own.values())}, "
                         f"the file's total is {total}")
    return own, edges


def _position(text: str, previous: int) -> int:
    """An instruction position: absolute, `+n` / `-n` from the previous one, or `*` (same)."""
    if text == "*":
        return previous
    if text[0] == "+":
        return previous + int(text[1:], 0)
    if text[0] == "-":
        return previous - int(text[1:], 0)
    return int(text, 0)


def group_of(function: str) -> str:
    if not function.startswith(f"{GUEST}:"):
        return "host (Python, wasmtime, libc)"
    name = function.split(":", 1)[1]
    for label, patterns in GROUPS:
        if any(fnmatchcase(name, pattern) for pattern in patterns):
            return label
    return "other guest code"


def child(decisions: int, triggers: int, build: Path, epoch: bool, cache_dir: Path) -> None:
    """The component case of `loadtest.bench_instructions`, in an engine writing a perf map."""
    import wasmtime
    from wasmtime import component as wcomponent

    from edge_module.core import unpack
    from edge_module.runtime.component import ENGINE_SETTINGS, Instance, load_component
    from loadtest.bench_instructions import _case, packer

    text, parts = _case(triggers)
    packed = packer(build)(*parts)
    config = wasmtime.Config()
    config.epoch_interruption = epoch
    config.consume_fuel = ENGINE_SETTINGS["consume_fuel"]  # as the edge runs, but for epochs
    config.profiler = "perfmap"  # names the code; the compiled code is the same without it
    engine = wasmtime.Engine(config)
    component = load_component(engine, build / "decision-engine.wasm", cache_dir)
    linker = wcomponent.Linker(engine)
    linker.add_wasip2()
    inst = Instance(engine, linker, component, memory_limit=64 << 20)
    if not inst.load_snapshot(text, 10 ** 9).ok:
        raise SystemExit("the component refused the bench snapshot")
    for _ in range(decisions + 1):  # one more: the warm decision, as in the bench
        answer = inst.decide_packed(packed, 10 ** 9)
        if not answer.ok:
            raise SystemExit("the component refused the bench envelope")
        unpack(answer.text)  # the host reads every answer


def profile(decisions: int, triggers: int, build: Path, epoch: bool,
            ) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Per-decision self costs and call-edge costs: the two callgrind runs, differenced."""
    from edge_module.runtime.component import cache_key

    wasm = build / "decision-engine.wasm"
    # with the deadline checks, the code `bench_instructions` counts (and its cache)
    cache_dir = build / ("cache-valgrind" if epoch else "cache-valgrind-no-epoch")
    base = [sys.executable, "-m", "loadtest.guest_profile", CHILD, "{n}", str(triggers),
            str(build), "1" if epoch else "0", str(cache_dir)]
    if not (cache_dir / f"decision-engine-{cache_key(wasm)}.cwasm").exists():
        # compiled under valgrind once, so that no counted run compiles
        print(f"  compiling {wasm} under valgrind once (a minute or two)", flush=True)
        proc = subprocess.Popen(["valgrind", "--tool=none", "-q",
                                 *[part.format(n=0) for part in base]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate()
        Path(f"/tmp/perf-{proc.pid}.map").unlink(missing_ok=True)  # valgrind keeps the pid
        if proc.returncode != 0:
            raise SystemExit(f"valgrind compile failed:\n{(err or '').strip()[-2000:]}")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    measured = []
    with tempfile.TemporaryDirectory(prefix="guest-profile-") as tmp:
        runs: list[tuple[Path, subprocess.Popen[str]]] = []
        try:
            for n in (0, decisions):
                out = Path(tmp) / f"callgrind.{n}"
                cmd = ["valgrind", "--tool=callgrind", "-q", "--dump-instr=yes",
                       f"--callgrind-out-file={out}", *[part.format(n=n) for part in base]]
                runs.append((out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE, text=True, env=env)))
            for out, proc in runs:
                _, err = proc.communicate()
                perf_map = Path(f"/tmp/perf-{proc.pid}.map")  # wasmtime's; valgrind keeps the pid
                if proc.returncode != 0 or not out.exists() or not perf_map.exists():
                    tail = "\n".join((err or "").strip().splitlines()[-8:])
                    raise SystemExit(f"callgrind run failed:\n{tail}")
                try:
                    measured.append(costs(out, CodeMap.read(perf_map)))
                except ValueError as exc:
                    raise SystemExit(f"cannot read the profile: {exc}") from None
        finally:
            for _, proc in runs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                Path(f"/tmp/perf-{proc.pid}.map").unlink(missing_ok=True)
    (own0, edges0), (own1, edges1) = measured
    own = Counter({k: (own1.get(k, 0) - own0.get(k, 0)) / decisions
                   for k in own0.keys() | own1.keys()})
    edges = Counter({k: (edges1.get(k, 0) - edges0.get(k, 0)) / decisions
                     for k in edges0.keys() | edges1.keys()})
    return own, edges


def report(own: Counter[str], edges: Counter[tuple[str, str]], top: int) -> list[str]:
    total = sum(own.values())
    guest = sum(v for k, v in own.items() if k.startswith(f"{GUEST}:"))
    lines = [f"total            {total:>12,.0f} instructions per decision",
             f"  guest code     {guest:>12,.0f}  ({100 * guest / total:.1f} %)", "by kind:"]
    groups: Counter[str] = Counter()
    for function, value in own.items():
        groups[group_of(function)] += value
    for label, value in groups.most_common():
        lines.append(f"  {label:<30}{value:>12,.0f}  {100 * value / total:5.1f} %")
    lines.append("inclusive (the function and all it calls):")
    for label, name in ENTRIES:
        value = sum(v for (caller, callee), v in edges.items() if callee == f"{GUEST}:{name}")
        lines.append(f"  {label:<30}{value:>12,.0f}  {100 * value / total:5.1f} %")
    lines.append(f"top {top} functions (own instructions):")
    for function, value in own.most_common(top):
        lines.append(f"  {value:>10,.0f}  {100 * value / total:5.1f} %  {function}")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        n, triggers, build, epoch, cache_dir = sys.argv[2:7]
        child(int(n), int(triggers), Path(build), epoch == "1", Path(cache_dir))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--triggers", type=int, default=30)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-epoch", action="store_true",
                        help="code compiled without the deadline checks (to measure them)")
    args = parser.parse_args()
    if args.decisions < 1 or args.triggers < 1 or args.top < 0:
        parser.error("--decisions and --triggers must be 1 or more, --top 0 or more")
    if not (args.build / "decision-engine.wasm").is_file():
        parser.error(f"{args.build}: no decision-engine.wasm (a build/ folder: ./build.sh build)")
    if shutil.which("valgrind") is None:
        print("guest profile: skipped, valgrind is not installed (apt install valgrind)")
        return
    epoch = not args.no_epoch
    print(f"guest profile ({args.triggers} triggers, 20-event batch; callgrind, "
          f"{args.decisions} decisions less 0; deadline checks {'on' if epoch else 'OFF'})",
          flush=True)
    own, edges = profile(args.decisions, args.triggers, args.build.resolve(), epoch)
    print("\n".join(report(own, edges, args.top)))


if __name__ == "__main__":
    main()
