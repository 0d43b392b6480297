"""The host's direct call path gives what wasmtime-py's generic call gives."""

from __future__ import annotations

import pytest

from edge_module.runtime.component import call_string_result


@pytest.mark.parametrize("arg", ["{not json", "", "x" * 100_000, "ünïcødé ✓ 🚀",
                                 '{"request": {"session_id": "s", "now_ms": 5}}'])
def test_direct_call_matches_the_generic_call(new_instance, arg):
    inst = new_instance()
    store, func = inst._store, inst._decide
    store.set_epoch_deadline(10_000)
    generic = func(store, arg)
    store.set_epoch_deadline(10_000)
    assert call_string_result(func, store, arg) == (generic.tag == "ok", generic.payload)


def test_a_non_latin_payload_survives_the_packed_path(new_instance):
    from edge_module.core import pack, unpack
    from tests.cases_decisions import PRICING
    from tests.factories import snapshot_text

    inst = new_instance()
    assert inst.load_snapshot(snapshot_text(PRICING), 5000).ok
    request = {"session_id": "sé-🚀", "now_ms": 10, "context": {"url": "/prïcing"},
               "events": [{"type": "click", "ts_ms": 1, "target": "#bütton 🚀"}]}
    result = inst.decide_packed(pack((None, None, request)), 1000)
    assert result.ok
    response, state = unpack(result.text)
    assert response["actions"] == [] and isinstance(state, bytes)
