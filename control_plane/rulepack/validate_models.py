"""Checking a pack's `models`: the intent model, cohort baselines and adaptive thresholds.

Models are usually written by recalibration, and may be written by hand (a learned
intent model in `learned`, for instance, to start a new deployment from a model trained
elsewhere). Numbers are in
the signal's compiled unit (ms, fraction 0..1, px/s...); a duration or a percentage may be
written with its unit instead. Which trigger a threshold belongs to, and so its unit, is
only known once every pack is read (`model_checks`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from edge_module.core.catalog import INTENT_FEATURES, SIGNALS
from edge_module.core.features import SESSION_FEATURES

from .checker import Checker, closest, describe
from .source import ListNode, MapNode, Node, Scalar, plain
from .validated import Baseline, IntentModel, LearnedModel, Located, ModelsSpec, ThresholdEntry
from .values import MAX_NUMBER, as_written, is_number
from .vocabulary import ANY_SEGMENT, expected_value, parse_model_value, value_kind

MODELS_KEYS = ("intent", "intent_by_trigger", "baselines", "thresholds", "learned")
LEARNED_KEYS = ("features", "transform", "mean", "scale", "weights", "bias", "calibration",
                "trained")
LEARNED_REQUIRED = ("features", "weights")
CALIBRATION_KEYS = ("a", "b")
TRANSFORMS = ("identity", "log1p")
INTENT_KEYS = ("bias", "weights", "scale")
BASELINE_KEYS = ("mean", "std", "by_segment")
STATS_KEYS = ("mean", "std")
MODEL_KEY = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)?(#\d+)+")
MODEL_KEY_RULE = ("a condition's model key: its trigger id, '#' and its position in when "
                  "(from 0), such as pricing-discount#1")
_Entry = TypeVar("_Entry")
_INTENT_EXPECTED = "a mapping such as {bias: -3.0, weights: {dwell: 1.2}, scale: {dwell: 10000}}"
_LEARNED_EXPECTED = ("a mapping such as {features: [dwell_ms, depth], weights: {dwell_ms: 0.9, "
                     "depth: 1.4}, bias: -1.3}")
_FEATURES_EXPECTED = "a list of session features, each once: " + ", ".join(SESSION_FEATURES)


class ModelChecker(Checker):
    def models(self, node: Node) -> ModelsSpec | None:
        body = self.mapping(node, "models", "a mapping with intent, intent_by_trigger, "
                                            "baselines, thresholds and/or learned")
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
        learned = self.learned(found["learned"]) if "learned" in found else ()
        return ModelsSpec(intent, by_trigger, baselines, thresholds, intent_at, learned)

    def named_entries(self, node: Node, what: str, expected: str) -> tuple[tuple[Scalar, Node], ...]:
        table = self.mapping(node, what, expected)
        if table is None:
            return ()
        if not table.entries:
            self.report(table, f"{what} is empty", expected)
        return table.entries

    # Intent

    def intent(self, node: Node, what: str) -> IntentModel | None:
        found = self.mapping_keys(node, what, _INTENT_EXPECTED, INTENT_KEYS, ("weights",))
        if found is None:
            return None
        bias = self.number(found["bias"], "bias") if "bias" in found else 0.0
        weights = (self.feature_numbers(found["weights"], "weights", None)
                   if "weights" in found else None)
        scale = self.feature_numbers(found["scale"], "scale", 0.0) if "scale" in found else ()
        if bias is None or weights is None or scale is None:
            return None
        return IntentModel(bias, weights, scale)

    def feature_numbers(self, node: Node, what: str, low: float | None,
                        listed: tuple[str, ...] = ()) -> tuple[tuple[str, int | float], ...] | None:
        """A number per intent feature, or with `listed` per feature a learned model lists
        (`low`: exclusive lower bound). None: any error."""
        known = listed or INTENT_FEATURES
        table_expected = (f"a mapping of features to numbers, such as {{{listed[0]}: 1.0}}"
                          if listed else
                          f"a mapping of features ({', '.join(INTENT_FEATURES)}) to numbers")
        expected = ("a number" + ("" if low is None else f" above {low:g}")
                    + (" per listed feature" if listed else " per feature"))
        out = []
        ok = isinstance(node, MapNode)
        for key, value_node in self.named_entries(node, what, table_expected):
            if key.text not in known:
                if listed:
                    message = f"{what}: {key.text!r} is not in features"
                    fix = "one of the listed features: " + ", ".join(listed)
                else:
                    message = f"unknown intent feature {key.text!r}"
                    fix = "one of " + ", ".join(INTENT_FEATURES)
                self.report(key, message, fix, closest(key.text, known))
                ok = False
                continue
            value_what = f"{what}.{key.text}" if listed else f"{what} of {key.text}"
            value = self.number(value_node, value_what, low, expected)
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
        found = self.mapping_keys(node, what, "a mapping such as {mean: 400, std: 150}",
                                  BASELINE_KEYS, STATS_KEYS)
        if found is None:
            return None
        stats = self.stats(found, signal)
        segments: list[tuple[str, int | float, int | float]] = []
        ok = stats is not None
        if "by_segment" in found:
            for key, value_node in self.named_entries(found["by_segment"], "by_segment",
                                                      "a mapping of segments to {mean, std}"):
                name = self.segment_name(key)
                seg_found = self.mapping_keys(value_node, f"the {signal} baseline of {key.text}",
                                              "a mapping such as {mean: 600, std: 200}",
                                              STATS_KEYS, STATS_KEYS)
                if seg_found is None:
                    ok = False
                    continue
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
            return self.number(node, what)  # within the snapshot's bound
        if isinstance(node, Scalar) and (isinstance(node.value, str) or is_number(node.value)) \
                and kind is not None:
            return self.parsed(node, what, lambda: parse_model_value(node.value, kind))
        expected = "a number" if kind is None else f"a number, or {expected_value(kind)}"
        self.report(node, f"{what} is {describe(node)}", expected)
        return None

    # Adaptive thresholds

    def thresholds(self, node: Node) -> tuple[tuple[Located, tuple[ThresholdEntry, ...]], ...]:
        def entry(_key: str, seg_key: Scalar, raw_node: Node) -> ThresholdEntry | None:
            if not (isinstance(raw_node, Scalar)
                    and (is_number(raw_node.value) or isinstance(raw_node.value, str))):
                self.report(raw_node, f"the threshold for {seg_key.text} is "
                                      f"{describe(raw_node)}", "a number or a value with "
                                                               "its unit, such as 55% or 3s")
                return None
            return ThresholdEntry(seg_key.text, raw_node.value, raw_node.line, raw_node.column)

        return self.per_segment(
            node, "thresholds", 'a mapping of model keys to thresholds per segment, such '
                                'as {"pricing-discount#1": {"*": 0.7, mobile: 0.55}}',
            "threshold key", lambda key: f"the thresholds of {key}",
            'a mapping such as {"*": 0.7, mobile: 0.55}', entry)

    # Learned intent models (issue #12, contract C)

    def learned(self, node: Node) -> tuple[tuple[Located, tuple[tuple[str, LearnedModel], ...]],
                                            ...]:
        def entry(key: str, seg_key: Scalar, body: Node) -> tuple[str, LearnedModel] | None:
            model = self.learned_model(body, f"models.learned.{key}.{seg_key.text}")
            return None if model is None else (seg_key.text, model)

        return self.per_segment(
            node, "learned", 'a mapping of model keys to models per segment, such as '
                             '{"pricing-discount#0": {"*": {features: [...], ...}}}',
            "learned model key", lambda key: f"models.learned.{key}",
            'a mapping of segment names (or "*") to models', entry)

    def per_segment(self, node: Node, field: str, expected: str, key_label: str,
                    what_of: Callable[[str], str], segment_expected: str,
                    entry: Callable[[str, Scalar, Node], _Entry | None],
                    ) -> tuple[tuple[Located, tuple[_Entry, ...]], ...]:
        """A mapping of model keys to mappings of segments ("*" or a segment name) to
        entries; a key with any entry in error is left out (the error reported)."""
        out = []
        for key, value_node in self.named_entries(node, field, expected):
            if not MODEL_KEY.fullmatch(key.text):
                self.report(key, f"{key_label} {key.text!r} is not a model key", MODEL_KEY_RULE)
                continue
            entries = []
            ok = True
            for seg_key, body in self.named_entries(value_node, what_of(key.text),
                                                    segment_expected):
                if seg_key.text != ANY_SEGMENT and self.segment_name(seg_key) is None:
                    ok = False
                    continue
                value = entry(key.text, seg_key, body)
                if value is None:
                    ok = False
                else:
                    entries.append(value)
            if ok and entries:
                out.append((Located(key.text, key.line, key.column), tuple(entries)))
        return tuple(out)

    def learned_model(self, node: Node, what: str) -> LearnedModel | None:
        """One segment's model: every feature listed once, known, and given a weight."""
        found = self.mapping_keys(node, what, _LEARNED_EXPECTED, LEARNED_KEYS, LEARNED_REQUIRED)
        if found is None:
            return None
        features = self.feature_list(found["features"], what) if "features" in found else None
        if features is None:
            return None
        tables: dict[str, tuple[tuple[str, int | float], ...] | None] = {}
        for part, low in (("weights", None), ("mean", None), ("scale", 0.0)):
            tables[part] = (self.feature_numbers(found[part], f"{what}.{part}", low, features)
                            if part in found else ())
        transform = self.transforms(found["transform"], what, features) \
            if "transform" in found else ()
        weights = tables["weights"]
        ok = weights is not None and transform is not None and all(
            v is not None for v in tables.values())
        if weights is not None and "weights" in found:
            missing = [f for f in features if f not in dict(weights)]
            if missing:
                self.report(found["weights"], f"{what}.weights: no weight for "
                                              f"{', '.join(missing)}",
                            "a weight for every listed feature (0 to ignore one)")
                ok = False
        if "trained" in found and not self.json_data(found["trained"], f"{what}.trained"):
            ok = False
        bias = self.number(found["bias"], f"{what}.bias") if "bias" in found else 0.0
        calibration = self.calibration(found["calibration"], what) \
            if "calibration" in found else (1.0, 0.0)
        if not ok or bias is None or calibration is None:
            return None
        return LearnedModel(features, weights or (), bias, transform or (),
                            tables["mean"] or (), tables["scale"] or (), calibration,
                            plain(found["trained"]) if "trained" in found else None)

    def feature_list(self, node: Node, what: str) -> tuple[str, ...] | None:
        if not isinstance(node, ListNode) or not node.items:
            shown = "an empty list" if isinstance(node, ListNode) else describe(node)
            self.report(node, f"{what}.features is {shown}", _FEATURES_EXPECTED)
            return None
        names: list[str] = []
        ok = True
        for item in node.items:
            name = self.text(item, f"a feature in {what}.features", _FEATURES_EXPECTED)
            if name is None:
                ok = False
            elif name not in SESSION_FEATURES:
                self.report(item, f"unknown session feature {name!r} in {what}.features",
                            "one of " + ", ".join(SESSION_FEATURES),
                            closest(name, SESSION_FEATURES))
                ok = False
            elif name in names:
                self.report(item, f"feature {name!r} is listed twice in {what}.features",
                            _FEATURES_EXPECTED)
                ok = False
            else:
                names.append(name)
        return tuple(names) if ok else None

    def transforms(self, node: Node, what: str,
                   features: tuple[str, ...]) -> tuple[tuple[str, str], ...] | None:
        out = []
        ok = isinstance(node, MapNode)
        for key, value_node in self.named_entries(node, f"{what}.transform",
                                                  "a mapping of features to log1p or identity"):
            if key.text not in features:
                self.report(key, f"{what}.transform: {key.text!r} is not in features",
                            "one of the listed features: " + ", ".join(features),
                            closest(key.text, features))
                ok = False
                continue
            expected = "one of " + ", ".join(TRANSFORMS)
            value = self.text(value_node, f"{what}.transform.{key.text}", expected)
            if value is not None and value not in TRANSFORMS:
                self.report(value_node, f"{what}.transform.{key.text}: unknown transform "
                                        f"{value!r}", expected, closest(value, TRANSFORMS))
                value = None
            if value is None:
                ok = False
            else:
                out.append((key.text, value))
        return tuple(out) if ok else None

    def calibration(self, node: Node, what: str) -> tuple[int | float, int | float] | None:
        body = self.mapping(node, f"{what}.calibration", "a mapping such as {a: 1.0, b: 0.0}")
        if body is None:
            return None
        found, _ = self.keys(body, CALIBRATION_KEYS, (), f"{what}.calibration")
        a = self.number(found["a"], f"{what}.calibration.a") if "a" in found else 1.0
        b = self.number(found["b"], f"{what}.calibration.b") if "b" in found else 0.0
        if a is None or b is None or len(found) != len(body.entries):
            return None
        return a, b

    def json_data(self, node: Node, what: str) -> bool:
        """Free-form provenance must still be JSON: no dates, no NaN (they would not publish)."""
        if isinstance(node, (MapNode, ListNode)):
            values = [v for _, v in node.entries] if isinstance(node, MapNode) else node.items
            checked = [self.json_data(v, what) for v in values]  # every problem, not the first
            return all(checked)
        value = node.value
        if value is None or isinstance(value, (str, bool)):
            return True
        if is_number(value):
            if -MAX_NUMBER <= value <= MAX_NUMBER:
                return True
            # the edge refuses a snapshot holding it (snapshot_checks.py)
            self.report(node, f"{what}: {as_written(node.text)} is too large",
                        f"a number within +-{MAX_NUMBER} (2^53 - 1), or text in quotes")
            return False
        self.report(node, f"{what}: {node.text} is {describe(node)}, which JSON cannot hold",
                    f'text in quotes, such as "{node.text}"')
        return False
