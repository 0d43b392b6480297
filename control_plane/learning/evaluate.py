"""An honest evaluation of the learning loop: `trigger-engine evaluate`.

The real loop, offline: the packs are published into a temporary edge store (signed with a
temporary key); each training file is one hour of traffic whose sessions are replayed
through the real decision core with the snapshot being served, logged by the edge's real
decision log, given outcomes drawn (seeded) from each session's probabilities, ingested
into a real telemetry store and handed to the real recalibration, which publishes the next
snapshot. The final snapshot is then judged on a held-out file against its intent labels,
next to the best per-device static (dwell, depth) thresholds a grid search finds on the
training files at the same recall target.

A session counts as fired for a trigger when the trigger is among the actions of any of its
decisions, or was withheld from it by a holdout (a holdout is a measuring device: the rule
did fire).

The session files are read by `labelled_sessions`, the static baseline is found by
`best_static`; this module is the loop and its judgement.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from edge_module.core import DecisionError, Snapshot, decide, load_snapshot
from edge_module.distribution.edge_store import EdgeStore, LocalFolderStore
from edge_module.replay_client import T0, ReplayClient
from edge_module.telemetry.decision_log import decision_record, outcome_record

from .. import config as config_module
from ..distribution import publishing
from ..distribution.keys import KeyRing
from ..distribution.manifest_trust import LEDGER_FILE, Ledger, ManifestKeys, VouchedStore
from ..rulepack import Pack, compile_snapshot
from ..telemetry.telemetry_store import TelemetryStore
from .best_static import best_static, static_pack
from .labelled_sessions import EvaluationInputError, Labelled, load_sessions

HOUR_MS = 3_600_000
START_MS = T0  # round 0's hour starts here (an hour boundary, UTC)
SALT = "evaluate"
JUDGE_PREFIX = "judge-"  # judged sessions are judge-0, judge-1... (holdout and exploration
# slices hash the session id, so a recount must use the same ids)
EDGE_ID = "evaluate"
DEFAULT_TARGET = 0.95
FIRED_REASONS = frozenset(("holdout", "experiment_holdout"))  # withheld, but it fired


def shifted(session: Labelled, session_id: str, delta: int) -> list[dict[str, Any]]:
    """The session's requests under a new id, every time moved by `delta` ms."""
    out = []
    for req in session.requests:
        moved = dict(req)
        moved["session_id"] = session_id
        moved["now_ms"] = req["now_ms"] + delta
        if "events" in req:
            moved["events"] = [{**ev, "ts_ms": ev["ts_ms"] + delta} for ev in req["events"]]
        out.append(moved)
    return out


def placements(sessions: Sequence[Labelled], hour_start: int) -> list[int]:
    """Per session, the shift that puts it inside the hour from `hour_start`, in file order
    and evenly spread (a session longer than the room left still starts in the hour)."""
    longest = max(s.last_ms - s.first_ms for s in sessions)
    room = max(0, HOUR_MS - longest - 1000)
    step = room / len(sessions)
    return [hour_start + 500 + int(i * step) - s.first_ms for i, s in enumerate(sessions)]


# --- replaying sessions through the core --------------------------------------------------

@dataclass
class Replayed:
    fired: bool  # shown, or withheld by a holdout
    shown_at: tuple[str, int] | None  # (decision id, time) of the first decision showing it
    last: tuple[str, int] | None  # (decision id, time) of the session's last decision


Log = Callable[[dict[str, Any], dict[str, Any], int], None]


def replay(snap: Snapshot, requests: list[dict[str, Any]], trigger: str, where: str,
           log: Log | None = None) -> Replayed:
    """Drive one session's requests through the decision core in order, its state carried
    between them as the edge carries it; `log(request, response, now)` sees each decision."""
    client = ReplayClient(partial(decide, snap), requests[0]["session_id"] if requests else "")
    result = Replayed(False, None, None)
    for k, req in enumerate(requests):
        now = req["now_ms"]
        try:
            response = client.send(req, now)
        except DecisionError as exc:
            raise EvaluationInputError(where, f"requests[{k}] refused by the decision core: "
                                              f"{exc.code} at {exc.field or 'the request'}: "
                                              f"{exc.message}") from None
        decision_id = f"{req['session_id']}.{k}"
        response["decision_id"] = decision_id
        response["latency_us"] = 0
        if log is not None:
            log(req, response, now)
        if any(a.get("trigger") == trigger for a in response.get("actions", ())):
            result.fired = True
            if result.shown_at is None:
                result.shown_at = (decision_id, now)
        elif any(s.get("trigger") == trigger and s.get("reason") in FIRED_REASONS
                 for s in response.get("suppressed", ())):
            result.fired = True
        result.last = (decision_id, now)
    return result


