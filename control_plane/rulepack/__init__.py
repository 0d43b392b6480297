"""Rule packs: YAML written by marketers, validated with positions, compiled into snapshots."""

from .compiler import compile_snapshot
from .model import ActionSpec, CapSpec, ConditionSpec, EventFilter, Pack, TriggerSpec
from .problems import Problem, RulePackError
from .validate import load_pack, load_pack_dir, load_pack_file

__all__ = [
    "ActionSpec",
    "CapSpec",
    "ConditionSpec",
    "EventFilter",
    "Pack",
    "Problem",
    "RulePackError",
    "TriggerSpec",
    "compile_snapshot",
    "load_pack",
    "load_pack_dir",
    "load_pack_file",
]
