"""Client-carried session state: the core's state for one session, sealed into an opaque,
signed, versioned token the visitor sends back with its next request.

Standard library only: the wasi:http edge function runs this inside the component's
CPython guest as well as in the Python host.

Token: ``v1.<kid>.<issued_ms>.<payload>.<mac>`` where payload is zlib(state) and mac is
HMAC-SHA256 (key `kid`) over ``v1.<kid>.<issued_ms>.`` + len(session_id) (4 bytes, big
endian) + session_id (UTF-8) + zlib(state), both base64url without padding. Binding the
session id makes a token useless for any other session; the length prefix keeps the
session id and the payload from being re-split. Nothing is decompressed or deserialised
before the MAC has been checked (in constant time).

The state is the core's opaque blob (marshal bytes on the packed path, at most 16 KiB by
the core's own budget), or None for a session with no state yet (an empty payload).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import warnings  # noqa: F401
import zlib

VERSION = "v1"
INVALID = "invalid_state_token"
EXPIRED = "expired_state_token"
TOO_LARGE = "state_too_large"
DEFAULT_TTL_MS = 1_800_000
# The largest token a state within the core's 16 KiB budget makes, compressed or not:
# zlib adds at most 11 bytes to data it cannot shrink, base64url 4/3, the version, key
# id, time and MAC under 100 bytes (21,957 bytes). A review's session of random strings
# sealed over the old 16 KiB bound, so its session started over at every request (and
# its per-session caps with it); every state the core keeps now gets its token.
DEFAULT_MAX_BYTES = 24 * 1024
# a sealed state never inflates beyond this (the core keeps it within 16 KiB; the margin
# allows a core with a larger budget without letting a valid token become a zip bomb)
MAX_STATE_BYTES = 256 * 1024
MIN_KEY_BYTES = 16

# `warnings` above: in the Wasm guest (no OpenSSL) hmac falls back to its pure-Python
# HMAC, which imports it lazily; componentize-py bundles only what is imported at build.

_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_ISSUED = re.compile(r"[0-9]{1,16}")


class StateTokenError(Exception):
    """A token that cannot be used (`code`: invalid_state_token, expired_state_token) or a
    state that cannot be sealed (state_too_large)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise StateTokenError(INVALID, "the state token is malformed (bad base64url)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise StateTokenError(INVALID, "the state token is malformed (bad base64url)") from None


def _signed(kid: str, issued: str, session_id: str, payload: bytes) -> bytes:
    sid = session_id.encode("utf-8", "surrogatepass")
    return (f"{VERSION}.{kid}.{issued}.".encode("ascii") + len(sid).to_bytes(4, "big")
            + sid + payload)


def parse_keys(text: str) -> list[tuple[str, bytes]]:
    """``"kid1:hexkey,kid2:hexkey"`` -> [(kid, key)], the first one signing; ValueError
    saying which entry is wrong and why."""
    keys: list[tuple[str, bytes]] = []
    for n, entry in enumerate(text.split(","), 1):
        entry = entry.strip()
        kid, sep, hexkey = entry.partition(":")
        kid, hexkey = kid.strip(), hexkey.strip()
        # An entry's text is never repeated in a message: it may be the key itself (a bare
        # `secrets.token_hex(32)`, or `key:kid` the wrong way round), and the edge function
        # answers its configuration errors to any client.
        if not sep or not kid or not hexkey:
            raise ValueError(f"state token key {n}: expected kid:hexkey (a key id, a colon, "
                             "the key in hex)")
        if not _KID.fullmatch(kid):
            raise ValueError(f"state token key {n}: its key id ({len(kid)} characters before "
                             "the colon) must be 1-32 of A-Z a-z 0-9 _ -")
        try:
            key = bytes.fromhex(hexkey)
        except ValueError:
            raise ValueError(f"state token key {kid!r}: the key is not hex") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"state token key {kid!r}: {len(key)} bytes, at least "
                             f"{MIN_KEY_BYTES} needed (32 random bytes: "
                             "python -c 'import secrets; print(secrets.token_hex(32))')")
        if any(k == kid for k, _ in keys):
            raise ValueError(f"state token key id {kid!r} appears twice")
        keys.append((kid, key))
    return keys


