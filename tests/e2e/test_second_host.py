"""Second-host parity (#17): the real component, transpiled by jco and run in Node, decides
byte for byte what the wasmtime host and the native core decide, on every documented example
and a few hundred generated sessions. Needs Node and npm (jco is installed, pinned, under
build/jco/); without them these tests are skipped and say why."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cases_decisions import CHECKOUT, COOLDOWN, HOVER, MANY, PAGES, PRICING, VELOCITY
from tests.control.test_documented_examples import CASES
from tests.event_strategies import TARGETS, URLS
from tests.factories import T0, ComponentDecider, NativeDecider, snapshot_text
from tests.reference_examples import EXAMPLES, IDS

ROOT = Path(__file__).resolve().parents[2]
JCO_DIR = ROOT / "build" / "jco"
JCO_VERSION = "1.35.0"
RUNNER = Path(__file__).with_name("jco_decide.mjs")
# jco's output uses extended-const; Node 20 still has it behind a flag
NODE_FLAGS = ["--experimental-wasm-extended-const"]


def _jco() -> Path:
    """jco, installed with npm into build/jco at the pinned version (once)."""
    jco = JCO_DIR / "node_modules" / ".bin" / "jco"
    manifest = JCO_DIR / "node_modules" / "@bytecodealliance" / "jco" / "package.json"
    if manifest.exists() and json.loads(manifest.read_text())["version"] == JCO_VERSION:
        return jco
    JCO_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(JCO_DIR),
         f"@bytecodealliance/jco@{JCO_VERSION}"],
        check=False, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"second host: npm could not install jco {JCO_VERSION}: {done.stderr[-500:]}")
    return jco


@pytest.fixture(scope="module")
def node_engine(wasm_runtime: Any) -> Path:
    """The real component (build/decision-engine.wasm), transpiled for Node."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("second host: Node.js and npm are not installed here (CI machines have them)")
    wasm = ROOT / "build" / "decision-engine.wasm"
    out = JCO_DIR / "decision-engine"
    module = out / "decision-engine.js"
    if not module.exists() or module.stat().st_mtime < wasm.stat().st_mtime:
        subprocess.run([str(_jco()), "transpile", str(wasm), "-o", str(out),
                        "--name", "decision-engine"], check=True, capture_output=True, timeout=300)
        # the generated module is ESM; say so, or Node re-parses it with a warning
        (out / "package.json").write_text('{"type": "module"}\n')
    return module


def node_decide(module: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(["node", *NODE_FLAGS, str(RUNNER), str(module)],
                          input=json.dumps(cases), check=False, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def chained(snapshot: str, session: str, url: str, steps: list[tuple[list[dict], int]],
            context: dict[str, Any] | None = None) -> list[str]:
    """The envelopes of one visit, each carrying the state the native core answered before."""
    native = NativeDecider()
    native.load(snapshot)
    state, envelopes = None, []
    for events, now in steps:
        request = {"session_id": session, "now_ms": T0 + now,
                   "context": {"url": url, **(context or {})}, "events": events}
        envelope = json.dumps({"now_ms": None, "state": state, "request": request})
        envelopes.append(envelope)
        answer = native.decide(envelope)
        if answer.ok:
            state = answer.state
    return envelopes


def random_event(rng: random.Random) -> dict[str, Any]:
    at = T0 + rng.randrange(0, 20_000)
    kind = rng.choice(["page_view", "scroll", "mousemove", "hover", "click", "custom", "warp"])
    fields: dict[str, Any] = {
        "page_view": lambda: {"url": rng.choice(URLS)},
        "scroll": lambda: {"depth": round(rng.random(), 3), "y": rng.randrange(0, 5000)},
        "mousemove": lambda: {"x": rng.randrange(0, 2000), "y": rng.randrange(0, 2000)},
        "hover": lambda: {"target": rng.choice(TARGETS), "duration_ms": rng.randrange(0, 3000)},
        "click": lambda: {"target": rng.choice(TARGETS)},
        "custom": lambda: {"name": rng.choice(["cart_abandon", "add_to_cart"])},
        "warp": dict,  # not an event type: errors must agree too
    }[kind]()
    return {"type": kind, "ts_ms": at, **fields}


def random_steps(rng: random.Random) -> list[tuple[list[dict], int]]:
    return [([random_event(rng) for _ in range(rng.randrange(0, 15))], rng.randrange(0, 25_000))
            for _ in range(rng.randrange(1, 5))]


def assert_three_hosts_agree(node_engine: Path, new_instance: Any,
                             cases: list[dict[str, Any]]) -> int:
    """Native, wasmtime and Node give the same text for every load and decision."""
    in_node = node_decide(node_engine, cases)
    compared = 0
    for case, node in zip(cases, in_node, strict=True):
        native, wasmtime = NativeDecider(), ComponentDecider(new_instance())
        loads = [native.load(case["snapshot"]), wasmtime.load(case["snapshot"])]
        assert [[o.ok, o.text] for o in loads] == [node["load"]] * 2
        for envelope, got in zip(case["envelopes"], node["decisions"], strict=True):
            a, b = native.decide(envelope), wasmtime.decide(envelope)
            assert [a.ok, a.text] == [b.ok, b.text] == got, envelope
            compared += 1
    return compared


@pytest.mark.parametrize(("heading", "yaml_text"), EXAMPLES, ids=IDS)
def test_every_documented_example_decides_the_same_in_node(node_engine, new_instance,
                                                            heading, yaml_text):
    snapshot = snapshot_text(yaml_text)
    visits = []
    if heading in CASES:
        _trigger, url, context, fires, quiet = CASES[heading]
        visits += [("fires", url, context, fires), ("quiet", url, context, quiet)]
    rng = random.Random(heading)
    visits += [(f"gen-{n}", rng.choice(URLS), None, random_steps(rng)) for n in range(5)]
    envelopes = [e for session, url, context, steps in visits
                 for e in chained(snapshot, session, url, steps, context)]
    assert assert_three_hosts_agree(node_engine, new_instance,
                                    [{"snapshot": snapshot, "envelopes": envelopes}])


def test_generated_sessions_decide_the_same_in_node(node_engine, new_instance):
    snapshot = snapshot_text(PRICING, CHECKOUT, VELOCITY, HOVER, PAGES, COOLDOWN, MANY)
    rng = random.Random(17)
    envelopes = [e for n in range(300)
                 for e in chained(snapshot, f"g-{n}", rng.choice(URLS), random_steps(rng))]
    assert assert_three_hosts_agree(node_engine, new_instance,
                                    [{"snapshot": snapshot, "envelopes": envelopes}]) >= 300
