"""What is wrong with a rule pack, and where: one `Problem` per mistake."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One mistake in one file; `line` and `column` are 1-based."""

    file: str
    line: int
    column: int
    message: str
    trigger: str | None = None
    expected: str | None = None
    suggestion: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: "
        scope = f"[{self.trigger}] " if self.trigger else ""
        hints = []
        if self.expected:
            hints.append(f"expected {self.expected}")
        if self.suggestion:
            hints.append(f"did you mean {self.suggestion!r}?")
        tail = f" ({'; '.join(hints)})" if hints else ""
        return f"{where}{scope}{self.message}{tail}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in reading order (file, line, column); ties keep the order they were found in."""
    return sorted(problems, key=lambda p: (p.file, p.line, p.column))


def problems_by_file(problems: Iterable[Problem], files: Iterable[str] = ()) -> list[Problem]:
    """Problems file by file, `files` first in their order, any other file in the order its
    first problem was found; in reading order within a file, ties as they were found."""
    problems = list(problems)
    order = {f: i for i, f in enumerate(dict.fromkeys([*files, *(p.file for p in problems)]))}
    return sorted(problems, key=lambda p: (order[p.file], p.line, p.column))


class RulePackError(Exception):
    """Rule packs that cannot be used; `problems` lists every mistake found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
