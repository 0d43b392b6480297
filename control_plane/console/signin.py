"""Signing in to the console with a token, and what every page checks.

The session is Flask's signed cookie (HttpOnly, SameSite=Strict, and Secure as
CONTROL_CONSOLE_COOKIE_SECURE says: by default whenever the request came over https),
holding the role, the name the person gave (for the audit trail), a CSRF token and a
fingerprint of the token used: a page is served only while that token is still configured,
so rotating a token signs its sessions out. A session ends SESSION_S after its sign-in, and
signing out records its random id on the server (`signouts`), so a copy of the cookie taken
before is refused too (a sign-out that could not be recorded is kept in this browser's
cookie and recorded at its next sign-in or sign-out). Every form that changes something
carries the CSRF token; a request without it, or with another one, is refused before
anything happens. Failed sign-ins are throttled per client address (`throttle`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from edge_module.host.host_secret import host_secret

from ..auth import configured_tokens
from ..config import cookie_secure
from .signouts import SignOuts
from .throttle import SignInThrottle

log = logging.getLogger("control_plane.console")
READ_ROLES = ("publisher", "viewer")
SESSION_S = 8 * 3600


MAX_UNRECORDED = 8  # sign-outs one browser keeps to record later (the newest)


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure as CONTROL_CONSOLE_COOKIE_SECURE says, per request."""

    def get_cookie_secure(self, app: Any) -> bool:
        mode = cookie_secure(app.config)
        if mode != "auto":
            return bool(mode)
        # Only ever makes the asker's own cookie stricter, so the header needs no trust
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0]
        return request.is_secure or forwarded.strip().lower() == "https"


