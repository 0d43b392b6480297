"""Checking a pack's `models`: the intent model, cohort baselines and adaptive thresholds.

Models are usually written by recalibration, and may be written by hand. Numbers are in
the signal's compiled unit (ms, fraction 0..1, px/s...); a duration or a percentage may be
written with its unit instead. Which trigger a threshold belongs to, and so its unit, is
only known once every pack is read (`model_checks`).
"""

from __future__ import annotations

import re

from edge_module.core.catalog import INTENT_FEATURES, SIGNALS

from .checker import Checker, closest, describe
from .model import Baseline, IntentModel, Located, ModelsSpec, ThresholdEntry
from .source import MapNode, Node, Scalar
from .values import ValueProblem, is_number
from .vocabulary import ANY_SEGMENT, expected_value, parse_model_value, value_kind

MODELS_KEYS = ("intent", "intent_by_trigger", "baselines", "thresholds")
INTENT_KEYS = ("bias", "weights", "scale")
BASELINE_KEYS = ("mean", "std", "by_segment")
STATS_KEYS = ("mean", "std")
MODEL_KEY = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)?(#\d+)+")
MODEL_KEY_RULE = ("a condition's model key: its trigger id, '#' and its position in when "
                  "(from 0), such as pricing-discount#1")
_INTENT_EXPECTED = "a mapping such as {bias: -3.0, weights: {dwell: 1.2}, scale: {dwell: 10000}}"


class ModelChecker(Checker):
    def models(self, node: Node) -> ModelsSpec | None:
        body = self.mapping(node, "models", "a mapping with intent, intent_by_trigger, "
                                            "baselines and/or thresholds")
        if body is None:
            return None
        found, _ = self.keys(body, MODELS_KEYS, (), "models")
        intent = self.intent(found["intent"], "intent") if "intent" in found else None
        intent_at = None
        if "intent" in found:
            key = body.key("intent") or body
            intent_at = Located("intent", key.line, key.column)
        by_trigger = self.by_trigger(found["intent_by_trigger"]) \
            if "intent_by_trigger" in found else ()
        baselines = self.baselines(found["baselines"]) if "baselines" in found else ()
        thresholds = self.thresholds(found["thresholds"]) if "thresholds" in found else ()
        return ModelsSpec(intent, by_trigger, baselines, thresholds, intent_at)

    def named_entries(self, node: Node, what: str, expected: str) -> tuple[tuple[Scalar, Node], ...]:
        table = self.mapping(node, what, expected)
        if table is None:
            return ()
        if not table.entries:
            self.report(table, f"{what} is empty", expected)
        return table.entries

    # Intent

    def intent(self, node: Node, what: str) -> IntentModel | None:
        body = self.mapping(node, what, _INTENT_EXPECTED)
        if body is None:
            return None
        found, _ = self.keys(body, INTENT_KEYS, ("weights",), what)
        bias = self.number(found["bias"], "bias") if "bias" in found else 0.0
        weights = self.features(found["weights"], "weights", None) if "weights" in found else None
        scale = self.features(found["scale"], "scale", 0.0) if "scale" in found else ()
        if bias is None or weights is None or scale is None:
            return None
        return IntentModel(bias, weights, scale)

    def features(self, node: Node, what: str,
                 low: float | None) -> tuple[tuple[str, int | float], ...] | None:
        expected = ("a number" if low is None else "a number above 0") + " per feature"
        entries = self.named_entries(node, what, f"a mapping of features ({', '.join(INTENT_FEATURES)}) "
                                                 f"to numbers")
        out = []
        ok = isinstance(node, MapNode)
        for key, value_node in entries:
            if key.text not in INTENT_FEATURES:
                self.report(key, f"unknown intent feature {key.text!r}",
                            "one of " + ", ".join(INTENT_FEATURES),
                            closest(key.text, INTENT_FEATURES))
                ok = False
                continue
            value = self.number(value_node, f"{what} of {key.text}", low, expected)
            if value is None:
                ok = False
            else:
                out.append((key.text, value))
        return tuple(out) if ok else None

    def by_trigger(self, node: Node) -> tuple[tuple[Located, IntentModel], ...]:
        out = []
        for key, value_node in self.named_entries(node, "intent_by_trigger",
                                                  "a mapping of trigger ids to intent models"):
            model = self.intent(value_node, f"the intent model of {key.text}")
            if model is not None:
                out.append((Located(key.text, key.line, key.column), model))
        return tuple(out)

    # Baselines

    def baselines(self, node: Node) -> tuple[tuple[Located, Baseline], ...]:
        out = []
        for key, value_node in self.named_entries(
                node, "baselines", "a mapping of signals to {mean, std}, such as "
                                   "{scroll_velocity: {mean: 400, std: 150}}"):
            if key.text not in SIGNALS:
                self.report(key, f"unknown signal {key.text!r}", "one of " + ", ".join(SIGNALS),
                            closest(key.text, SIGNALS))
                continue
            baseline = self.baseline(value_node, key.text)
            if baseline is not None:
                out.append((Located(key.text, key.line, key.column), baseline))
        return tuple(out)

    def baseline(self, node: Node, signal: str) -> Baseline | None:
        what = f"the {signal} baseline"
        body = self.mapping(node, what, "a mapping such as {mean: 400, std: 150}")
        if body is None:
            return None
        found, _ = self.keys(body, BASELINE_KEYS, STATS_KEYS, what)
        stats = self.stats(found, signal)
        segments: list[tuple[str, int | float, int | float]] = []
        ok = stats is not None
        if "by_segment" in found:
            for key, value_node in self.named_entries(found["by_segment"], "by_segment",
                                                      "a mapping of segments to {mean, std}"):
                name = self.segment_name(key)
                seg = self.mapping(value_node, f"the {signal} baseline of {key.text}",
                                   "a mapping such as {mean: 600, std: 200}")
                if seg is None:
                    ok = False
                    continue
                seg_found, _ = self.keys(seg, STATS_KEYS, STATS_KEYS,
                                         f"the {signal} baseline of {key.text}")
                seg_stats = self.stats(seg_found, signal)
                if name is None or seg_stats is None:
                    ok = False
                else:
                    segments.append((name, *seg_stats))
        if not ok or stats is None:
            return None
        return Baseline(stats[0], stats[1], tuple(segments))

    def stats(self, found: dict[str, Node],
              signal: str) -> tuple[int | float, int | float] | None:
        if "mean" not in found or "std" not in found:
            return None
        mean = self.model_value(found["mean"], signal, "mean")
        std = self.model_value(found["std"], signal, "std")
        if std is not None and std <= 0:
            self.report(found["std"], "std must be above 0",
                        "the spread of the signal across sessions, above 0")
            return None
        if mean is None or std is None:
            return None
        return mean, std

    def model_value(self, node: Node, signal: str, what: str) -> int | float | None:
        """A number in the signal's compiled unit, or a value written with its unit."""
        kind = value_kind(signal, None)
        if isinstance(node, Scalar) and is_number(node.value) and kind is None:
            return node.value  # type: ignore[no-any-return]
        if isinstance(node, Scalar) and (isinstance(node.value, str) or is_number(node.value)) \
                and kind is not None:
            try:
                return parse_model_value(node.value, kind)
            except ValueProblem as exc:
                self.report(node, f"{what}: {exc.message}", exc.expected, exc.suggestion)
                return None
        expected = "a number" if kind is None else f"a number, or {expected_value(kind)}"
        self.report(node, f"{what} is {describe(node)}", expected)
        return None

    # Adaptive thresholds

    def thresholds(self, node: Node) -> tuple[tuple[Located, tuple[ThresholdEntry, ...]], ...]:
        out = []
        for key, value_node in self.named_entries(
                node, "thresholds", 'a mapping of model keys to thresholds per segment, such '
                                    'as {"pricing-discount#1": {"*": 0.7, mobile: 0.55}}'):
            if not MODEL_KEY.fullmatch(key.text):
                self.report(key, f"threshold key {key.text!r} is not a model key",
                            MODEL_KEY_RULE)
                continue
            entries = []
            ok = True
            for seg_key, raw_node in self.named_entries(
                    value_node, f"the thresholds of {key.text}",
                    'a mapping such as {"*": 0.7, mobile: 0.55}'):
                if seg_key.text != ANY_SEGMENT and self.segment_name(seg_key) is None:
                    ok = False
                    continue
                if not (isinstance(raw_node, Scalar)
                        and (is_number(raw_node.value) or isinstance(raw_node.value, str))):
                    self.report(raw_node, f"the threshold for {seg_key.text} is "
                                          f"{describe(raw_node)}", "a number or a value with "
                                                                   "its unit, such as 55% or 3s")
                    ok = False
                    continue
                entries.append(ThresholdEntry(seg_key.text, raw_node.value, raw_node.line,
                                              raw_node.column))
            if ok and entries:
                out.append((Located(key.text, key.line, key.column), tuple(entries)))
        return tuple(out)
