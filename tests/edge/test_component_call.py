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


def test_only_the_guests_run_lets_other_threads_take_the_gil():
    # The calls around it keep the GIL (a hand-over per tiny call stalls both deciders under
    # load: docs/performance.md, 2026-12-06 late); the guest's run itself must not.
    import ctypes

    from wasmtime import _bindings

    from edge_module.runtime.component import _held

    keeps = ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
    for fn in (_held.vec_new, _held.val_delete, _held.set_deadline):
        assert fn._flags_ & keeps
    assert not _bindings._wasmtime_component_func_call._flags_ & keeps
