"""The trigger sprawl audit: valid packs that will still not do what their authors think.

Rules (codes are stable; `--ignore` takes them):
  L001  duplicate: same pages, same event and equivalent conditions as another trigger
  L002  overlap: wherever and whenever this trigger fires, another one can fire too
  L003  never fires: contradictory conditions, a bound the signal can never reach, or a
        condition that cannot hold at the page_view the trigger fires on
  L004  no per_session cap: the trigger can fire again on every page view
  L005  content id missing from the content catalog
  L006  costly at every event: 3 or more windowed signals read at each event of a page
        (in `sustained`, or in a trigger with `consecutive` or `on:`), so one batch of
        500 events costs the edge several times the decision deadline's share

Conditions are compared where their thresholds are fixed (see `condition_logic`); context,
segment, sustained, per-segment and adaptive conditions are taken as written. Triggers in
one `group` never show together, so they are not reported as overlapping; two alike in all
but priority are still duplicates (in a group, the lower one is never shown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..rulepack import ConditionSpec, ContentCatalog, Pack, TriggerSpec
from ..rulepack.compiler import compiled_condition, compiled_conditions
from ..rulepack.content_catalog import pack_actions
from ..rulepack.validate import closest
from ..rulepack.validated import ActionSpec, SegmentRef, SustainedSpec
from . import plain_words
from .condition_logic import (
    PAGE_RESET,
    allowed,
    bounds,
    implies,
    impossible,
    pages_cover,
    pages_meet,
    quantity,
)

RULES = {
    "L001": "duplicate trigger",
    "L002": "overlapping triggers",
    "L003": "trigger can never fire",
    "L004": "no per_session cap",
    "L005": "content not in the catalog",
    "L006": "costly at every event",
}

# Signals read over a window of samples: under `sustained`, or in a trigger with
# `consecutive` or `on:`, each is read at every event of a batch (a visitor may send 500),
# which costs the edge 10-40 ms per signal in the component (docs/security-model.md).
WINDOWED = frozenset(("scroll_velocity", "velocity_spike", "mouse_entropy", "count", "min",
                      "max", "avg", "intent"))
COSTLY_AT_EVERY_EVENT = 3


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    column: int
    code: str
    message: str
    trigger: str | None = None

    def __str__(self) -> str:
        scope = f"[{self.trigger}] " if self.trigger else ""
        return f"{self.file}:{self.line}:{self.column}: {self.code} {scope}{self.message}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Located:
    pack: Pack
    spec: TriggerSpec

    @property
    def where(self) -> str:
        return f"{self.pack.file}:{self.spec.line}:{self.spec.column}"

    def finding(self, code: str, message: str, line: int | None = None,
                column: int | None = None) -> Finding:
        return Finding(self.pack.file, line or self.spec.line, column or self.spec.column,
                       code, message, self.spec.id)


def lint(packs: Sequence[Pack], catalog: ContentCatalog | None = None,
         ignore: Iterable[str] = (), focus: Pack | None = None) -> list[Finding]:
    """Every finding in `packs` (valid, and valid together), in reading order; with
    `focus` (one of `packs`), only the findings about it, in time linear in the others (a
    pack submitted beside a registry of 500 triggers was linted pair by pair: 0.6 s)."""
    triggers = [_Located(p, t) for p in packs for t in p.triggers]
    mine = (lambda t: t.pack is focus) if focus is not None else (lambda t: True)
    findings: list[Finding] = []
    live = []
    for trig in triggers:
        dead = _never_fires(trig) if mine(trig) else []
        findings.extend(dead)
        if not dead:
            live.append(trig)
        if mine(trig):
            findings.extend(_uncapped(trig))
    if catalog is not None:
        for pack in packs:
            if focus is None or pack is focus:
                for scope, action in pack_actions(pack):
                    findings.extend(_unlisted_content(pack, scope, action, catalog))
    findings.extend(f for f in _duplicates_and_overlaps(live, mine)
                    if focus is None or f.file == focus.file)
    findings.extend(_costly_at_every_event(triggers, mine))
    skipped = set(ignore)
    return sorted((f for f in findings if f.code not in skipped),
                  key=lambda f: (f.file, f.line, f.column, f.code))


def _never_fires(trig: _Located) -> list[Finding]:
    spec = trig.spec
    key = impossible(spec.when)
    if key is not None:
        conds = [c for c in bounds(spec.when) if quantity(c) == key]
        written = " and ".join(plain_words.condition(_compiled(c)) for c in conds)
        why = ("contradict each other" if len(conds) > 1
               else f"asks for a value {key[0]} never takes")
        return [trig.finding("L003", f"never fires: {written} {why}",
                             conds[-1].line, conds[-1].column)]
    if spec.on is not None and spec.on.type == "page_view":
        # A page_view starts a new page: dwell, scroll depth, velocity and hover are all 0.
        for key, interval in allowed(spec.when).items():
            if key[0] in PAGE_RESET and not interval.contains(0.0):
                cond = next(c for c in bounds(spec.when) if quantity(c) == key)
                return [trig.finding(
                    "L003", f"never fires: it fires at a page_view, when "
                            f"{plain_words.subject(_compiled(cond))} is still 0, so "
                            f"{plain_words.condition(_compiled(cond))} cannot hold",
                    cond.line, cond.column)]
    return []


def _uncapped(trig: _Located) -> list[Finding]:
    cap = trig.spec.cap
    if cap.per_session is not None:
        return []
    if cap.per_page is None and not cap.cooldown_ms:  # per_page: unlimited
        return [trig.finding("L004", "has no per_session cap, per_page limit or cooldown: it "
                                     "can fire at every decision while its conditions hold; "
                                     "add cap: {per_session: N} or a cooldown")]
    return [trig.finding("L004", "has no per_session cap: it can fire again on every page "
                                 "view; add cap: {per_session: N}")]


def _read_at_every_event(spec: TriggerSpec) -> list[ConditionSpec]:
    """The trigger's windowed conditions read at each event: inside `sustained`, and all of
    them in a trigger with `consecutive` or `on:`."""
    every = spec.consecutive > 1 or spec.on is not None
    out: list[ConditionSpec] = []
    for cond in spec.when:
        if isinstance(cond, SustainedSpec):
            out += [c for c in cond.when if isinstance(c, ConditionSpec) and c.signal in WINDOWED]
        elif every and isinstance(cond, ConditionSpec) and cond.signal in WINDOWED:
            out.append(cond)
    return out


def _costly_at_every_event(triggers: Sequence[_Located],
                           mine: Callable[[_Located], bool] = lambda t: True
                           ) -> list[Finding]:
    """L006, once per set of triggers: the windowed conditions read at every event of the
    pages a trigger applies to (its own, and those of every trigger that applies to some
    page it does: globs may meet without either covering the other, so this may count
    two that never meet each other) add up to COSTLY_AT_EVERY_EVENT."""
    reading = [(t, conds) for t in triggers if (conds := _read_at_every_event(t.spec))]
    found: list[Finding] = []
    reported: set[frozenset[str]] = set()
    for trig, _conds in reading:
        if not mine(trig):
            continue
        pages = trig.spec.pages
        together = [(t, c) for t, c in reading if pages_meet(t.spec.pages, pages)]
        # the intent score reads two windowed signals (velocity and entropy)
        count = sum(2 if c.signal == "intent" else 1 for _, conds in together for c in conds)
        who = frozenset(t.spec.id for t, _ in together)
        if count < COSTLY_AT_EVERY_EVENT or who in reported:
            continue
        reported.add(who)
        ids = ", ".join(t.spec.id for t, _ in together)
        found.append(trig.finding(
            "L006", f"{count} windowed signals are read at every event on "
                    f"{', '.join(pages)} (by {ids}): each costs the edge 10-40 ms on a "
                    f"visitor's batch of 500 events, and a decision stops at 50 ms; keep "
                    f"fewer than {COSTLY_AT_EVERY_EVENT} in sustained, consecutive or on: "
                    f"triggers of one page"))
    return found


def _unlisted_content(pack: Pack, scope: str, action: ActionSpec,
                      catalog: ContentCatalog) -> list[Finding]:
    if action.content in catalog:
        return []
    guess = closest(action.content, list(catalog.content))
    hint = f"; did you mean {guess!r}?" if guess else ""
    return [Finding(pack.file, action.line, action.column, "L005",
                    f"content {action.content!r} is not in the content catalog "
                    f"{catalog.file}{hint}", scope)]


def _duplicates_and_overlaps(triggers: list[_Located],
                             mine: Callable[[_Located], bool] = lambda t: True
                             ) -> list[Finding]:
    """L001/L002 for every pair of `triggers` one of which is `mine`."""
    findings = []
    mine_at = [i for i, t in enumerate(triggers) if mine(t)]
    for i, later in enumerate(triggers):
        before = range(i) if mine(later) else (j for j in mine_at if j < i)
        for earlier in (triggers[j] for j in before):
            a, b = earlier.spec, later.spec
            if a.on != b.on:
                continue
            a_in_b = pages_cover(b.pages, a.pages) and implies(_all_of(a), _all_of(b))
            b_in_a = pages_cover(a.pages, b.pages) and implies(_all_of(b), _all_of(a))
            if a_in_b and b_in_a:
                findings.append(later.finding("L001", _duplicate_message(earlier, later)))
            elif a.group is not None and a.group == b.group:
                continue  # one group shows one action: overlapping is what a group is for
            elif b_in_a:
                findings.append(later.finding("L002", _overlap_message(later, earlier)))
            elif a_in_b:
                findings.append(earlier.finding("L002", _overlap_message(earlier, later)))
    return findings


def _all_of(spec: TriggerSpec) -> tuple[object, ...]:
    """Everything that must hold for a trigger to fire, its segment and timing included."""
    extra: list[object] = []
    if spec.segment is not None:
        extra.append(SegmentRef(spec.segment))
    extra.append(("journey", spec.journey) if spec.journey else ())
    extra.append(("consecutive", spec.consecutive) if spec.consecutive > 1 else ())
    return (*spec.when, *(e for e in extra if e))


def _duplicate_message(first: _Located, second: _Located) -> str:
    a, b = first.spec, second.spec
    if a.group is not None and a.group == b.group:
        return (f"duplicates {a.id} ({first.where}): same pages, event and conditions in "
                f"group {a.group}, so only one of them is ever shown; remove one or tell "
                "them apart")
    same_content = a.action.content == b.action.content
    shows = (f"both show {a.action.content}" if same_content
             else f"shown together: {a.action.content} and {b.action.content}")
    return (f"duplicates {a.id} ({first.where}): same pages, event and conditions, "
            f"so the two always fire together ({shows}); merge them or tell them apart")


def _overlap_message(narrow: _Located, wide: _Located) -> str:
    return (f"overlaps {wide.spec.id} ({wide.where}): wherever and whenever this trigger fires, "
            f"{wide.spec.id} can fire too ({plain_words.conditions(_compiled_all(wide.spec))} "
            f"on {plain_words.pages(wide.spec.pages)}), so a visitor can get both nudges")


def _compiled(cond: ConditionSpec) -> dict[str, Any]:
    """A condition in the compiled shape `plain_words` reads."""
    return compiled_condition("", cond)


def _compiled_all(spec: TriggerSpec) -> list[dict[str, Any]]:
    return compiled_conditions(spec.id, spec.when)
