"""Shared fixtures: the real component (built if needed), deciders, free ports."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.factories import ComponentDecider, NativeDecider, PooledDecider  # noqa: E402

BUILD = ROOT / "build"


@pytest.fixture(scope="session")
def wasm_runtime() -> Iterator[Any]:
    """Engine, linker and component, from the precompiled cache (built on first use)."""
    from wasmtime import component as wcomponent

    from edge_module.build import build
    from edge_module.runtime.component import EpochTicker, load_component, make_engine

    wasm = build(BUILD)
    engine = make_engine()
    component = load_component(engine, wasm, BUILD / "cache")
    linker = wcomponent.Linker(engine)
    linker.add_wasip2()
    ticker = EpochTicker(engine)
    ticker.start()
    yield engine, linker, component
    ticker.stop()


@pytest.fixture
def new_instance(wasm_runtime: Any) -> Any:
    """A factory of fresh component instances (one Store each)."""
    from edge_module.runtime.component import Instance

    engine, linker, component = wasm_runtime

    def make(memory_limit: int | None = 64 * 1024 * 1024) -> Instance:
        return Instance(engine, linker, component, memory_limit=memory_limit)

    return make


@pytest.fixture(params=["native", "component", "packed"])
def decider(request: pytest.FixtureRequest) -> Any:
    """Each semantic test runs three times: on the core natively, inside the real component
    through its JSON export, and through an instance pool on the packed path the host serves."""
    from edge_module.runtime.pool import InstancePool

    if request.param == "native":
        return NativeDecider()
    new_instance = request.getfixturevalue("new_instance")
    if request.param == "component":
        return ComponentDecider(new_instance())
    return PooledDecider(InstancePool(new_instance, 1, decide_deadline_ms=1000))


@pytest.fixture
def redis_server() -> Iterator[Any]:
    """A throwaway redis-server on a free loopback port (the package must be installed)."""
    from tests.redis_server import running_redis

    try:
        with running_redis() as server:
            yield server
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
