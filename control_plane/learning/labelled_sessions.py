"""Labelled sessions, the input of `trigger-engine evaluate`: one JSON object a line with a
session's decide requests, its intent label and its conversion probabilities, read and
checked with file:line in every refusal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SESSION_KEYS = ("session_id", "intent", "requests", "convert_p_if_nudged",
                "convert_p_baseline")


class EvaluationInputError(Exception):
    """Input evaluate cannot use: `where` is file:line (or a name), `message` what was
    expected."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class Labelled:
    """One labelled session of a file: its requests as written, and where it was read."""

    where: str  # file:line
    high: bool
    requests: list[dict[str, Any]]
    p_nudged: float
    p_baseline: float
    device: str | None
    first_ms: int
    last_ms: int


def load_sessions(path: Path) -> list[Labelled]:
    """The labelled sessions of a JSON-lines file; `EvaluationInputError` naming file:line
    for anything that is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvaluationInputError(str(path), "no such file (expected a JSON-lines file of "
                                              "labelled sessions)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(str(path), f"cannot be read as UTF-8 text: {exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(_session(f"{path}:{number}", line))
    if not out:
        raise EvaluationInputError(str(path), "holds no sessions (expected one JSON object "
                                              "per line: " + ", ".join(SESSION_KEYS) + ")")
    return out


def _session(where: str, line: str) -> Labelled:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise EvaluationInputError(where, f"not valid JSON ({exc})") from None
    if type(doc) is not dict:
        raise EvaluationInputError(where, "expected a JSON object with keys "
                                          + ", ".join(SESSION_KEYS))
    missing = [k for k in SESSION_KEYS if k not in doc]
    if missing:
        raise EvaluationInputError(where, f"missing key(s) {', '.join(missing)} (expected "
                                          + ", ".join(SESSION_KEYS) + ")")
    if type(doc["session_id"]) is not str or not doc["session_id"]:
        raise EvaluationInputError(where, "session_id must be a non-empty string")
    if doc["intent"] not in ("high", "low"):
        raise EvaluationInputError(where, f"intent must be \"high\" or \"low\", not "
                                          f"{json.dumps(doc['intent'])[:40]}")
    probs = {}
    for key in ("convert_p_if_nudged", "convert_p_baseline"):
        p = doc[key]
        if type(p) not in (int, float) or not 0.0 <= p <= 1.0:
            raise EvaluationInputError(where, f"{key} must be a probability (a number from 0 "
                                              f"to 1), not {json.dumps(p)[:40]}")
        probs[key] = float(p)
    requests = doc["requests"]
    if type(requests) is not list or not requests:
        raise EvaluationInputError(where, "requests must be a non-empty list of decide "
                                          "requests in time order")
    times = []
    for i, req in enumerate(requests):
        if type(req) is not dict:
            raise EvaluationInputError(where, f"requests[{i}] must be a JSON object (a decide "
                                              "request)")
        now = req.get("now_ms")
        if type(now) is not int or now < 0:
            raise EvaluationInputError(where, f"requests[{i}].now_ms must be a non-negative "
                                              "integer (ms since epoch)")
        if i and now < requests[i - 1]["now_ms"]:  # a reversed session replayed silently
            raise EvaluationInputError(where, f"requests[{i}].now_ms is before "
                                              f"requests[{i - 1}]'s: requests must be in "
                                              "time order")
        events = req.get("events", [])
        if type(events) is not list:
            raise EvaluationInputError(where, f"requests[{i}].events must be a list of events")
        times.append(now)
        for j, ev in enumerate(events):
            ts = ev.get("ts_ms") if type(ev) is dict else None
            if type(ts) is not int or ts < 0:
                raise EvaluationInputError(where, f"requests[{i}].events[{j}].ts_ms must be "
                                                  "a non-negative integer (ms since epoch)")
            times.append(ts)
    ctx = requests[0].get("context")
    device = ctx.get("device") if type(ctx) is dict else None
    return Labelled(where, doc["intent"] == "high", requests, probs["convert_p_if_nudged"],
                    probs["convert_p_baseline"], device if type(device) is str else None,
                    min(times), max(times))

