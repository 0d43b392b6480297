"""How much one rule-pack file may ask of the YAML reader (`PackLimits`), and the limits in
force in the current context: the control plane sets them per request from its
configuration, tools read with the defaults."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

from .problems import RulePackError


@dataclass(frozen=True)
class PackLimits:
    """How much one YAML file may ask of the reader; the control plane sets them from its
    configuration (CONTROL_MAX_PACK_*), tools use these defaults."""

    bytes: int = 256 * 1024  # the file's UTF-8 bytes, and its scalar text once aliases expand
    nodes: int = 20_000  # YAML nodes once every alias is written out (500 plain triggers: 15k)
    triggers: int = 500  # triggers plus sequence steps in one pack
    conditions_per_trigger: int = 32  # items of `when` lists in one trigger (or step)
    conditions: int = 2_000  # items of `when` lists in the whole pack


_DEFAULT_LIMITS = PackLimits()  # frozen: one shared default is safe
_LIMITS: ContextVar[PackLimits] = ContextVar("pack_limits", default=_DEFAULT_LIMITS)


def pack_limits() -> PackLimits:
    """The limits `parse_yaml` applies here and now."""
    return _LIMITS.get()


def set_pack_limits(limits: PackLimits) -> Token[PackLimits]:
    """Apply `limits` to the files read from now on in this context (an HTTP request);
    `reset_pack_limits(token)` undoes it."""
    return _LIMITS.set(limits)


def reset_pack_limits(token: Token[PackLimits]) -> None:
    _LIMITS.reset(token)


class PackLimitError(RulePackError):
    """A file over one of its `PackLimits`: refused before it is validated or compiled."""
