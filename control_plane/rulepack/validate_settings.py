"""Checking a pack's settings: max_actions, fatigue limits, the experiment's arms and
report_features."""

from __future__ import annotations

from edge_module.core.catalog import FATIGUE_CHANNELS

from .checker import Checker
from .source import Node
from .validated import ExperimentSpec, FatigueSpec, SettingsSpec
from .vocabulary import MAX_ACTIONS_LIMIT

SETTINGS_KEYS = ("max_actions", "fatigue", "experiment", "report_features")
FATIGUE_KEYS = ("per_session", "per_minute", "quiet_after_dismiss", "channels")
EXPERIMENT_ARMS = ("adaptive", "static", "holdout")
EXPERIMENT_KEYS = ("salt", *EXPERIMENT_ARMS)
DEFAULT_EXPERIMENT_SALT = "experiment"


class SettingsChecker(Checker):
    """The checks of the `settings:` section."""

    def settings(self, node: Node) -> SettingsSpec | None:
        body = self.mapping(node, "settings",
                            "a mapping with max_actions, fatigue, experiment and/or "
                            "report_features")
        if body is None:
            return None
        found, _ = self.keys(body, SETTINGS_KEYS, (), "settings")
        max_actions = (self.integer(found["max_actions"], "max_actions", 1, MAX_ACTIONS_LIMIT)
                       if "max_actions" in found else None)
        fatigue = self.fatigue(found["fatigue"]) if "fatigue" in found else None
        experiment = self.experiment(found["experiment"]) if "experiment" in found else None
        report_features = (self.boolean(found["report_features"], "report_features")
                           if "report_features" in found else None)
        return SettingsSpec(max_actions, fatigue, experiment, report_features,
                            line=body.line, column=body.column)

    def experiment(self, node: Node) -> ExperimentSpec | None:
        """settings.experiment: every arm a percentage (a missing arm is 0%), adding up to
        100%; salt optional."""
        expected = ("a mapping such as {salt: q4, adaptive: 45%, static: 45%, holdout: 10%} "
                    "whose arms add up to 100%")
        body = self.mapping(node, "experiment", expected)
        if body is None:
            return None
        found, _ = self.keys(body, EXPERIMENT_KEYS, (), "experiment")
        # A misspelt arm is one mistake: "unknown key 'statc'" says it, not a sum too.
        ok = len(found) == len(body.entries)
        salt = (self.text(found["salt"], "salt", "a text such as q4") if "salt" in found
                else DEFAULT_EXPERIMENT_SALT)
        shares: dict[str, float] = {}
        ok = ok and salt is not None
        for arm in EXPERIMENT_ARMS:
            if arm not in found:
                shares[arm] = 0.0
                continue
            value = self.percent(found[arm], f"experiment {arm}")
            if value is None:
                ok = False
            else:
                shares[arm] = float(value)
        if ok and len(shares) == len(EXPERIMENT_ARMS):
            total = sum(shares.values())
            if abs(total - 100) > 1e-6:
                parts = " + ".join(f"{arm} {shares[arm]:g}%" for arm in EXPERIMENT_ARMS)
                missing = [arm for arm in EXPERIMENT_ARMS if arm not in found]
                fix = (f"{missing[0]}: {100 - total:g}%" if len(missing) == 1 and total < 100
                       else None)
                self.report(body, f"the experiment's arms add up to {total:g}% ({parts})",
                            "adaptive, static and holdout shares that add up to 100% "
                            "(a missing arm is 0%)", fix)
                ok = False
        if not ok:
            return None
        return ExperimentSpec(salt or DEFAULT_EXPERIMENT_SALT, shares["adaptive"],
                              shares["static"], shares["holdout"],
                              line=body.line, column=body.column)

    def fatigue(self, node: Node) -> FatigueSpec | None:
        found = self.mapping_keys(node, "fatigue", "a mapping such as {per_session: 5, "
                                  "per_minute: 2, quiet_after_dismiss: 60s}", FATIGUE_KEYS)
        if found is None:
            return None
        limits = {key: self.integer(found[key], key, 1, None,
                                    f"an integer >= 1; leave {key} out for no limit")
                  for key in ("per_session", "per_minute") if key in found}
        quiet = (self.duration(found["quiet_after_dismiss"], "quiet_after_dismiss") or 0) \
            if "quiet_after_dismiss" in found else 0
        channels = (self.choice(found["channels"], "channels", FATIGUE_CHANNELS)
                    if "channels" in found else None)
        return FatigueSpec(limits.get("per_session"), limits.get("per_minute"), quiet,
                           channels)
