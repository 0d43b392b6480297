"""The instance pool sends a session back to the instance that decided for it last when that
one is free (where the guest kept the session, edge_module/core/session_cache.py), never
waits for it when it is busy, and forgets it when the instance is replaced after a trap."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from edge_module.core import pack, unpack
from edge_module.runtime.component import GuestTrap, Instance
from edge_module.runtime.pool import InstancePool, PoolBusy
from tests.factories import T0, snapshot_text
from tests.factories import pack as pack_yaml

SNAPSHOT = snapshot_text(pack_yaml("""
id: nudge
page: /pricing
when: [{dwell: ">= 3s"}]
cap: {per_session: 1}
action: {content: discount}
"""))


@pytest.fixture
def pool(new_instance: Any) -> tuple[InstancePool, list[Any]]:
    """A pool of three real instances; `log` gets the index of each instance that decides."""
    log: list[int] = []
    made: list[Instance] = []

    def make() -> Instance:
        inst = new_instance()
        index = len(made)
        made.append(inst)
        decide = inst.decide_packed

        def recorded(envelope: str, deadline_ms: int) -> Any:
            log.append(index)
            return decide(envelope, deadline_ms)

        inst.decide_packed = recorded  # type: ignore[method-assign]
        return inst

    pool = InstancePool(make, 3, decide_deadline_ms=1000, acquire_timeout_s=0.5)
    pool.install(SNAPSHOT)
    return pool, log


class Visitor:
    def __init__(self, pool: InstancePool, session_id: str) -> None:
        self.pool, self.session_id, self.state, self.at = pool, session_id, None, 0
        self.shown: list[str] = []  # every action's trigger, over the visit

    def decide(self) -> dict[str, Any]:
        self.at += 1000
        request = {"session_id": self.session_id, "now_ms": T0 + self.at,
                   "events": [{"type": "page_view", "ts_ms": T0, "url": "/pricing"}]
                   if self.at == 1000 else []}
        result = self.pool.decide_packed(pack((None, self.state, request)), self.session_id)
        assert result.ok, result.text
        response, self.state = unpack(result.text)  # type: ignore[misc]
        self.shown += [action["trigger"] for action in response["actions"]]
        return response  # type: ignore[no-any-return]


def test_a_session_goes_back_to_the_instance_that_decided_for_it_last(pool):
    pool, log = pool
    a, b = Visitor(pool, "a"), Visitor(pool, "b")
    a.decide()
    first = log[-1]
    held = pool._acquire(None)  # the instance freed last: the one `a` used
    b.decide()  # so `b` gets another
    pool._release(held, None)
    assert log[-1] != first
    for _ in range(3):
        a.decide()
        assert log[-1] == first
        b.decide()
        assert log[-1] != first
    assert pool.returning == 6
    assert a.shown == b.shown == ["nudge"]  # at 3 s of dwell, once


def test_a_busy_instance_is_not_waited_for(pool):
    pool, log = pool
    a = Visitor(pool, "a")
    a.decide()
    first = log[-1]
    held = pool._acquire("a")  # the instance `a` would come back to is busy (checked out)
    assert pool.returning == 1
    try:
        a.decide()
        assert log[-1] != first and pool.returning == 1
    finally:
        pool._release(held, None)
    second = log[-1]
    a.decide()  # back to the one it went to last
    assert log[-1] == second and pool.returning == 2


def test_a_waiting_decision_gets_the_instance_freed_and_a_full_pool_answers_busy(new_instance):
    pool = InstancePool(new_instance, 1, decide_deadline_ms=1000, acquire_timeout_s=0.3)
    pool.install(SNAPSHOT)
    held = pool._acquire(None)
    with pytest.raises(PoolBusy):
        Visitor(pool, "late").decide()
    with pytest.raises(PoolBusy):
        pool.decide_packed_now(pack((None, None, {"session_id": "x", "now_ms": T0})), "x")
    pool.acquire_timeout_s = 10
    answers: list[Any] = []
    waiting = threading.Thread(target=lambda: answers.append(Visitor(pool, "w").decide()))
    waiting.start()
    pool._release(held, None)
    waiting.join(10)
    assert answers and answers[0]["actions"] == []
    assert pool.idle() == 1


def test_after_a_trap_the_session_is_decided_afresh_on_the_replacement(pool):
    pool, log = pool
    a = Visitor(pool, "a")
    a.decide()
    with pytest.raises(GuestTrap):  # a batch over the memory limit traps the guest
        huge = {"session_id": "a", "now_ms": T0 + 1500, "events": [
            {"type": "hover", "ts_ms": T0 + 1, "target": "#" + "x" * 60_000_000}]}
        pool.decide_packed(pack((None, a.state, huge)), "a")
    assert pool.traps == 1 and pool.idle() == 3
    assert "a" not in pool._served
    for _ in range(3):
        a.decide()
    assert a.shown == ["nudge"]


def test_a_session_id_the_guest_refuses_is_not_remembered(pool):
    pool, _log = pool
    long_id = "x" * 300  # beyond the core's limit: refused, whatever the host let through
    request = {"session_id": long_id, "now_ms": T0, "events": []}
    result = pool.decide_packed(pack((None, None, request)), long_id)
    assert not result.ok and "session_id" in result.text
    assert long_id not in pool._served and pool.idle() == 3
