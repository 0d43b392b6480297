"""Running rule-pack test cases: a visitor's events replayed against the compiled packs.

The replay behaves like a real client of the edge: events that happen at the same moment
go in one request, the session's `state` is carried from one decision to the next (as the
edge host does), and between events (and after the last one, until the case's `until`)
the client calls back at `next_check_ms`, so timed triggers fire when they would in a
browser. The decision core runs natively, the same code the component runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from edge_module.core import DecisionError, Snapshot, decide, load_snapshot
from edge_module.replay_client import T0, ReplayClient, RunawaySession

from ..rulepack import (
    ContentCatalog,
    Pack,
    Problem,
    RulePackError,
    compile_snapshot,
    load_pack_set,
)
from ..rulepack.cases import (
    CaseEvent,
    ExpectedAction,
    PackCase,
    find_test_files,
    load_cases_file,
)
from . import plain_words

DEFAULT_TAIL_MS = 60_000  # how long a session goes on after its last event, unless `until`
MAX_REQUESTS = 10_000  # a case that needs more has a trigger firing in a loop
_EVENT_FIELD = re.compile(r"events\[(\d+)\]")


@dataclass(frozen=True)
class SeenAction:
    at_ms: int
    trigger: str
    content: str

    def __str__(self) -> str:
        return f"{plain_words.duration(self.at_ms):>7}  {self.trigger} -> {self.content}"


@dataclass(frozen=True)
class CaseResult:
    case: PackCase
    seen: tuple[SeenAction, ...]
    error: str | None = None  # the decision core refused a request

    @property
    def passed(self) -> bool:
        return self.error is None and all(mark == " " for mark, _ in self.comparison())

    @property
    def where(self) -> str:
        return f"{self.case.file}:{self.case.line}:{self.case.column}"

    def comparison(self) -> list[tuple[str, str]]:
        """Expected and seen actions side by side, in time order: (" " | "-" | "+", line);
        "-" was expected and not seen, "+" was seen and not expected."""
        unmatched = list(self.seen)
        rows: list[tuple[float, int, str, str]] = []
        # Expectations that name a time claim their action first; the rest take what is left.
        ordered = sorted(self.case.expect, key=lambda e: e.at_ms is None)
        for expected in ordered:
            match = next((s for s in unmatched if _matches(expected, s)), None)
            if match is None:
                at = expected.at_ms if expected.at_ms is not None else float("inf")
                rows.append((at, 1, "-", _describe_expected(expected)))
            else:
                unmatched.remove(match)
                rows.append((match.at_ms, 0, " ", str(match)))
        rows.extend((s.at_ms, 2, "+", str(s)) for s in unmatched)
        rows.sort(key=lambda r: (r[0], r[1]))
        return [(mark, text) for _, _, mark, text in rows]

    def explain(self) -> str:
        """Why the case failed, as the lines the CLI and pytest print."""
        if self.error is not None:
            return f"  {self.error}"
        lines = ["  actions (- expected, not seen; + seen, not expected):"]
        lines += [f"    {mark} {text}" for mark, text in self.comparison()]
        if len(lines) == 1:
            lines.append("      (none)")
        return "\n".join(lines)


def _matches(expected: ExpectedAction, seen: SeenAction) -> bool:
    return (expected.trigger == seen.trigger
            and (expected.content is None or expected.content == seen.content)
            and (expected.at_ms is None or expected.at_ms == seen.at_ms))


def _describe_expected(expected: ExpectedAction) -> str:
    at = "any time" if expected.at_ms is None else plain_words.duration(expected.at_ms)
    return f"{at:>7}  {expected.trigger} -> {expected.content or '(any content)'}"


@dataclass(frozen=True)
class Suite:
    """The test cases of one folder, and the folder's packs compiled as an edge holds them."""

    folder: str
    snapshot: Snapshot
    cases: tuple[PackCase, ...]