def configure(app: Any) -> None:
    """The cookie's key (kept in the data folder) and its attributes."""
    app.secret_key = host_secret(Path(app.config["DATA_DIR"]) / "console.secret", 32)
    app.config.update(SESSION_COOKIE_NAME="console", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", PERMANENT_SESSION_LIFETIME=SESSION_S)
    app.session_interface = _Sessions()
    app.extensions["console_signouts"] = SignOuts(Path(app.config["DATA_DIR"]) /
                                                  "console.sqlite3")
    app.extensions["console_throttle"] = SignInThrottle(
        int(app.config.get("CONSOLE_SIGNIN_FAILURES", 10)))


def signin_retry_after() -> int | None:
    """Seconds this client must wait before its next sign-in (None: it may now)."""
    return current_app.extensions["console_throttle"].retry_after(request.remote_addr)


def signin_failed() -> None:
    current_app.extensions["console_throttle"].failed(request.remote_addr)


class SignOutNotRecorded(Exception):
    """The sign-out of a session (valid until `until_s`) could not be recorded."""

    def __init__(self, until_s: int) -> None:
        super().__init__(until_s)
        self.until_s = until_s


def _fingerprint(token: str) -> str:
    key = current_app.secret_key
    return hmac.new(key if isinstance(key, bytes) else str(key).encode(), token.encode(),
                    hashlib.sha256).hexdigest()[:32]


def sign_in(token: str, name: str) -> str | None:
    """Start a session for the role `token` belongs to; None if it is no console token."""
    presented = token.strip()
    role = None
    for candidate in READ_ROLES:  # every token is compared: timing says nothing
        for known in configured_tokens(current_app.config, candidate):
            if hmac.compare_digest(presented.encode(), known.encode()) and role is None:
                role = candidate
    if role is None or not presented:
        return None
    unrecorded = _unrecorded()
    session.clear()
    session.permanent = True
    session.update(role=role, name=name.strip()[:80] or role, fp=_fingerprint(presented),
                   csrf=secrets.token_urlsafe(24), since=int(time.time()),
                   sid=secrets.token_urlsafe(18))
    if unrecorded:  # an earlier sign-out here that could not be recorded: now, if it can
        try:
            _record(unrecorded)
        except sqlite3.Error:
            session["unrecorded"] = unrecorded
    return role


def _unrecorded() -> list[list[Any]]:
    """This browser's sign-outs not recorded yet, [sid, until_s] each, still valid."""
    kept = session.get("unrecorded")
    now = time.time()
    return [[sid, until] for sid, until in (e for e in kept if isinstance(e, list) and
                                            len(e) == 2)
            if isinstance(sid, str) and type(until) is int and until > now
            ][-MAX_UNRECORDED:] if isinstance(kept, list) else []


def _record(entries: list[list[Any]]) -> None:
    signouts = current_app.extensions["console_signouts"]
    for sid, until in entries:
        signouts.record(sid, until)


def end_session() -> None:
    """End this session here and for every copy of its cookie: no session outlives its
    sign-in by more than SESSION_S (`current_role`), so the record lasts as long. This
    browser's cookie is signed out even when the record cannot be written: then the
    session's id stays in it, to be recorded at its next sign-in or sign-out, and
    SignOutNotRecorded (the page says what still holds, and offers the retry)."""
    sid, since = session.get("sid"), session.get("since")
    todo = _unrecorded()
    session.clear()
    if isinstance(sid, str) and type(since) is int:
        todo = [*todo, [sid, since + SESSION_S]][-MAX_UNRECORDED:]
    if not todo:
        return
    try:
        _record(todo)
    except sqlite3.Error as exc:
        log.error("a console sign-out could not be recorded: %s", exc)
        session.permanent = True  # kept past the browser's closing (clear() dropped it),
        # as long as the copies it would revoke can live
        session["unrecorded"] = todo
        raise SignOutNotRecorded(max(until for _sid, until in todo)) from None


def current_role() -> str | None:
    """The signed-in role, if its token is still configured, the session is younger than
    SESSION_S (whatever refreshed its cookie) and was not signed out (a cookie from before
    session ids were kept has none: signed out)."""
    role, fp, sid, since = (session.get("role"), session.get("fp"), session.get("sid"),
                            session.get("since"))
    if role not in READ_ROLES or not isinstance(fp, str) or not isinstance(sid, str) \
            or type(since) is not int or not 0 <= time.time() - since <= SESSION_S:
        return None
    try:
        gone = current_app.extensions["console_signouts"].signed_out(sid)
    except sqlite3.Error as exc:  # unknown: not signed in, and the pages say why
        log.error("console sign-outs unreadable: %s", exc)
        g.console_signouts_down = True
        return None
    if gone:
        session.clear()  # and this browser's cookie goes
        return None
    known = [_fingerprint(t) for t in configured_tokens(current_app.config, role)]
    return role if any(hmac.compare_digest(fp, k) for k in known) else None


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf() -> None:
    """Refuse a state-changing request without this session's CSRF token, or sent from
    another origin."""
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, csrf_token()):
        abort(403, "The form's security token is missing or wrong: reload the page and try "
                   "again.")
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        abort(403, "This form was sent from another site.")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only. Browsers drop tabs and
    newlines from a URL and read a backslash as a slash (a tab between two slashes goes
    off site), so any of them, or any other control character or space, is refused."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or any(c <= " " or c in "\\\x7f" for c in target)):
        return "/triggers"
    return target


def signed_in(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A page for `roles` (default: anyone signed in). Not signed in: to the sign-in page
    (a POST is refused); signed in with a role that may not: 403. POSTs check CSRF."""
    allowed = roles or READ_ROLES

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            role = current_role()
            if role is None and g.get("console_signouts_down"):
                abort(503, "The console cannot check its sessions right now (its sign-out "
                           "records are unavailable). Try again shortly.")
            if role is None:
                if request.method != "GET":
                    abort(401, "Sign in first.")
                return redirect(url_for("console.sign_in_page", next=request.full_path))
            if role not in allowed:
                abort(403, f"A {' or '.join(allowed)} token is needed for this; you signed "
                           f"in as {role}.")
            if request.method != "GET":
                check_csrf()
            return view(*args, **kwargs)

        return guarded

    return decorate
