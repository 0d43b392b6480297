"""Rule packs: YAML written by marketers, validated with positions, compiled into snapshots."""

from .compiler import compile_snapshot
from .content_catalog import ContentCatalog, find_catalog, load_catalog, unknown_content
from .pack_set import PackSet, load_pack_set
from .problems import Problem, RulePackError
from .validate import is_pack_file, load_pack, load_pack_dir, load_pack_file
from .validated import ActionSpec, CapSpec, ConditionSpec, EventFilter, Pack, TriggerSpec

__all__ = [
    "ActionSpec",
    "CapSpec",
    "ConditionSpec",
    "ContentCatalog",
    "EventFilter",
    "Pack",
    "PackSet",
    "Problem",
    "RulePackError",
    "TriggerSpec",
    "compile_snapshot",
    "find_catalog",
    "is_pack_file",
    "load_catalog",
    "load_pack",
    "load_pack_dir",
    "load_pack_file",
    "load_pack_set",
    "unknown_content",
]