@dataclass
class Tally:
    high: int = 0
    low: int = 0
    high_fired: int = 0
    low_fired: int = 0

    def add(self, high: bool, fired: bool) -> None:
        if high:
            self.high += 1
            self.high_fired += fired
        else:
            self.low += 1
            self.low_fired += fired

    def to_dict(self) -> dict[str, Any]:
        return {"recall": round(self.high_fired / self.high, 4) if self.high else None,
                "false_triggers": self.low_fired, "high": self.high, "low": self.low}


def judge(snap: Snapshot, sessions: Sequence[Labelled], trigger: str, hour_start: int,
          prefix: str) -> tuple[Tally, dict[str, Tally]]:
    """Replay sessions through `snap` (no learning): fired counts, overall and per device."""
    total, by_device = Tally(), defaultdict(Tally)
    for i, (s, delta) in enumerate(zip(sessions, placements(sessions, hour_start))):
        fired = replay(snap, shifted(s, f"{prefix}{i}", delta), trigger, s.where).fired
        total.add(s.high, fired)
        by_device[s.device or "unknown"].add(s.high, fired)
    return total, dict(sorted(by_device.items()))


# --- the loop -------------------------------------------------------------------------------

def served_snapshot(store: EdgeStore) -> tuple[str, dict[str, Any], Snapshot]:
    found = publishing.served(store)
    assert found is not None  # published before the first round
    entry, doc = found
    return str(entry.revision), doc, load_snapshot(json.dumps(doc))


def recalibration_settings() -> Any:
    """The hourly job's settings as the control plane would use them (CONTROL_LEARN_*)."""
    from control_plane.learning.proposal import Settings

    return Settings.from_config(config_module.load())


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite numbers become null, dataclasses and tuples plain."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Hour:
    """What one hour of replayed traffic did."""

    tally: Tally
    shown: int
    impressions: int
    conversions: int
    rejected: int


def log_hour(snap: Snapshot, sessions: Sequence[Labelled], telemetry: TelemetryStore,
             trigger: str, hour: int, seed: int, prefix: str) -> Hour:
    """Replay `sessions` as new visitors spread over the hour from `hour` (ms) through
    `snap`, draw each one's conversion (seeded) from its probability as nudged or not, and
    ingest the decision log and outcomes into `telemetry`, as edges would."""
    records: list[dict[str, Any]] = []
    tally = Tally()
    shown = impressions = conversions = 0

    def log(request: dict[str, Any], response: dict[str, Any], now: int) -> None:
        records.append(decision_record(request, response, now, SALT, EDGE_ID))

    for i, (s, delta) in enumerate(zip(sessions, placements(sessions, hour))):
        sid = f"{prefix}{i}"
        done = replay(snap, shifted(s, sid, delta), trigger, s.where, log)
        tally.add(s.high, done.fired)
        rng = random.Random(f"{seed}\x1f{sid}")
        end = s.last_ms + delta
        if done.shown_at is not None:
            shown += 1
            decision_id, at = done.shown_at
            cite = {"session_id": sid, "trigger": trigger, "decision_id": decision_id}
            records.append(outcome_record({**cite, "type": "impression", "ts_ms": at}, at,
                                          SALT, EDGE_ID))
            impressions += 1
            converted = rng.random() < s.p_nudged
        else:
            last = done.last[0] if done.last else None
            cite = {"session_id": sid, **({"decision_id": last} if last else {})}
            converted = rng.random() < s.p_baseline
        if converted:
            conversions += 1
            records.append(outcome_record({**cite, "type": "conversion", "ts_ms": end + 1000},
                                          end + 1000, SALT, EDGE_ID))
    # what the ingest route hands the store (records are plain JSON values already)
    ingested = telemetry.ingest(records)
    return Hour(tally, shown, impressions, conversions, len(ingested.rejected))


