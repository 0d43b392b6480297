"""Who may call what: publishers write rule packs and snapshots, edges report.

Tokens are bearer tokens, compared in constant time, never logged. A missing token is
401, a wrong one 403. With no token configured for a role, that role's calls are refused
(the embedded default, `./build.sh up`, generates one of each in the data folder).
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from pathlib import Path
from typing import Any, Callable

from flask import current_app, request

from .errors import ApiError

log = logging.getLogger("control_plane.auth")
ROLES = ("publisher", "edge")


def configured_tokens(config: dict[str, Any], role: str) -> list[str]:
    """Tokens from CONTROL_<ROLE>_TOKENS (comma-separated), else DATA_DIR/<role>.token."""
    raw = config.get(f"{role.upper()}_TOKENS") or ""
    tokens = [t.strip() for t in str(raw).split(",") if t.strip()]
    if not tokens:
        path = Path(config["DATA_DIR"]) / f"{role}.token"
        if path.exists():
            tokens = [path.read_text().strip()]
    return [t for t in tokens if t]


def ensure_token_file(data_dir: str | Path, role: str) -> str:
    """The role's token file, created with a random token if missing (returns the token)."""
    path = Path(data_dir) / f"{role}.token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def require(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view decorator: the caller must present a token of `role`."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            check(role)
            return view(*args, **kwargs)

        return guarded

    return decorate


def check(role: str) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    where = f"{request.method} {request.path} from {request.remote_addr}"
    if scheme.lower() != "bearer" or not token.strip():
        log.warning("refused %s: no %s token", where, role)
        raise ApiError(401, "unauthorized", f"this call needs a {role} token "
                       "(Authorization: Bearer <token>)", www_authenticate="Bearer")
    tokens = configured_tokens(current_app.config, role)
    if not any(hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens):
        log.warning("refused %s: wrong %s token", where, role)
        raise ApiError(403, "forbidden", f"the token presented is not a valid {role} token")
