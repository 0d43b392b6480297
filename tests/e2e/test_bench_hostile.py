"""`python -m loadtest.bench_hostile`: its cases are the batches they claim to be, and the
edge answers each (no timing here: the figures are the bench's, docs/performance.md)."""

from __future__ import annotations

import json

import pytest

from control_plane.rulepack import compile_snapshot, load_pack
from edge_module.core import decide_packed, load_snapshot, pack, unpack
from edge_module.core.errors import DecisionError
from edge_module.replay_client import T0
from loadtest import bench_hostile


def test_every_case_is_a_full_batch_the_edge_decides_or_refuses_by_its_limits():
    names = []
    for name, yaml_text, kind in bench_hostile.cases():
        events = bench_hostile._events(kind)
        assert len(events) == 500 and events == sorted(events, key=lambda e: e["ts_ms"])
        snap = load_snapshot(json.dumps(compile_snapshot([load_pack(yaml_text, "h.yaml")],
                                                         "h", 0)))
        envelope = pack((None, None, {"session_id": "h", "now_ms": T0 + 500,
                                      "context": {"url": "/p"}, "events": events}))
        if sum(e["type"] == "page_view" for e in events) > 32:
            with pytest.raises(DecisionError) as refused:
                decide_packed(snap, envelope)
            assert refused.value.code == "batch_too_large", name
        else:
            assert type(unpack(decide_packed(snap, envelope))[0]) is dict, name
        names.append(name)
    assert "deep-reader (sustained velocity)" in names
