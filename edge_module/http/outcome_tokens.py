"""Outcome tokens: `POST /v1/outcome` only takes reports about decisions this edge made.

Outcomes drive reports, experiment lifts and recalibration, so a stranger who could post a
conversion for any session and trigger could steer all three. Each decide answer therefore
carries keyed-BLAKE2b MACs (RFC 7693's keyed mode, a MAC by design, and much cheaper than
`hmac` on the hot path, which issues several per decision): one per action, bound to
(session, decision, trigger, issue time), and one for the decision itself (trigger ""),
for outcomes that name no trigger (a conversion in a holdout session). `/v1/outcome`
recomputes the MAC and refuses a report whose token is missing, forged, bound to other
values or older than the window.

The key comes from EDGE_OUTCOME_KEY (share it across a fleet whose visitors may reach any
edge); without it each host makes one and keeps it in its state folder, shared by its
worker processes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from ..host.host_secret import host_secret

TOKEN_VERSION = "v2"  # each value length-prefixed under the MAC
# v1 joined the values with NUL, so values holding NUL could be split another way (a
# token for session "a\0<32 hex>" passed for session "a"); still taken, for the tokens
# outstanding at an upgrade, when no value holds a NUL (then the join is unambiguous)
_OLD_VERSION = "v1"
_MAC_BYTES = 16  # 128 bits: forging one by guessing is out of reach


class TokenError(Exception):
    """A token that does not authorise the report it came with (the reason says why)."""


class OutcomeTokens:
    """Issues and checks outcome tokens with one key and one validity window."""

    def __init__(self, key: bytes, window_ms: int) -> None:
        if len(key) < 16:
            raise ValueError("the outcome key must have at least 16 bytes")
        # BLAKE2b takes keys of up to 64 bytes: a longer one is hashed to 64 first
        self._key = key if len(key) <= 64 else hashlib.blake2b(key).digest()
        self.window_ms = window_ms

    def _mac(self, session_id: str, decision_id: str, trigger: str, issued_ms: int,
             version: str = TOKEN_VERSION) -> str:
        values = (session_id, decision_id, trigger, str(issued_ms))
        if version == _OLD_VERSION:
            msg = "\x00".join((version, *values)).encode("utf-8", "surrogatepass")
        else:
            fields = [v.encode("utf-8", "surrogatepass") for v in values]
            msg = version.encode() + b"".join(len(f).to_bytes(4, "big") + f for f in fields)
        digest = hashlib.blake2b(msg, key=self._key, digest_size=_MAC_BYTES).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, session_id: str, decision_id: str, trigger: str, now_ms: int) -> str:
        """The token for outcomes of `trigger` ("" for the decision as a whole)."""
        return f"{TOKEN_VERSION}.{now_ms}.{self._mac(session_id, decision_id, trigger, now_ms)}"

    def check(self, token: object, session_id: str, decision_id: str, trigger: str,
              now_ms: int) -> int:
        """When `token` was issued (ms); `TokenError` unless it was issued for exactly
        these values, recently."""
        if type(token) is not str or len(token) > 128:
            raise TokenError("outcome_token is required: send the token the decide answer "
                             "carried with the action (or the answer's own for a conversion)")
        parts = token.split(".")
        # isascii: str.isdigit also takes "²", which int() refuses
        if len(parts) != 3 or parts[0] not in (TOKEN_VERSION, _OLD_VERSION) or \
                not parts[1].isascii() or not parts[1].isdigit() or len(parts[1]) > 16:
            raise TokenError("outcome_token is malformed")
        if parts[0] == _OLD_VERSION and "\x00" in session_id + decision_id + trigger:
            raise TokenError("outcome_token does not match this session, decision and trigger")
        issued = int(parts[1])
        expected = self._mac(session_id, decision_id, trigger, issued, parts[0]).encode()
        # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
        if not hmac.compare_digest(parts[2].encode("utf-8", "surrogatepass"), expected):
            raise TokenError("outcome_token does not match this session, decision and trigger")
        if now_ms - issued > self.window_ms:
            raise TokenError(f"outcome_token has expired (outcomes are taken for "
                             f"{self.window_ms // 1000} s after the decision)")
        if issued - now_ms > 60_000:  # issued in the future: another edge's clock, or forged
            raise TokenError("outcome_token is from the future")
        return issued


def load_key(configured: str, state_dir: Path) -> bytes:
    """The configured key (hex, or any text of 16+ bytes), else one kept in `state_dir`."""
    if configured:
        try:
            key = bytes.fromhex(configured)
        except ValueError:
            key = configured.encode()
        if len(key) < 16:
            raise ValueError("EDGE_OUTCOME_KEY must have at least 16 bytes (32 hex digits)")
        return key
    path = state_dir / "outcome.key"
    try:
        key = bytes.fromhex(host_secret(path, 32))
    except ValueError:
        key = b""
    if len(key) < 16:  # an empty or cut file: a key anyone could guess
        raise ValueError(f"{path}: not an outcome key (at least 32 hex digits); remove it to "
                         "make a new one (outstanding outcome tokens then stop working)")
    return key
