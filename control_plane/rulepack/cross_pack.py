"""What only all packs together can tell: names used twice, and names used but not defined.

Each pack is valid by itself; together, pack names, trigger and sequence ids and segment
names must be unique, every segment used must be defined in some pack, and the models
(which any pack may hold) must fit the conditions they tune. Names are checked in packs
with problems of their own too (as far as those packs were understood), so every problem
shows at once; models only when every pack is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .checker import closest
from .problems import Problem, sort_problems
from .validated import Condition, ConditionSpec, Located, Pack, SustainedSpec, ThresholdEntry
from .values import ValueProblem
from .vocabulary import parse_model_value, value_kind

_SHOWN_NAMES = 8  # list the names in a message only while the list stays readable


@dataclass(frozen=True)
class KeyedCondition:
    """A signal condition with its model key ("<trigger id>#<position in when>")."""

    key: str
    condition: ConditionSpec
    pack: Pack
    scope: str  # the trigger, or sequence/step, it belongs to


def keyed_conditions(prefix: str, when: Sequence[Condition]) -> Iterator[tuple[str, ConditionSpec]]:
    """Every signal condition in `when` with its model key; inside `sustained`, `#i#j`."""
    for i, cond in enumerate(when):
        key = f"{prefix}#{i}"
        if isinstance(cond, ConditionSpec):
            yield key, cond
        elif isinstance(cond, SustainedSpec):
            yield from keyed_conditions(key, cond.when)


def all_keyed_conditions(packs: Sequence[Pack]) -> Iterator[KeyedCondition]:
    for pack in packs:
        for trig in pack.triggers:
            for key, cond in keyed_conditions(trig.id, trig.when):
                yield KeyedCondition(key, cond, pack, trig.id)
        for seq in pack.sequences:
            for step in seq.steps:
                scope = f"{seq.id}/{step.id}"
                for key, cond in keyed_conditions(scope, step.when):
                    yield KeyedCondition(key, cond, pack, scope)


def threshold_value(entry: ThresholdEntry, cond: ConditionSpec) -> int | float:
    """An adaptive threshold in the unit of the condition it tunes; `ValueProblem` if it
    does not fit."""
    kind = value_kind(cond.signal, cond.field)
    if kind is None:  # an aggregate of an unknown field never validates; keep numbers
        if type(entry.raw) in (int, float):
            return entry.raw  # type: ignore[return-value]
        raise ValueProblem(f"{entry.raw!r} is not a number", "a number")
    return parse_model_value(entry.raw, kind)


def _model_keys(keys: Sequence[str]) -> str:
    expected = "the model key of a mode: adaptive condition"
    if not keys:
        return expected + " (no condition has mode: adaptive)"
    return expected + (f", one of {', '.join(keys)}" if len(keys) <= _SHOWN_NAMES else "")


def _intent_keys(keys: Sequence[str]) -> str:
    expected = "the model key of an intent condition with mode: adaptive"
    if not keys:
        return expected + " (no intent condition has mode: adaptive)"
    return expected + (f", one of {', '.join(keys)}" if len(keys) <= _SHOWN_NAMES else "")


def _segments(names: Sequence[str]) -> str:
    expected = "a segment defined under segments: in some pack"
    if not names:
        return expected + " (no pack defines any)"
    return expected + (f": {', '.join(names)}" if len(names) <= _SHOWN_NAMES else "")


class _CrossCheck:
    def __init__(self, packs: Sequence[Pack], complete: bool) -> None:
        self.packs = packs
        self.complete = complete
        self.problems: list[Problem] = []

    def report(self, pack: Pack, where: Located | None, message: str, scope: str | None = None,
               expected: str | None = None, suggestion: str | None = None) -> None:
        line, column = (where.line, where.column) if where else (pack.line, pack.column)
        self.problems.append(Problem(pack.file, line, column, message, scope, expected,
                                     suggestion))

    def run(self) -> list[Problem]:
        self.names_and_ids()
        self.experiment()
        segments = self.segments()
        self.segment_uses(segments)
        if self.complete:
            # A condition with a mistake is missing from its `when`, which moves the model
            # keys after it: models are checked against complete packs only.
            self.models()
        return sort_problems(self.problems)

    def names_and_ids(self) -> None:
        pack_seen: dict[str, Pack] = {}
        id_seen: dict[str, tuple[int, Pack, str, int, int]] = {}
        for at, pack in enumerate(self.packs):
            # Clashes are found by name, not identity: the same pack passed twice clashes too.
            if pack.name in pack_seen:
                first = pack_seen[pack.name]
                self.report(pack, None, f"pack name {pack.name!r} is also used by "
                                        f"{first.file}:{first.line}:{first.column}",
                            expected="a pack name unique across all packs")
            elif pack.name:  # empty: left out or mistaken, a problem of the pack itself
                pack_seen[pack.name] = pack
            named = [("trigger", t.id, t.line, t.column) for t in pack.triggers]
            named += [("sequence", s.id, s.line, s.column) for s in pack.sequences]
            for kind, ident, line, column in named:
                if not ident:  # left out or mistaken, as above
                    continue
                if ident not in id_seen:
                    id_seen[ident] = (at, pack, kind, line, column)
                    continue
                other_at, other, other_kind, o_line, o_column = id_seen[ident]
                if other_at == at:
                    continue  # twice in one pack: a problem of the pack by itself
                what = "" if other_kind == kind else f" (as a {other_kind} id)"
                self.report(pack, Located(ident, line, column),
                            f"{kind} id {ident!r} is also defined in "
                            f"{other.file}:{o_line}:{o_column}{what} (pack {other.name!r})",
                            ident, f"a {kind} id unique across all packs (triggers and "
                                   "sequences share them)" if kind == "sequence"
                            else "a trigger id unique across all packs")

    def experiment(self) -> None:
        """settings.experiment splits every session: one pack at most may define it."""
        first: Pack | None = None
        for pack in self.packs:
            spec = pack.settings.experiment if pack.settings is not None else None
            if spec is None:
                continue
            if first is None:
                first = pack
                continue
            at = first.settings.experiment  # type: ignore[union-attr]
            self.report(pack, Located("experiment", spec.line, spec.column),
                        f"settings.experiment is also defined in {first.file}:{at.line}:"
                        f"{at.column} (pack {first.name!r}): one experiment splits all "
                        f"sessions", expected="settings.experiment in one pack only")

    def segments(self) -> list[str]:
        seen: dict[str, tuple[Pack, Located]] = {}
        for pack in self.packs:
            for seg in pack.segments:
                where = Located(seg.name, seg.line, seg.column)
                if seg.name in seen:
                    other, at = seen[seg.name]
                    self.report(pack, where, f"segment {seg.name!r} is also defined in "
                                             f"{other.file}:{at.line}:{at.column} "
                                             f"(pack {other.name!r})",
                                expected="segment names unique across all packs")
                else:
                    seen[seg.name] = (pack, where)
        return list(seen)

    def segment_uses(self, defined: list[str]) -> None:
        for pack in self.packs:
            for use in pack.segment_uses:
                if use.name not in defined:
                    self.report(pack, use, f"unknown segment {use.name!r}", use.scope,
                                _segments(defined),
                                closest(use.name, defined))

    def models(self) -> None:
        trigger_ids = [t.id for p in self.packs for t in p.triggers]
        keyed = {k.key: k for k in all_keyed_conditions(self.packs)}
        adaptive = [k for k, c in keyed.items() if c.condition.mode == "adaptive"]
        intent_at: tuple[Pack, Located] | None = None
        seen: dict[tuple[str, str], tuple[Pack, Located]] = {}
        baselines: set[str] = set()

        def once(section: str, pack: Pack, at: Located) -> bool:
            first = seen.get((section, at.name))
            if first is None:
                seen[(section, at.name)] = (pack, at)
                return True
            other, o_at = first
            self.report(pack, at, f"models.{section} {at.name!r} is also defined in "
                                  f"{other.file}:{o_at.line}:{o_at.column}",
                        expected=f"each {section} entry in one pack only")
            return False

        for pack in self.packs:
            models = pack.models
            if models is None:
                continue
            if models.intent is not None and models.intent_at is not None:
                if intent_at is not None:
                    other, at = intent_at
                    self.report(pack, models.intent_at, "models.intent is also defined in "
                                                        f"{other.file}:{at.line}:{at.column}",
                                expected="one intent model across all packs; per trigger: "
                                         "intent_by_trigger")
                else:
                    intent_at = (pack, models.intent_at)
            for at, _ in models.intent_by_trigger:
                if once("intent_by_trigger", pack, at) and at.name not in trigger_ids:
                    self.report(pack, at, f"intent_by_trigger names no trigger: {at.name!r}",
                                expected="the id of a trigger in some pack",
                                suggestion=closest(at.name, trigger_ids))
            for at, _ in models.baselines:
                if once("baselines", pack, at):
                    baselines.add(at.name)
            for at, entries in models.thresholds:
                if not once("thresholds", pack, at):
                    continue
                target = keyed.get(at.name)
                if target is None or target.condition.mode != "adaptive":
                    why = ("is not mode: adaptive" if target is not None
                           else "names no condition")
                    self.report(pack, at, f"threshold key {at.name!r} {why}",
                                expected=_model_keys(adaptive),
                                suggestion=closest(at.name, adaptive))
                    continue
                for entry in entries:
                    try:
                        threshold_value(entry, target.condition)
                    except ValueProblem as exc:
                        self.report(pack, Located(entry.segment, entry.line, entry.column),
                                    f"the threshold of {at.name} for {entry.segment}: "
                                    f"{exc.message}", expected=exc.expected,
                                    suggestion=exc.suggestion)
            self.learned(pack, models.learned, keyed, once)
        self.baselines_needed(list(keyed.values()), baselines)

    def learned(self, pack: Pack, learned: Sequence[tuple[Located, object]],
                keyed: dict[str, KeyedCondition], once: Callable[[str, Pack, Located], bool]) -> None:
        """A learned model scores the intent of one adaptive intent condition."""
        intents = [k for k, c in keyed.items()
                   if c.condition.mode == "adaptive" and c.condition.signal == "intent"]
        for at, _ in learned:
            if not once("learned", pack, at):
                continue
            target = keyed.get(at.name)
            if target is not None and at.name in intents:
                continue
            why = ("names no condition" if target is None
                   else f"is a {target.condition.signal} condition: a learned model scores "
                        "the intent signal" if target.condition.signal != "intent"
                   else "is not mode: adaptive")
            self.report(pack, at, f"learned model key {at.name!r} {why}",
                        expected=_intent_keys(intents), suggestion=closest(at.name, intents))

    def baselines_needed(self, keyed: list[KeyedCondition], baselines: set[str]) -> None:
        """Hybrid conditions and cohort spikes compare with a baseline some pack must define."""
        for item in keyed:
            cond = item.condition
            where = Located(cond.signal, cond.line, cond.column)
            if cond.mode == "hybrid" and cond.signal not in baselines:
                self.report(item.pack, where,
                            f"mode: hybrid needs a baseline for {cond.signal}, and no pack "
                            "defines one", item.scope,
                            f"models.baselines.{cond.signal}: {{mean: ..., std: ...}} in some "
                            "pack, or mode: static")
            if cond.baseline == "cohort" and "scroll_velocity" not in baselines:
                self.report(item.pack, where,
                            "baseline: cohort needs the cohort's scroll speed, and no pack "
                            "defines one", item.scope,
                            "models.baselines.scroll_velocity: {mean: ..., std: ...} in some "
                            "pack, or baseline: session")


def cross_pack_problems(packs: Sequence[Pack], complete: bool = True) -> list[Problem]:
    """Every clash or dangling name across `packs`. `complete`: each pack is valid by
    itself; otherwise some are as far as their problems let them be understood
    (`validate.PackCheck`), and only names are checked."""
    return _CrossCheck(packs, complete).run()


def merged_thresholds(packs: Sequence[Pack]) -> dict[str, dict[str, int | float]]:
    """models.thresholds of all packs, each value in its condition's unit (packs checked)."""
    keyed = {k.key: k.condition for k in all_keyed_conditions(packs)}
    out: dict[str, dict[str, int | float]] = {}
    for pack in packs:
        for at, entries in pack.models.thresholds if pack.models else ():
            out[at.name] = {e.segment: threshold_value(e, keyed[at.name]) for e in entries}
    return out

