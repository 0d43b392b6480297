"""Issue #11, item 11 (two suspicions, both confirmed and fixed): the instance pool reloaded
by revision label, so a new snapshot with an old label stayed unseen by all but one
instance; and a load stopped at its deadline (which a later try may survive) marked the
manifest rejected until the next publish. A snapshot that is bad for good stays rejected
without reloading in a loop. Real component, real edges on loopback."""

from __future__ import annotations

import json
import threading

import pytest

from edge_module.core.api import pack, unpack
from edge_module.distribution.edge_store import (
    LocalFolderStore,
    object_key,
    read_manifest,
    sha256_text,
)
from edge_module.runtime.component import EpochTicker, Instance, load_component, make_engine
from edge_module.runtime.pool import InstancePool
from tests.factories import T0, big_snapshot_text, snapshot_text
from tests.servers import BUILD, put_snapshot, running_edge, wait_for


def greeting(content: str, revision: str) -> str:
    """A snapshot that greets every page view with `content`."""
    return snapshot_text(f"pack: greet\ntriggers:\n  - id: greet\n    on: page_view\n"
                         f"    action: {{content: {content}}}\n", revision=revision)


class GatedInstance(Instance):
    """A real instance whose decisions wait for each other at a barrier, so that N
    concurrent decisions hold N different instances of the pool at once."""

    gate: threading.Barrier | None = None

    def decide_packed(self, envelope: str, deadline_ms: int):  # type: ignore[no-untyped-def]
        if GatedInstance.gate is not None:
            GatedInstance.gate.wait(timeout=30)
        return super().decide_packed(envelope, deadline_ms)


def decide_on_every_instance(pool: InstancePool) -> set[str]:
    """One decision on each instance of `pool`, concurrently: the contents they answered."""
    GatedInstance.gate = threading.Barrier(pool.size)
    contents: list[str] = []

    def one(n: int) -> None:
        request = {"session_id": f"s-{n}", "context": {"url": "/"},
                   "events": [{"type": "page_view", "ts_ms": T0}]}
        result = pool.decide_packed(pack((T0, None, request)))
        assert result.ok, result.text
        response, _ = unpack(result.text)  # type: ignore[misc]
        contents.extend(a["content"] for a in response["actions"])

    threads = [threading.Thread(target=one, args=(n,)) for n in range(pool.size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    GatedInstance.gate = None
    assert len(contents) == pool.size
    return set(contents)


@pytest.fixture(scope="module")
def component():
    from wasmtime import component as wcomponent

    engine = make_engine()
    ticker = EpochTicker(engine)
    ticker.start()
    linker = wcomponent.Linker(engine)
    linker.add_wasip2()
    yield engine, linker, load_component(engine, BUILD / "decision-engine.wasm", BUILD / "cache")
    ticker.stop()


@pytest.mark.parametrize("size", [2, 3])
def test_a_new_snapshot_under_an_old_label_reaches_every_instance(component, size):
    engine, linker, wasm = component
    pool = InstancePool(lambda: GatedInstance(engine, linker, wasm, memory_limit=64 << 20),
                        size)
    pool.install(greeting("hello-a", "1"))
    assert decide_on_every_instance(pool) == {"hello-a"}  # every instance holds it now
    # The same label, other content (a store started afresh, republished from 1).
    pool.install(greeting("hello-b", "1"))
    assert decide_on_every_instance(pool) == {"hello-b"}


# -- loads that may succeed later, and snapshots that never will --------------------------------

def test_a_load_stopped_at_its_deadline_is_tried_again_and_then_served(tmp_path):
    store = tmp_path / "store"
    put_snapshot(store, greeting("small", "1"), 1)
    with running_edge(store, load_deadline_ms=20, load_attempts=10) as edge:
        assert edge.health()["revision"] == "1"
        # Loading this takes far longer than 20 ms: the guest is stopped at its deadline.
        put_snapshot(store, big_snapshot_text(1500, revision="2"), 2)
        error = wait_for(lambda: edge.health()["last_error"], what="a load error")
        assert "attempt 1 of 10" in error and "trapped" in error
        assert edge.health()["revision"] == "1"
        # What slowed the load is over (here: the deadline a busy host might have missed).
        edge.host.app.pool.load_deadline_ms = 60_000
        wait_for(lambda: edge.health()["revision"] == "2", timeout_s=60,
                 what="the retried load to succeed")
        assert edge.health()["last_error"] is None


def test_a_snapshot_object_that_arrives_late_is_served_once_it_is_there(tmp_path):
    """The store not having (or not returning) the object yet is retried, never rejected."""
    store = LocalFolderStore(tmp_path / "store")
    put_snapshot(store, greeting("small", "1"), 1)
    with running_edge(tmp_path / "store") as edge:
        late = greeting("late", "2")
        # the signed manifest of revision 2 reaches the store before its object does
        signed = put_snapshot(LocalFolderStore(tmp_path / "elsewhere"), late, 2, sequence=2)
        store.put_manifest(json.dumps(signed).encode(), read_manifest(store)[1])
        assert "missing" in wait_for(lambda: edge.health()["last_error"], what="an error")
        assert edge.health()["revision"] == "1"
        store.put_object(object_key(sha256_text(late)), late.encode())
        wait_for(lambda: edge.health()["revision"] == "2", what="the late object served")
        assert edge.health()["last_error"] is None


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_snapshot_that_always_traps_is_rejected_after_its_attempts_and_left_alone(
        tmp_path, attempts):
    store = tmp_path / "store"
    put_snapshot(store, greeting("small", "1"), 1)
    with running_edge(store, load_deadline_ms=20, load_attempts=attempts) as edge:
        assert edge.health()["revision"] == "1"
        put_snapshot(store, big_snapshot_text(3000, revision="2"), 2)
        error = wait_for(lambda: (e := edge.health()["last_error"]) and "rejected" in e and e,
                         timeout_s=30, what="the snapshot rejected")
        assert f"after {attempts} attempt(s)" in error
        traps = edge.health()["traps"]
        assert traps == attempts  # each try cost one instance, and no more tries
        sync = edge.host.sync
        for _ in range(10):  # further polls do not load it again
            sync.run_once()
        health = edge.health()
        assert health["traps"] == attempts and health["revision"] == "1"
        assert edge.decide({"session_id": "x", "context": {"url": "/"},
                            "events": [{"type": "page_view", "ts_ms": T0}]})[0] == 200


def test_a_snapshot_the_guest_refuses_is_rejected_at_once(tmp_path):
    store = tmp_path / "store"
    put_snapshot(store, greeting("small", "1"), 1)
    with running_edge(store, load_attempts=5) as edge:
        put_snapshot(store, '{"format": "edge-triggers/1", "revision": "2", "triggers": 7}', 2)
        error = wait_for(lambda: edge.health()["last_error"], what="the rejection")
        assert "rejected" in error and "attempt" not in error
        for _ in range(5):
            edge.host.sync.run_once()
        assert edge.health()["last_error"] == error and edge.health()["revision"] == "1"