def load_suites(paths: Sequence[str | os.PathLike[str]],
                catalog: str | os.PathLike[str] | None = None) -> list[Suite]:
    """Test files (or the folders holding them) with their packs; one `RulePackError` for
    every problem in the packs and the test files. A folder without test files gives none."""
    files_by_folder: dict[str, list[str]] = {}
    for path in paths:
        folder = os.fspath(path) if os.path.isdir(path) else os.path.dirname(path) or "."
        files_by_folder.setdefault(folder, []).extend(find_test_files(path))
    suites: list[Suite] = []
    problems: list[Problem] = []
    for folder, files in files_by_folder.items():
        if not files:
            continue
        cases: list[PackCase] = []
        for file in dict.fromkeys(files):
            try:
                cases.extend(load_cases_file(file))
            except RulePackError as exc:
                problems.extend(exc.problems)
        try:
            pack_set = load_pack_set([folder], catalog)
        except RulePackError as exc:
            problems.extend(exc.problems)
            continue
        if not pack_set.packs:  # every "does not fire" case would pass against nothing
            problems.append(Problem(files[0], 1, 1, f"no rule packs beside this test file "
                                    f"(in {folder}) to test",
                                    expected="the packs it tests, in the same folder"))
            continue
        suites.append(Suite(folder, compiled_snapshot(pack_set.packs, pack_set.catalog),
                            tuple(cases)))
    if problems:
        raise RulePackError(problems)
    return suites


def compiled_snapshot(packs: Sequence[Pack], catalog: ContentCatalog | None = None) -> Snapshot:
    """The packs (and the catalog's content) compiled and loaded by the decision core, as
    an edge would hold them."""
    return load_snapshot(json.dumps(compile_snapshot(packs, "test", 0, catalog)))


def run_case(snap: Snapshot, case: PackCase, session_id: str = "test-session") -> CaseResult:
    """Replay one case and compare what the visitor was shown with what it expects."""
    batches: list[list[CaseEvent]] = []
    for event in case.events:
        if batches and batches[-1][0].at_ms == event.at_ms:
            batches[-1].append(event)
        else:
            batches.append([event])
    last = case.events[-1].at_ms if case.events else 0
    until = case.until_ms if case.until_ms is not None else last + DEFAULT_TAIL_MS
    context = dict(case.context)
    client = ReplayClient(partial(decide, snap), session_id, max_requests=MAX_REQUESTS)
    seen: list[SeenAction] = []

    def see(now: int, response: dict[str, Any]) -> None:
        for action in response["actions"]:
            at = int(action.get("due_ms", now)) - T0
            seen.append(SeenAction(at, action["trigger"], action["content"]))

    sending: list[CaseEvent] = []  # the batch on its way, to point a refusal at its event
    try:
        for batch in batches:
            # call-backs come before the next batch and never after `until`
            for now, response in client.call_backs(T0 + min(batch[0].at_ms, until + 1)):
                see(now, response)
            for event in batch:
                if event.fields.get("type") == "page_view" and event.fields.get("url") is not None:
                    context["url"] = event.fields["url"]
            client.context = dict(context)
            now = T0 + batch[0].at_ms
            sending = batch
            see(now, client.send({"session_id": session_id, "now_ms": now,
                                  "context": dict(context),
                                  "events": [{**e.fields, "ts_ms": T0 + e.at_ms} for e in batch]},
                                 now))
            sending = []
        for now, response in client.call_backs(T0 + until + 1):
            see(now, response)
    except DecisionError as exc:
        return CaseResult(case, tuple(seen), _refused(case, exc, sending))
    except RunawaySession:
        error = (f"{case.file}:{case.line}:{case.column}: the session needed more than "
                 f"{MAX_REQUESTS} requests; is a trigger firing in a loop? (set until)")
        return CaseResult(case, tuple(seen), error)
    return CaseResult(case, tuple(seen))


def _refused(case: PackCase, exc: DecisionError, batch: list[CaseEvent]) -> str:
    """The decision core's refusal, pointed at the event in the test file that caused it."""
    line, column = case.line, case.column
    match = _EVENT_FIELD.match(exc.field or "")
    if match and int(match.group(1)) < len(batch):
        event = batch[int(match.group(1))]
        line, column = event.line, event.column
    field = f" ({exc.field})" if exc.field else ""
    return f"{case.file}:{line}:{column}: the edge refuses this request: {exc.message}{field}"