def run_round(r: int, path: Path, sessions: Sequence[Labelled], store: EdgeStore,
              telemetry: TelemetryStore, signer: Any, settings: Any, trigger: str,
              seed: int) -> dict[str, Any]:
    """One hour: replay, log, draw outcomes, ingest, recalibrate."""
    from control_plane.learning.recalibration import recalibrate

    revision, _, snap = served_snapshot(store)
    hour = START_MS + r * HOUR_MS
    done = log_hour(snap, sessions, telemetry, trigger, hour, seed, f"r{r}-")
    try:
        result = recalibrate(store, telemetry, signer, settings, publish=True,
                             now_ms=hour + HOUR_MS)
        error = None
    except Exception as exc:  # noqa: BLE001 - a failing job is a finding of the run, kept
        result, error = None, f"recalibration failed: {type(exc).__name__}: {exc}"
    published = getattr(result, "published", None)
    return {"round": r + 1, "file": str(path), "revision": revision,
            "sessions": len(sessions), "shown": done.shown,
            "fired": done.tally.high_fired + done.tally.low_fired,
            "impressions": done.impressions, "conversions": done.conversions,
            **done.tally.to_dict(), "rejected_records": done.rejected,
            "published": str(published.revision) if published is not None else None,
            "changes": _plain(list(getattr(result, "changes", []))),
            "note": getattr(result, "note", None), **({"error": error} if error else {})}


def evaluate(packs: Sequence[Pack], trigger: str, train: Sequence[Path], judge_file: Path,
             rounds: int | None = None, seed: int = 0, target: float | None = None,
             snapshot_out: Path | None = None) -> dict[str, Any]:
    """The whole evaluation as one JSON-able document (see the module docstring);
    `snapshot_out` receives the final served snapshot (what was learned)."""
    if not train:
        raise EvaluationInputError("--train", "at least one training file is needed")
    if rounds is not None and rounds < 1:
        raise EvaluationInputError("--rounds", "must be at least 1")
    if target is not None and not 0.0 < target <= 1.0:
        raise EvaluationInputError("--target", "must be a recall between 0 and 1 (e.g. 0.95)")
    compiled = compile_snapshot(packs, "0", START_MS)
    trig = _trigger(compiled, trigger)
    files = {p: load_sessions(p) for p in dict.fromkeys(train)}
    judged = load_sessions(judge_file)
    target = target if target is not None else _target(trig)
    plan = [train[r % len(train)] for r in range(rounds if rounds is not None else len(train))]
    training = [s for path in dict.fromkeys(plan) for s in files[path]]
    # Everything that can refuse the input runs before the loop: the judge file's sessions
    # through the decision core (they were refused only after every round), and the
    # baseline's pack (an unusual device failed it there, naming a temporary file).
    hour = START_MS + len(plan) * HOUR_MS
    initial, _ = judge(load_snapshot(json.dumps(compiled)), judged, trigger, hour,
                       JUDGE_PREFIX)
    static = best_static(trig, training, target)
    static_snap = load_snapshot(json.dumps(compile_snapshot(
        static_pack(trig, static), "static", START_MS)))
    warnings = []
    if not any(s.high for s in training):
        warnings.append("the training files hold no high-intent session: best_static is "
                        "the strictest pair the grid has, not one chosen for recall")
    if not any(s.high for s in judged):
        warnings.append("the judge file holds no high-intent session: recall cannot be "
                        "judged")
    with tempfile.TemporaryDirectory(prefix="trigger-evaluate-") as tmp:
        root = Path(tmp)
        signer = KeyRing(root / "keys", root / "trusted-keys").ensure()
        store = VouchedStore(LocalFolderStore(root / "edge-store"),
                             ManifestKeys.of_ring(root / "keys", root / "trusted-keys"),
                             Ledger(root / LEDGER_FILE))
        telemetry = TelemetryStore(root / "telemetry.sqlite3")
        publishing.publish(store, packs, signer, now_ms=START_MS - 1)
        settings = recalibration_settings()
        history = [run_round(r, path, files[path], store, telemetry, signer, settings,
                             trigger, seed) for r, path in enumerate(plan)]
        revision, final_doc, final = served_snapshot(store)
        total, by_device = judge(final, judged, trigger, hour, JUDGE_PREFIX)
    if snapshot_out is not None:
        snapshot_out.write_text(json.dumps(final_doc, indent=1))
    s_total, s_by_device = judge(static_snap, judged, trigger, hour, JUDGE_PREFIX)
    return {
        "rounds": history,
        "judge": total.to_dict(),
        "best_static": {"thresholds": static["thresholds"], **s_total.to_dict()},
        "initial": initial.to_dict(),  # the packs as written, judged before any learning
        "warnings": warnings,
        "detail": {
            "trigger": trigger, "target_recall": target, "seed": seed,
            "final_revision": revision, "judge_file": str(judge_file),
            "final_thresholds": _plain((final_doc.get("models") or {}).get("thresholds", {})),
            "judge_by_device": {d: t.to_dict() for d, t in by_device.items()},
            "best_static_by_device": {d: t.to_dict() for d, t in s_by_device.items()},
            "best_static_training": static["training"],
        },
    }


