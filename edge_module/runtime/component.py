"""The wasmtime side of the component: engine, precompiled cache, one instance.

Facts this relies on: compiling the component takes seconds but deserializing a
precompiled file takes milliseconds, and a precompiled file is only valid for the wasmtime
version and Engine config that made it; a trap leaves the Store unusable, so an instance
is replaced, never reused, after one.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wcomponent

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
EPOCH_TICK_MS = 5
# Engine settings that change the machine code: part of the precompiled cache key.
ENGINE_SETTINGS = {"epoch_interruption": True, "consume_fuel": False}


def make_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = ENGINE_SETTINGS["epoch_interruption"]
    config.consume_fuel = ENGINE_SETTINGS["consume_fuel"]
    return wasmtime.Engine(config)


def cache_key(wasm: Path) -> str:
    """Names the precompiled file: wasm content, wasmtime version and engine settings."""
    digest = hashlib.sha256()
    with open(wasm, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    digest.update(WASMTIME_VERSION.encode())
    digest.update(json.dumps(ENGINE_SETTINGS, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def load_component(engine: wasmtime.Engine, wasm: Path, cache_dir: Path) -> wcomponent.Component:
    """The component from the precompiled cache, compiling (and caching) it on a miss."""
    cached = cache_dir / f"decision-engine-{cache_key(wasm)}.cwasm"
    if cached.exists():
        try:
            return wcomponent.Component.deserialize_file(engine, str(cached))
        except wasmtime.WasmtimeError:
            cached.unlink(missing_ok=True)  # stale or damaged: rebuild below
    component = wcomponent.Component.from_file(engine, str(wasm))
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(component.serialize())
    os.replace(tmp, cached)
    return component


class EpochTicker:
    """Advances the engine's epoch every `tick_ms` so deadlines can interrupt guests (a
    deadline is a number of ticks: its precision is one tick)."""

    def __init__(self, engine: wasmtime.Engine, tick_ms: int = EPOCH_TICK_MS) -> None:
        self._engine = engine
        self._tick = tick_ms / 1000.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="epoch-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


def describe_trap(message: str) -> str:
    """A one-line reason for a wasmtime trap message (which carries a whole backtrace)."""
    if "interrupt" in message:
        return "deadline exceeded: the guest ran past its epoch deadline"
    if "all fuel consumed" in message:
        return "fuel exhausted"
    if "unreachable" in message:
        return "guest aborted (unreachable)"
    if "memory" in message:
        return "guest memory limit"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return lines[-1] if lines else "trap"


class GuestTrap(Exception):
    """The guest trapped (deadline, memory, bug); its instance must be replaced."""


@dataclass(frozen=True)
class GuestResult:
    ok: bool
    text: str  # the result on success, a JSON error object otherwise


class Instance:
    """One Store and component instance. Not thread-safe: one caller at a time."""

    def __init__(self, engine: wasmtime.Engine, linker: wcomponent.Linker,
                 component: wcomponent.Component, memory_limit: int | None = None) -> None:
        self._store = wasmtime.Store(engine)
        # Without WASI configured the guest's first WASI call aborts the whole process.
        self._store.set_wasi(wasmtime.WasiConfig())
        if memory_limit:
            self._store.set_limits(memory_size=memory_limit)
        self._store.set_epoch_deadline(1000 // EPOCH_TICK_MS)
        instance = linker.instantiate(self._store, component)
        funcs = {}
        for name in ("load-snapshot", "decide", "decide-packed"):
            func = instance.get_func(self._store, name)
            if func is None:
                raise RuntimeError(f"component does not export {name}")
            funcs[name] = func
        self._load, self._decide, self._decide_packed = funcs.values()

    def _call(self, func: wcomponent.Func, arg: str, deadline_ms: int) -> GuestResult:
        try:
            ok, text = call_string_result(func, self._store, arg,
                                          max(1, deadline_ms // EPOCH_TICK_MS))
        except wasmtime.WasmtimeError as exc:
            raise GuestTrap(describe_trap(str(exc))) from None
        return GuestResult(ok, text)

    def load_snapshot(self, text: str, deadline_ms: int) -> GuestResult:
        """The guest's `load-snapshot`: its revision on success."""
        return self._call(self._load, text, deadline_ms)

    def decide_json(self, envelope: str, deadline_ms: int) -> GuestResult:
        """The portable export `decide`: JSON envelope in, JSON response and state out."""
        return self._call(self._decide, envelope, deadline_ms)

    def decide_packed(self, envelope: str, deadline_ms: int) -> GuestResult:
        """The host's fast path (see `edge_module.core.api.decide_packed`)."""
        return self._call(self._decide_packed, envelope, deadline_ms)


class _HeldGil:
    """The C functions a call needs around the guest's run, bound so that they keep the GIL.

    ctypes releases the GIL around every foreign call made through wasmtime-py's bindings,
    and taking it back waits for whichever thread took it meanwhile. Under load that is a
    hand-over per call, and a stall until the other thread's next release: four of them
    around each decision (a buffer, a copy, the deadline, two frees), for calls of a few
    nanoseconds each. Bound through `ctypes.PyDLL` the same functions keep the GIL; only
    the guest's run itself (`wasmtime_component_func_call`, through wasmtime-py's binding)
    lets other threads go on.
    """

    def __init__(self) -> None:
        lib = ctypes.PyDLL(ffi.dll._name)
        self.vec_new = lib.wasm_byte_vec_new
        self.vec_new.restype = None
        self.vec_new.argtypes = [ctypes.POINTER(ffi.wasm_byte_vec_t), ctypes.c_size_t,
                                 ctypes.c_char_p]
        self.val_delete = lib.wasmtime_component_val_delete
        self.val_delete.restype = None
        self.val_delete.argtypes = [ctypes.POINTER(ffi.wasmtime_component_val_t)]
        self.set_deadline = lib.wasmtime_context_set_epoch_deadline
        self.set_deadline.restype = None
        self.set_deadline.argtypes = [ctypes.POINTER(ffi.wasmtime_context_t), ctypes.c_uint64]


_held = _HeldGil()


def call_string_result(func: wcomponent.Func, store: wasmtime.Store, arg: str,
                       deadline_ticks: int | None = None) -> tuple[bool, str]:
    """Call a `func(string) -> result<string, string>` export; returns (is_ok, payload).
    With `deadline_ticks` the store's epoch deadline is set first (in the same breath).

    wasmtime-py's generic `Func.__call__` re-reads the function's type and walks the
    result variant in Python on every call; for this one signature that is most of the
    host-side cost, so the value is built and read directly, with the GIL kept except while
    the guest runs (`_HeldGil`). tests/edge/test_component_call.py checks it against the
    generic path.
    """
    context = store._context()
    if deadline_ticks is not None:
        _held.set_deadline(context, deadline_ticks)
    data = arg.encode()
    param = (ffi.wasmtime_component_val_t * 1)()
    param[0].kind = ffi.WASMTIME_COMPONENT_STRING
    _held.vec_new(ctypes.byref(param[0].of.string), len(data), data)
    result = ffi.wasmtime_component_val_t()
    try:
        error = ffi.wasmtime_component_func_call(
            ctypes.byref(func._func), context, param, 1, ctypes.byref(result), 1)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if result.kind != ffi.WASMTIME_COMPONENT_RESULT.value:
            raise TypeError("export does not return result<string, string>")
        ok = bool(result.of.result.is_ok)
        out = result.of.result.val.contents.of.string
        text = ctypes.string_at(out.data, out.size).decode()
        _held.val_delete(ctypes.byref(result))
        return ok, text
    finally:
        _held.val_delete(ctypes.byref(param[0]))
