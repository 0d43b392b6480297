"""The malformed-pack corpus (tests/data/malformed/): each file's header says where
`trigger-engine validate` must point (file:line:column), what it must say, and the
suggestion it must make ("none": no suggestion)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from control_plane.cli import cli
from control_plane.rulepack import RulePackError, is_pack_file, load_pack_set

CORPUS = Path(__file__).resolve().parents[1] / "data" / "malformed"
FILES = sorted(p for p in CORPUS.glob("*.yaml") if is_pack_file(p.name))
_HEADER = re.compile(r"^# (at|message|suggestion): (.*)$", re.MULTILINE)


def expectation(path: Path) -> dict[str, str]:
    return dict(_HEADER.findall(path.read_text()))


def reported_line(path: Path, at: str, output: str) -> str:
    prefix = f"{path}:{at}: "
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert lines, f"nothing reported at {prefix!r}:\n{output}"
    return lines[0]


def test_the_corpus_holds_at_least_thirty_malformed_packs():
    assert len(FILES) >= 30
    assert all(set(expectation(p)) == {"at", "message", "suggestion"} for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_validate_reports_the_mistake_at_its_position_with_its_suggestion(path):
    expected = expectation(path)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    line = reported_line(path, expected["at"], result.stderr)
    assert expected["message"] in line
    if expected["suggestion"] == "none":
        assert "did you mean" not in line
    else:
        assert f"did you mean {expected['suggestion']!r}?" in line


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_mistake_is_the_problem_reported_first(path):
    expected = expectation(path)
    with pytest.raises(RulePackError) as info:
        load_pack_set([path])
    first = info.value.problems[0]
    assert f"{first.line}:{first.column}" == expected["at"]
    assert first.suggestion == (None if expected["suggestion"] == "none"
                                else expected["suggestion"])
