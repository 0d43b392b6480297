"""Glob matching for page patterns and context globs, in linear time.

One matcher for every place a glob meets a visitor's text: the decision core (page scope,
`referrer` and `attribute` globs), the compiler (page index buckets) and recalibration.

Semantics (docs/rules-reference.md): a glob matches the WHOLE text; `*` matches any run of
characters, `/` included, possibly empty; a run of stars (`**`) means the same as one;
every other character stands for itself (`?`, `[`, `.` included). Context globs ignore
case (both sides lowercased with `str.lower`), page globs do not.

Why not a regex: `^/.*/.*/.*/reviews\\Z` backtracks polynomially (a 2,000-slash URL ran
each decision into its deadline). Here the literal parts between stars are placed
greedily, each at its leftmost occurrence after the previous one: that is exact for
star-only globs (a later placement never leaves more room than the leftmost one), and
costs one `str.find` per part, so at most O(len(glob) * len(text)), never exponential.
"""

from __future__ import annotations

STAR = "*"


def normalize(glob: str) -> str:
    """The glob with every run of stars folded into one (`**` means `*`)."""
    if STAR + STAR not in glob:
        return glob
    out = []
    prev = ""
    for ch in glob:
        if ch == STAR and prev == STAR:
            continue
        out.append(ch)
        prev = ch
    return "".join(out)


class Glob:
    """A compiled glob: its literal parts, ready for `match`."""

    __slots__ = ("text", "parts", "ignore_case", "_min_len")

    def __init__(self, glob: str, ignore_case: bool = False) -> None:
        self.text = normalize(glob)
        self.ignore_case = ignore_case
        source = self.text.lower() if ignore_case else self.text
        self.parts = tuple(source.split(STAR))  # one part: no star at all
        self._min_len = sum(len(p) for p in self.parts)

    def match(self, text: str) -> bool:
        """Whether the whole of `text` matches."""
        if self.ignore_case:
            text = text.lower()
        parts = self.parts
        if len(parts) == 1:
            return text == parts[0]
        if len(text) < self._min_len:
            return False
        first, last = parts[0], parts[-1]
        if not text.startswith(first):
            return False
        end = len(text) - len(last)
        if not text.endswith(last) or end < len(first):
            return False
        pos = len(first)
        for part in parts[1:-1]:
            if part:
                found = text.find(part, pos, end)
                if found < 0:
                    return False
                pos = found + len(part)
        return True

    def __repr__(self) -> str:
        return f"Glob({self.text!r}, ignore_case={self.ignore_case})"


def glob_match(glob: str, text: str, ignore_case: bool = False) -> bool:
    """Whether `text` matches `glob` (compile once with `Glob` when matching often)."""
    return Glob(glob, ignore_case).match(text)


_REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")


def from_legacy_regex(regex: str) -> str | None:
    """The glob a snapshot of the first format spelt as a regex (`^` + escaped parts joined
    by `.*` + `\\Z`), or None for any other regex: those are never run."""
    if not (regex.startswith("^") and regex.endswith("\\Z")):
        return None
    body = regex[1:-2]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum():
                return None  # `\d`, `\A`...: a class or an anchor, not an escaped literal
            out.append(body[i + 1])
            i += 2
        elif body.startswith(".*", i):
            out.append(STAR)
            i += 2
        elif ch in _REGEX_SPECIAL:
            return None
        else:
            out.append(ch)
            i += 1
    return "".join(out)
