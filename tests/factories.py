"""Small factories for tests: snapshots from YAML text, requests, and both deciders."""

from __future__ import annotations

import json
import marshal
import textwrap
from dataclasses import dataclass
from typing import Any, Protocol

from control_plane.rulepack import compile_snapshot, load_pack
from edge_module.core import Snapshot, decide_json, error_json, load_snapshot, unpack
from edge_module.core import pack as pack_value
from edge_module.replay_client import T0, ReplayClient  # T0: tests give times from it


def snapshot_text(*pack_yaml: str, revision: str = "1") -> str:
    """Compile YAML packs (dedented) into snapshot JSON text."""
    packs = [load_pack(textwrap.dedent(text), f"pack{i}.yaml") for i, text in enumerate(pack_yaml)]
    return json.dumps(compile_snapshot(packs, revision, 0), separators=(",", ":"))


def loaded(decider: Decider, *packs: str) -> Decider:
    """`decider` with a snapshot of `packs` loaded (asserted to load)."""
    out = decider.load(snapshot_text(*packs))
    assert out.ok, out.text
    return decider


def big_snapshot_text(triggers: int, revision: str) -> str:
    """A valid snapshot of `triggers` triggers (one page each), built without the pack
    compiler's size limits: slow to load on purpose."""
    base = json.loads(snapshot_text("pack: huge\ntriggers:\n  - {id: t0, page: /p0, when: "
                                    "[{dwell: '>= 1s'}], action: {content: c}}\n",
                                    revision=revision))
    trigger = base["triggers"][0]
    base["triggers"] = [{**trigger, "id": f"t{i}", "pages": [f"/p{i}"], "salt": f"t{i}"}
                        for i in range(triggers)]
    base["index"] = {**base["index"], "exact": {f"/p{i}": [i] for i in range(triggers)}}
    return json.dumps(base, separators=(",", ":"))


def pack(*triggers: str, name: str = "test-pack") -> str:
    """A pack YAML text from trigger YAML blocks (each dedented, starting with `id:`)."""
    body = "".join(
        "  - " + textwrap.indent(textwrap.dedent(t).strip(), "    ")[4:] + "\n" for t in triggers
    )
    return f"pack: {name}\ntriggers:\n{body}"


def ev(kind: str, at: int, **fields: Any) -> dict[str, Any]:
    """An event `at` ms after T0."""
    return {"type": kind, "ts_ms": T0 + at, **fields}


def request(events: list[dict[str, Any]], now: int | None, session: str = "s-1",
            url: str = "/", **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"session_id": session, "context": {"url": url}, "events": events}
    if now is not None:
        req["now_ms"] = T0 + now
    req.update(extra)
    return req


def envelope(req: Any, state: Any = None, host_now: int | None = None) -> str:
    return json.dumps({"now_ms": host_now, "state": state, "request": req})


@dataclass
class Outcome:
    ok: bool
    text: str

    @property
    def response(self) -> dict[str, Any]:
        assert self.ok, self.text
        return json.loads(self.text.partition("\n")[0])

    @property
    def state(self) -> Any:
        assert self.ok, self.text
        return json.loads(self.text.partition("\n")[2])

    @property
    def error(self) -> dict[str, Any]:
        assert not self.ok, self.text
        return json.loads(self.text)


class Decider(Protocol):
    def load(self, snapshot: str) -> Outcome: ...
    def decide(self, envelope: str) -> Outcome: ...


class NativeDecider:
    """The decision core called directly, exactly as the guest calls it."""

    def __init__(self) -> None:
        self._snap: Snapshot | None = None

    def load(self, snapshot: str) -> Outcome:
        try:
            self._snap = load_snapshot(snapshot)
        except BaseException as exc:  # noqa: BLE001 - mirror the guest
            return Outcome(False, error_json(exc))
        return Outcome(True, self._snap.revision)

    def decide(self, envelope: str) -> Outcome:
        try:
            return Outcome(True, decide_json(self._snap, envelope))
        except BaseException as exc:  # noqa: BLE001
            return Outcome(False, error_json(exc))


class ComponentDecider:
    """The real Wasm component in wasmtime, through its JSON export (`Instance.decide_json`)."""

    def __init__(self, instance: Any) -> None:
        self._inst = instance

    def load(self, snapshot: str) -> Outcome:
        r = self._inst.load_snapshot(snapshot, 5000)
        return Outcome(r.ok, r.text)

    def decide(self, envelope: str) -> Outcome:
        r = self._inst.decide_json(envelope, 1000)
        return Outcome(r.ok, r.text)


class PooledDecider:
    """The real component as the edge host calls it: a packed envelope through an
    `InstancePool` (`decide_packed`), the session state carried as the guest's own bytes.
    Answers are rendered as JSON so tests read them as they read the other deciders'."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        # the state as tests see it (JSON) -> the bytes the guest returned with it, passed
        # back unchanged as the host's session store does
        self._blobs: dict[str, bytes] = {}

    def load(self, snapshot: str) -> Outcome:
        from edge_module.runtime.pool import SnapshotRejected

        try:
            return Outcome(True, self._pool.install(snapshot))
        except SnapshotRejected as exc:
            return Outcome(False, json.dumps({"message": exc.reason}))

    def decide(self, envelope: str) -> Outcome:
        try:
            env = json.loads(envelope)
        except ValueError:
            env = None
        if type(env) is dict:
            state = env.get("state")
            blob = None if state is None else self._blobs.get(
                json.dumps(state), marshal.dumps(state))
            items: tuple[Any, ...] = (env.get("now_ms"), blob, env.get("request"))
            packed = pack_value(items + (True,) if env.get("report") is True else items)
        else:
            packed = envelope  # not an envelope: the guest gets it as it is
        result = self._pool.decide_packed(packed)
        if not result.ok:
            return Outcome(False, result.text)
        response, blob = unpack(result.text)
        state_text = json.dumps(marshal.loads(blob))
        self._blobs[state_text] = blob
        return Outcome(True, json.dumps(response) + "\n" + state_text)


class Session:
    """Drives one visitor's session through a decider, carrying the state like the host."""

    def __init__(self, decider: Decider, url: str = "/", session: str = "s-1") -> None:
        self.decider = decider
        self.url = url
        self.session = session
        self.client = ReplayClient(self._decide, session)

    @property
    def state(self) -> Any:
        return self.client.state

    def _decide(self, req: dict[str, Any], state: Any, _now: int | None) -> dict[str, Any]:
        out = self.decider.decide(envelope(req, state))
        return {**out.response, "state": out.state}

    def send(self, events: list[dict[str, Any]], now: int, **extra: Any) -> dict[str, Any]:
        return self.client.send(request(events, now, self.session, self.url, **extra))
