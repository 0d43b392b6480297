"""Guest entry of the component: the WIT exports around the decision core.

Every exception becomes an Err carrying a JSON error, so bad input never traps the
instance. The loaded snapshot and the sessions kept between requests live at module
level: each export call gets a fresh `self`.
"""

import wit_world
from componentize_py_types import Err

from edge_module.core import Snapshot, decide_json, decide_packed, error_json, load_snapshot
from edge_module.core.session_cache import SessionCache

_snapshot: Snapshot | None = None
_sessions = SessionCache()


class WitWorld(wit_world.WitWorld):
    def load_snapshot(self, snapshot: str) -> str:
        global _snapshot
        _sessions.clear()  # before the new snapshot is built: memory for both at once
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
            return decide_packed(_snapshot, envelope, _sessions)
        except BaseException as exc:  # noqa: BLE001
            raise Err(error_json(exc)) from None