class StateTokens:
    """Seals and opens state tokens: the first key signs, every key verifies."""

    def __init__(self, keys: list[tuple[str, bytes]], ttl_ms: int = DEFAULT_TTL_MS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not keys:
            raise ValueError("at least one state token key is needed")
        for kid, key in keys:
            if not _KID.fullmatch(kid) or len(key) < MIN_KEY_BYTES:
                raise ValueError(f"state token key {kid!r}: bad key id or key under "
                                 f"{MIN_KEY_BYTES} bytes")
        if ttl_ms <= 0 or max_bytes <= 0:
            raise ValueError("ttl_ms and max_bytes must be positive")
        self._kid, self._key = keys[0]
        self._keys = dict(keys)
        self.ttl_ms = ttl_ms
        self.max_bytes = max_bytes

    def seal(self, session_id: str, state: bytes | None, now_ms: int) -> str:
        """The token carrying `state` for `session_id`, issued at `now_ms`; StateTokenError
        (state_too_large) if it would exceed `max_bytes` (no token over the bound is issued:
        the caller starts the session over, as the stores do with a state they cannot keep)."""
        # level 1: as small as 6 on the core's marshal bytes, and about 2.5x faster
        payload = b"" if state is None else zlib.compress(state, 1)
        issued = str(int(now_ms))
        mac = hmac.new(self._key, _signed(self._kid, issued, session_id, payload),
                       hashlib.sha256).digest()
        token = f"{VERSION}.{self._kid}.{issued}.{_b64(payload)}.{_b64(mac)}"
        if len(token) > self.max_bytes:
            raise StateTokenError(TOO_LARGE, f"the sealed state would take {len(token)} "
                                  f"bytes, over the {self.max_bytes}-byte bound")
        return token

    def open(self, token: str, session_id: str, now_ms: int) -> bytes | None:
        """The state `token` carries for `session_id`; StateTokenError if it was not sealed
        by one of our keys for this session (invalid_state_token) or is older than the TTL
        (expired_state_token)."""
        if type(token) is not str or type(session_id) is not str:
            raise StateTokenError(INVALID, "the state token must be a string")
        if len(token) > self.max_bytes:
            raise StateTokenError(INVALID, f"the state token is over {self.max_bytes} bytes")
        parts = token.split(".")
        if len(parts) != 5:
            raise StateTokenError(INVALID, "the state token is malformed")
        version, kid, issued, payload_text, mac_text = parts
        if version != VERSION:
            raise StateTokenError(INVALID, f"unknown state token version {version[:8]!r}")
        key = self._keys.get(kid)
        if key is None:
            raise StateTokenError(INVALID, f"the state token's key {kid[:32]!r} is unknown "
                                  "(retired, or from another deployment)")
        if not _ISSUED.fullmatch(issued):
            raise StateTokenError(INVALID, "the state token is malformed (issue time)")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        expected = hmac.new(key, _signed(kid, issued, session_id, payload),
                            hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise StateTokenError(INVALID, "the state token's signature does not match "
                                  "(altered, or issued for another session)")
        if now_ms - int(issued) > self.ttl_ms:
            raise StateTokenError(EXPIRED, "the state token has expired")
        if int(issued) - now_ms > self.ttl_ms:  # a clock far ahead: it would never expire
            raise StateTokenError(EXPIRED, "the state token was issued more than its "
                                  "lifetime ahead of this edge's clock")
        if not payload:
            return None
        inflate = zlib.decompressobj()
        try:
            state = inflate.decompress(payload, MAX_STATE_BYTES)
        except zlib.error:
            raise StateTokenError(INVALID, "the state token's payload is corrupt") from None
        if inflate.unconsumed_tail or not inflate.eof:
            raise StateTokenError(INVALID, "the state token's payload is corrupt or too large")
        return state