def _trigger(snapshot: dict[str, Any], trigger: str) -> dict[str, Any]:
    for trig in snapshot.get("triggers", []):
        if trig.get("id") == trigger:
            return dict(trig)
    ids = ", ".join(sorted(t.get("id", "?") for t in snapshot.get("triggers", []))) or "none"
    raise EvaluationInputError("--trigger", f"unknown trigger {trigger!r}: the packs define "
                                            f"{ids}")


def _target(trig: dict[str, Any]) -> float:
    """The recall target of the trigger's adaptive conditions (contract D), else 95 %."""
    def walk(conds: list[dict[str, Any]]) -> Any:
        for cond in conds:
            inner = cond.get("sustained")
            found = walk(inner.get("when", [])) if isinstance(inner, dict) else None
            if found is not None:
                return found
            recall = (cond.get("target") or {}).get("recall") if isinstance(
                cond.get("target"), dict) else None
            if isinstance(recall, (int, float)) and 0 < recall <= 1:
                return float(recall)
        return None

    return walk(trig.get("when", [])) or DEFAULT_TARGET


# --- rendering ------------------------------------------------------------------------------

def _pct(x: Any) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def format_text(doc: dict[str, Any]) -> str:
    """A readable table of the rounds, the judgement and the best static thresholds."""
    out = [(f"{'round':>5} {'file':<28} {'rev':>4} {'sessions':>8} {'shown':>6} {'conv':>5} "
            f"{'recall':>7} {'false':>6} {'moved':>5} {'published':>9}")]
    for r in doc["rounds"]:
        moved = sum(1 for c in r["changes"] if c.get("new") is not None
                    and c.get("new") != c.get("old"))
        out.append(f"{r['round']:>5} {Path(r['file']).name[-28:]:<28} {r['revision']:>4} "
                   f"{r['sessions']:>8} {r['shown']:>6} {r['conversions']:>5} "
                   f"{_pct(r['recall']):>7} {r['false_triggers']:>6} {moved:>5} "
                   f"{r['published'] or '-':>9}")
    j, s = doc["judge"], doc["best_static"]
    d = doc.get("detail", {})
    out += ["", (f"judged on {d.get('judge_file', '?')} (target recall "
                 f"{_pct(d.get('target_recall'))}):"),
            f"{'':<13} {'recall':>7} {'false':>6} {'high':>6} {'low':>6}",
            (f"{'learned':<13} {_pct(j['recall']):>7} {j['false_triggers']:>6} {j['high']:>6} "
             f"{j['low']:>6}"),
            (f"{'best static':<13} {_pct(s['recall']):>7} {s['false_triggers']:>6} "
             f"{s['high']:>6} {s['low']:>6}")]
    if doc.get("initial"):
        i = doc["initial"]
        out.append(f"{'as written':<13} {_pct(i['recall']):>7} {i['false_triggers']:>6} "
                   f"{i['high']:>6} {i['low']:>6}")
    if s["false_triggers"]:
        cut = 1 - j["false_triggers"] / s["false_triggers"]
        out.append(f"false triggers vs best static: {cut * 100:.1f}% fewer" if cut >= 0 else
                   f"false triggers vs best static: {-cut * 100:.1f}% more")
    out.append("best static thresholds (per device): " + ", ".join(
        f"{k} dwell>={v['dwell_ms']}ms depth>={v['depth']}" for k, v in s["thresholds"].items()))
    out += [f"warning: {w}" for w in doc.get("warnings", [])]
    return "\n".join(out)
