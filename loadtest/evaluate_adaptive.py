"""Do adaptive thresholds beat the static pack? `python -m loadtest.evaluate_adaptive`

The same pricing trigger twice: static (`scroll_depth >= 0.7` for every device) and
adaptive (the same condition, `mode: adaptive`). The adaptive one learns its thresholds
per device segment in a closed loop: simulated traffic -> decision log and outcomes ->
telemetry store -> recalibration -> next snapshot, a few rounds on fresh visitors each.
Both are then judged on a held-out population against the simulator's ground truth:
false triggers (fired for a low-intent visitor) and catch rate (high-intent visitors
fired for).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from control_plane.recalibration import Settings, override_models, propose
from control_plane.rulepack import compile_snapshot, load_pack_set
from control_plane.telemetry_store import TelemetryStore
from edge_module.host.decision_log import decision_record, outcome_record

from .population import SessionResult, native_decider, population, run

TRIGGER = "pricing-discount"
PACK = """\
pack: pricing-{name}
segments:
  mobile: {{device: mobile}}
  tablet: {{device: tablet}}
  desktop: {{device: desktop}}
triggers:
  - id: pricing-discount
    page: /pricing
    when:
      - dwell: ">= 3s"
      - scroll_depth: {condition}
    action: {{content: discount-nudge-10, tier: immediate, priority: 10}}
    cap: {{per_session: 1}}
"""


def compile_pack(name: str, condition: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="eval-pack-"))
    path = folder / f"{name}.yaml"
    path.write_text(PACK.format(name=name, condition=condition))
    return compile_snapshot(load_pack_set([path], check_content=False).packs, name, 0)


def collect(snapshot: dict[str, Any], visitors: list[Any], store: TelemetryStore,
            salt: str = "eval") -> list[SessionResult]:
    """Run the visitors against the snapshot; store the decision log and outcomes."""
    records: list[dict[str, Any]] = []

    def on_decision(request: dict[str, Any], response: dict[str, Any], now_ms: int) -> None:
        records.append(decision_record(request, response, now_ms, salt, "sim"))

    decide = native_decider(json.dumps(snapshot), on_decision)
    results = run(visitors, decide,
                  lambda body: records.append(outcome_record(body, body["ts_ms"], salt, "sim")),
                  TRIGGER)
    store.ingest(records)
    return results


def learn(rounds: int, per_round: int, seed: int, settings: Settings,
          data: Path) -> tuple[dict[str, Any], list[Any]]:
    """The closed loop, natively: each round's traffic tunes the next round's snapshot."""
    snapshot = compile_pack("adaptive", "{gte: 0.7, mode: adaptive}")
    history = []
    for r in range(rounds):
        store = TelemetryStore(data / f"round-{r}.sqlite3")
        collect(snapshot, population(per_round, seed + r, prefix=f"r{r}-"), store)
        thresholds, changes = propose(snapshot, store, settings)
        snapshot = override_models(snapshot, {"thresholds": thresholds})
        history.append(thresholds.get(f"{TRIGGER}#1", {}))
    return snapshot, history


def score(results: list[SessionResult], device: str | None = None) -> dict[str, Any]:
    rows = [r for r in results if device is None or r.visitor.device == device]
    fired = [r for r in rows if r.fired]
    high = [r for r in rows if r.visitor.high_intent]
    return {"sessions": len(rows), "fired": len(fired),
            "false": sum(1 for r in fired if not r.visitor.high_intent),
            "catch": sum(1 for r in high if r.fired) / len(high) if high else 1.0}


def evaluate(rounds: int = 3, per_round: int = 1500, test_size: int = 3000,
             seed: int = 11) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="eval-adaptive-"))
    adaptive, history = learn(rounds, per_round, seed, Settings(), data)
    static = compile_pack("static", '">= 70%"')
    test = population(test_size, seed + 1000, prefix="test-")
    out: dict[str, Any] = {"history": history, "rows": []}
    judged = {}
    for name, snap in (("static", static), ("adaptive", adaptive)):
        judged[name] = collect(snap, test, TelemetryStore(data / f"test-{name}.sqlite3"))
    for device in (None, "mobile", "desktop", "tablet"):
        s, a = score(judged["static"], device), score(judged["adaptive"], device)
        cut = 1 - a["false"] / s["false"] if s["false"] else 0.0
        out["rows"].append({"segment": device or "all", "static": s, "adaptive": a,
                            "false_cut": cut})
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'segment':<8} {'sessions':>8} | {'static fired':>12} {'false':>6} "
             f"{'catch':>6} | {'adaptive fired':>14} {'false':>6} {'catch':>6} | "
             f"{'false cut':>9}"]
    lines.append("-" * len(lines[0]))
    for row in result["rows"]:
        s, a = row["static"], row["adaptive"]
        lines.append(f"{row['segment']:<8} {s['sessions']:>8} | {s['fired']:>12} "
                     f"{s['false']:>6} {s['catch'] * 100:>5.1f}% | {a['fired']:>14} "
                     f"{a['false']:>6} {a['catch'] * 100:>5.1f}% | "
                     f"{row['false_cut'] * 100:>8.1f}%")
    for n, t in enumerate(result["history"], 1):
        lines.append(f"round {n} thresholds: " + ", ".join(f"{k} {v}" for k, v in t.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=1500)
    parser.add_argument("--test-size", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    result = evaluate(args.rounds, args.per_round, args.test_size, args.seed)
    print(format_table(result))
    total = result["rows"][0]
    ok = total["false_cut"] >= 0.40 and total["adaptive"]["catch"] >= 0.95
    print(f"\nfalse triggers cut by {total['false_cut'] * 100:.1f}% (target >= 40%), "
          f"high-intent caught {total['adaptive']['catch'] * 100:.1f}% (target >= 95%): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
