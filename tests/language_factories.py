"""Small factories for the rule-language tests: packs from YAML fragments, their problems
and their snapshots."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest

from control_plane.rulepack import Problem, RulePackError, compile_snapshot, load_pack
from control_plane.rulepack.source import parse_yaml, plain


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def indent(text: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in dedent(text).rstrip("\n").splitlines())


def trigger(body: str = "", tid: str = "t1", action: str = "content: c1") -> str:
    """One trigger as a `triggers:` list item; `body` (dedented) goes under `- id: <tid>`."""
    return f"  - id: {tid}\n{indent(body, 4) if body.strip() else ''}    action: {{{action}}}\n"


def pack(*triggers: str, top: str = "", name: str = "test-pack") -> str:
    """A pack: `top` (dedented: settings, segments, models, sequences...) then triggers."""
    text = f"pack: {name}\n" + (dedent(top) if top.strip() else "")
    if triggers:
        text += "triggers:\n" + "".join(triggers)
    return text


def when(*conditions: str, top: str = "") -> str:
    """A pack with one trigger `t1` whose `when` lists `conditions` (YAML flow items)."""
    return pack(trigger("when:\n" + "".join(f"  - {c}\n" for c in conditions)), top=top)


def problems_of(text: str, filename: str = "p.yaml") -> list[Problem]:
    with pytest.raises(RulePackError) as info:
        load_pack(text, filename)
    return info.value.problems


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def compiled(*texts: str) -> dict:
    packs = [load_pack(t, f"pack{i}.yaml") for i, t in enumerate(texts)]
    return compile_snapshot(packs, "rev-1", 0)


def first_trigger(*texts: str) -> dict:
    return compiled(*texts)["triggers"][0]


def conditions(*conds: str, top: str = "") -> list[dict]:
    return first_trigger(when(*conds, top=top))["when"]


def compile_problems(*texts: str) -> list[Problem]:
    """The problems only all packs together show (each pack is valid alone)."""
    packs = [load_pack(t, f"pack{i}.yaml") for i, t in enumerate(texts)]
    with pytest.raises(RulePackError) as info:
        compile_snapshot(packs, "rev-1", 0)
    return info.value.problems


def only_compile_problem(*texts: str) -> Problem:
    problems = compile_problems(*texts)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


SEGMENTS = """
segments:
  mobile: {device: mobile}
  gold: {attribute: {name: crm_tier, in: [gold, platinum]}}
"""


def schema_validator() -> jsonschema.Draft7Validator:
    """A validator of the committed rules/schema.json (what editors use)."""
    rules = Path(__file__).resolve().parents[1] / "rules"
    return jsonschema.Draft7Validator(json.loads((rules / "schema.json").read_text()))


def as_json(text: str) -> object:
    """A pack's YAML as the plain JSON value a schema validator sees."""
    root, problems = parse_yaml(textwrap.dedent(text), "p.yaml")
    assert root is not None and not problems
    return plain(root)
