"""Who may call what: publishers write rule packs and snapshots, edges report, authors
validate and compile drafts (a publisher token does too), viewers read the console, and
metrics scrapers read /metrics.

Tokens are bearer tokens, compared in constant time, never logged. A missing token is
401, a wrong one 403. With no token configured for a role, that role's calls are refused
(the embedded default, `./build.sh up`, generates one of each in the data folder).

An edge token is shared by a fleet (CONTROL_EDGE_TOKENS: its holder may report as any
edge) or bound to one edge id (CONTROL_BOUND_EDGE_TOKENS, `edge-id=token`): a call made
with a bound token may speak for that edge only (`claimed_edge`).
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from pathlib import Path
from typing import Any, Callable

from flask import current_app, g, request

from .config import MIN_TOKEN_CHARS, bound_edge_tokens
from .errors import ApiError

log = logging.getLogger("control_plane.auth")
ROLES = ("publisher", "edge", "author", "viewer", "metrics")


def configured_tokens(config: dict[str, Any], role: str) -> list[str]:
    """Tokens from CONTROL_<ROLE>_TOKENS (comma-separated), else DATA_DIR/<role>.token;
    for edges, the bound ones too."""
    tokens = _listed(config, role)
    if role == "edge":
        tokens += list(bound_edge_tokens(config).values())
    return tokens


def _listed(config: dict[str, Any], role: str) -> list[str]:
    raw = config.get(f"{role.upper()}_TOKENS") or ""
    tokens = [t.strip() for t in str(raw).split(",") if t.strip()]
    if not tokens:
        path = Path(config["DATA_DIR"]) / f"{role}.token"
        if path.exists():
            tokens = [path.read_text().strip()]
    # A token written since the start (a file edited by hand) is held to the start's rule
    # too: one shorter than MIN_TOKEN_CHARS, guessable online, lets nobody in.
    return [t for t in tokens if len(t) >= MIN_TOKEN_CHARS]


def claimed_edge() -> str | None:
    """The edge id the request's token is bound to (None: a shared edge token, or another
    role's); set by `check`."""
    return g.get("bound_edge_id")


MAX_WORKERS = 64  # EDGE_WORKERS' upper bound: a bound edge has at most this many names
_WORKER_SUFFIXES = frozenset(f"/w{k}" for k in range(1, MAX_WORKERS + 1))


def may_speak_for(edge_id: object) -> bool:
    """Whether this request may report as `edge_id`: any id with a shared token; with a
    bound one, its edge's own or one of that edge's worker processes (`pop-a/w2`, as the
    edge host names them with EDGE_WORKERS; w1..w64 and nothing else, so a leaked bound
    token cannot make up names enough to crowd other edges out of the fleet view)."""
    bound = claimed_edge()
    return bound is None or edge_id == bound or (
        type(edge_id) is str and edge_id.startswith(bound)
        and edge_id[len(bound):] in _WORKER_SUFFIXES)


def ensure_token_file(data_dir: str | Path, role: str) -> str:
    """The role's token file, created with a random token if missing (returns the token)."""
    path = Path(data_dir) / f"{role}.token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def require(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view decorator: the caller must present a token of one of `roles`."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            check(*roles)
            return view(*args, **kwargs)

        return guarded

    return decorate


def check(*roles: str) -> None:
    """Refuse the request (401 without a token, 403 with a wrong one) unless it presents
    a token of one of `roles`; checked before the body is read."""
    header = request.headers.get("Authorization", "")
    scheme, token = (header.split(None, 1) + ["", ""])[:2]  # a tab is as good as a space
    where = f"{request.method} {request.path} from {request.remote_addr}"
    wanted = " or ".join(roles)
    if scheme.lower() != "bearer" or not token.strip():
        log.warning("refused %s: no %s token", where, wanted)
        raise ApiError(401, "unauthorized", f"this call needs a {wanted} token "
                       "(Authorization: Bearer <token>)", www_authenticate="Bearer")
    presented = token.strip().encode()
    # every configured token is compared, so the time taken says nothing about which matched
    matches = [hmac.compare_digest(presented, t.encode())
               for role in roles for t in configured_tokens(current_app.config, role)]
    if "edge" in roles:
        bound = [edge_id for edge_id, t in bound_edge_tokens(current_app.config).items()
                 if hmac.compare_digest(presented, t.encode())]
        shared = [hmac.compare_digest(presented, t.encode())
                  for role in roles for t in _listed(current_app.config, role)]
        # a token listed both ways is shared: the wider right was granted
        g.bound_edge_id = bound[0] if bound and not any(shared) else None
    if not any(matches):
        log.warning("refused %s: wrong %s token", where, wanted)
        raise ApiError(403, "forbidden", f"the token presented is not a valid {wanted} token")
