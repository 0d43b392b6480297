"""Every example of docs/rules-reference.md compiles into a snapshot the decision core loads.

What each example does once loaded (fires, does not fire) is specified in
tests/core/test_language_semantics.py.
"""

from __future__ import annotations

import json

import pytest

from control_plane.rulepack import compile_snapshot, load_pack
from edge_module.core import load_snapshot
from tests.reference_examples import EXAMPLES, IDS


@pytest.mark.parametrize("heading, text", EXAMPLES, ids=IDS)
def test_each_example_loads_into_the_decision_core(heading, text):
    snapshot = compile_snapshot([load_pack(text, f"{heading}.yaml")], "doc", 0)
    loaded = load_snapshot(json.dumps(snapshot))
    assert sorted(loaded.by_id) == sorted(t["id"] for t in snapshot["triggers"])
