"""The YAML examples of docs/rules-reference.md, each with the heading it is under:
the cases of the reference, authoring and example tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "rules-reference.md"


def yaml_examples() -> list[tuple[str, str]]:
    """(the heading it is under, the YAML text) for every ```yaml block."""
    examples = []
    heading = "top"
    text = REFERENCE.read_text()
    for match in re.finditer(r"^## ([^\n]+)$|^```yaml\n(.*?)^```$", text, re.MULTILINE | re.DOTALL):
        if match.group(1):
            heading = match.group(1)
        else:
            examples.append((heading, match.group(2)))
    return examples


EXAMPLES = yaml_examples()
IDS = [f"{i}-{heading}" for i, (heading, _) in enumerate(EXAMPLES)]
