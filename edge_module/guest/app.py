"""Guest entry of the component: the WIT exports around the decision core.

Every exception becomes an Err carrying a JSON error, so bad input never traps the
instance. The loaded snapshot lives at module level: each export call gets a fresh `self`.
"""

import wit_world
from componentize_py_types import Err

from edge_module.core import Snapshot, decide_json, decide_packed, error_json, load_snapshot

_snapshot: Snapshot | None = None


class WitWorld(wit_world.WitWorld):
    def load_snapshot(self, snapshot: str) -> str:
        global _snapshot
        try:
            loaded = load_snapshot(snapshot)
        except BaseException as exc:  # noqa: BLE001 - nothing may trap the instance
            raise Err(error_json(exc)) from None
        _snapshot = loaded
        return loaded.revision

    def decide(self, envelope: str) -> str:
        try:
            return decide_json(_snapshot, envelope)
        except BaseException as exc:  # noqa: BLE001
            raise Err(error_json(exc)) from None

    def decide_packed(self, envelope: str) -> str:
        try:
            return decide_packed(_snapshot, envelope)
        except BaseException as exc:  # noqa: BLE001
            raise Err(error_json(exc)) from None
