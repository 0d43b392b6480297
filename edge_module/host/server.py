"""`edge-host` (`python -m edge_module.host.server`): read the EDGE_* settings, refuse what
cannot start, and serve the edge API with the server EDGE_SERVER names (granian by default,
`granian_server.py`; or waitress, `waitress_server.py`). The API itself is `app.py`, its
wiring `edge_host.py`."""

from __future__ import annotations

import socket
import sys

from ..sessions.session_store import SessionStoreUnavailable
from .config import ConfigError, EdgeConfig
from .edge_host import configure_logging, make_session_store


def serve(config: EdgeConfig) -> None:
    """Serve the edge API with the server `config.server` names until SIGTERM or Ctrl-C."""
    if config.workers > 1 and (config.metrics_token or config.metrics_address):
        from edge_module.http.metrics import use_multiprocess_dir

        # before the workers start: each keeps its metrics there, a scrape adds them up
        use_multiprocess_dir(config.state_dir / "metrics")
    if config.server == "waitress":
        from edge_module.http.waitress_server import serve_waitress

        serve_waitress(config)
    elif config.server == "loop":
        from edge_module.http.loop_server import serve_loop

        serve_loop(config)
    else:
        from edge_module.http.granian_server import serve_granian

        serve_granian(config)


def main() -> int:
    try:
        config = EdgeConfig.from_env()
    except ConfigError as exc:
        print(f"edge-host: {exc}", file=sys.stderr)
        return 2
    configure_logging(config)
    if not config.component.exists():
        print(f"edge-host: {config.component} not found; run ./build.sh build first",
              file=sys.stderr)
        return 2
    problem = _cannot_start(config)
    if problem:
        print(f"edge-host: {problem}", file=sys.stderr)
        return 2
    if config.session_store.startswith("lmdb"):
        try:  # a store the workers cannot open is refused here, not in a respawn loop
            make_session_store(config).close()
        except SessionStoreUnavailable as exc:
            print(f"edge-host: {exc}", file=sys.stderr)
            return 2
    serve(config)
    return 0


def _cannot_start(config: EdgeConfig) -> str | None:
    """Why the host would fail once its workers run, checked here where it can be said in
    one line (a worker dying with a traceback, respawned, says it badly)."""
    if config.state_dir.exists() and not config.state_dir.is_dir():
        return f"EDGE_STATE_DIR={config.state_dir}: not a folder"
    with open(config.component, "rb") as wasm:
        if wasm.read(4) != b"\0asm":
            return f"EDGE_COMPONENT={config.component}: not a WebAssembly component"
    try:
        from edge_module.http.outcome_tokens import load_key

        load_key(config.outcome_key, config.state_dir)
    except (ValueError, OSError) as exc:
        return f"outcome key: {exc}"
    places = [("EDGE_HOST/EDGE_PORT", config.host, config.port)]
    if config.metrics_address:
        host, _, port = config.metrics_address.rpartition(":")
        places.append(("EDGE_METRICS_ADDRESS", host, int(port)))
    for what, host, port in places:
        host = host.strip("[]")  # [::1]:9464
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:  # taken, or not an address of this machine: granian would fail in Rust
            with socket.create_server((host, port), family=family):
                pass
        except OSError as exc:
            return f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
