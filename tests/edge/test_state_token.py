"""State tokens: the session's state sealed for the client, refused when altered, foreign,
unknown or expired, and never anything but StateTokenError on bad input."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_module.state_token import (
    EXPIRED,
    INVALID,
    TOO_LARGE,
    StateTokenError,
    StateTokens,
    parse_keys,
)

K1 = ("k1", bytes(range(32)))
K2 = ("k2", bytes(range(32, 64)))
STATE = b"\xe3\x00state of the core\xff" * 20
T0 = 1_700_000_000_000


def tokens(*keys: tuple[str, bytes], **kw: int) -> StateTokens:
    return StateTokens(list(keys or (K1,)), **kw)


def refused(code: str, token: object, session_id: str = "s", now_ms: int = T0,
            verifier: StateTokens | None = None) -> None:
    with pytest.raises(StateTokenError) as caught:
        (verifier or tokens()).open(token, session_id, now_ms)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_a_sealed_state_opens_to_the_same_bytes():
    t = tokens()
    assert t.open(t.seal("s", STATE, T0), "s", T0 + 1000) == STATE


def test_a_session_without_state_round_trips_as_none():
    t = tokens()
    assert t.open(t.seal("s", None, T0), "s", T0) is None


def test_the_token_is_versioned_and_names_its_key_and_issue_time():
    version, kid, issued, _payload, _mac = tokens().seal("s", STATE, T0).split(".")
    assert (version, kid, issued) == ("v1", "k1", str(T0))


def test_the_payload_is_compressed():
    state = b"a" * 10_000
    assert len(tokens().seal("s", state, T0)) < 500


@pytest.mark.parametrize("part", range(5))
def test_altering_any_part_is_refused(part):
    token = tokens().seal("s", STATE, T0)
    parts = token.split(".")
    text = parts[part]  # the first character: the last one of base64 may be padding bits
    parts[part] = ("B" if text[0] == "A" else "A") + text[1:]
    refused(INVALID, ".".join(parts))


def test_a_payload_swapped_from_another_token_is_refused():
    t = tokens()
    a, b = t.seal("s", STATE, T0).split("."), t.seal("s", b"other", T0).split(".")
    refused(INVALID, ".".join(a[:3] + [b[3], a[4]]))


def test_a_token_of_another_session_is_refused():
    refused(INVALID, tokens().seal("alice", STATE, T0), session_id="bob")


def test_session_id_and_payload_cannot_be_re_split():
    # the session id is length-prefixed in the MAC: "a" + payload "Xy" is not "aX" + "y"
    t = tokens()
    token = t.seal("s1", b"", T0)
    refused(INVALID, token, session_id="s")


def test_a_token_signed_by_an_unknown_key_is_refused():
    refused(INVALID, tokens(K2).seal("s", STATE, T0), verifier=tokens(K1))


def test_a_key_with_the_same_id_but_other_bytes_is_refused():
    refused(INVALID, tokens(("k1", os.urandom(32))).seal("s", STATE, T0))


def test_rotation_the_first_key_signs_and_every_key_verifies():
    old, rotated = tokens(K1), tokens(K2, K1)
    assert rotated.open(old.seal("s", STATE, T0), "s", T0) == STATE
    new_token = rotated.seal("s", STATE, T0)
    assert new_token.split(".")[1] == "k2"
    refused(INVALID, new_token, verifier=old)


def test_a_token_older_than_the_ttl_has_expired():
    t = tokens(ttl_ms=1000)
    token = t.seal("s", STATE, T0)
    assert t.open(token, "s", T0 + 1000) == STATE
    refused(EXPIRED, token, now_ms=T0 + 1001, verifier=t)


def test_a_token_issued_more_than_its_lifetime_ahead_never_outlives_it():
    """Issued by a fleet member whose clock was far ahead (or by a key holder), a token
    was valid until its issue time came, and its lifetime after that."""
    t = tokens(ttl_ms=1000)
    token = t.seal("s", STATE, T0 + 1000)  # a clock a lifetime ahead: still taken
    assert t.open(token, "s", T0) == STATE
    refused(EXPIRED, t.seal("s", STATE, T0 + 1001), now_ms=T0, verifier=t)
    refused(EXPIRED, t.seal("s", STATE, T0 + 10 ** 12), now_ms=T0, verifier=t)


def test_an_expired_token_that_was_altered_is_invalid_not_expired():
    parts = tokens(ttl_ms=1000).seal("s", STATE, T0).split(".")
    parts[3] = ("B" if parts[3][0] == "A" else "A") + parts[3][1:]
    refused(INVALID, ".".join(parts), now_ms=T0 + 10_000, verifier=tokens(ttl_ms=1000))


def test_a_state_that_would_seal_over_the_bound_is_not_issued():
    with pytest.raises(StateTokenError) as caught:
        tokens(max_bytes=1024).seal("s", os.urandom(2048), T0)
    assert caught.value.code == TOO_LARGE


def test_a_token_over_the_bound_is_refused_before_anything_else():
    refused(INVALID, "v1." + "A" * 30_000)


@pytest.mark.parametrize("compressible", [True, False])
def test_any_core_state_of_16_kib_fits_the_default_bound(compressible):
    """The core keeps a state within 16 KiB (MAX_SESSION_BYTES); a review's state of
    random strings did not compress, sealed over the old 16 KiB bound and so started the
    session over at every request."""
    from edge_module.core.session import MAX_SESSION_BYTES

    state = (b"".join(b"\xe9%08d" % i for i in range(MAX_SESSION_BYTES // 9))
             if compressible else os.urandom(MAX_SESSION_BYTES))
    t = tokens(("a-key-id-of-the-longest-kind-32c", b"k" * 32))
    token = t.seal("s", state, 2**53 - 1)  # the longest issue time
    assert t.open(token, "s", 2**53 - 1) == state


def test_a_valid_mac_over_a_zip_bomb_is_still_refused():
    import hashlib
    import hmac
    import zlib

    from edge_module.state_token import _signed

    payload = zlib.compress(b"\x00" * (1 << 20))
    mac = hmac.new(K1[1], _signed("k1", str(T0), "s", payload), hashlib.sha256).digest()
    b64 = base64.urlsafe_b64encode
    token = f"v1.k1.{T0}.{b64(payload).rstrip(b'=').decode()}.{b64(mac).rstrip(b'=').decode()}"
    refused(INVALID, token, verifier=tokens(max_bytes=1 << 20))


@pytest.mark.parametrize("token", [
    "", ".", "v1", "v1....", "v2.k1.1.AA.AA", "v1.k1.x.AA.AA", "v1.k1.-1.AA.AA",
    "v1.k1.1.A.AA", "v1.k1.1.A*A.AA", "v1.k1.1.AA.AA.AA", "v1.nope.1.AA.AA", None, 12, b"v1",
])
def test_malformed_tokens_are_invalid(token):
    refused(INVALID, token)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=20))
def test_random_strings_raise_only_state_token_error(token, session_id):
    with pytest.raises(StateTokenError):
        tokens().open(token, session_id, T0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["v1", "k1", str(T0), "", "AA", "A-_z", "\x00", "é"]),
                min_size=5, max_size=5))
def test_token_shaped_strings_raise_only_state_token_error(parts):
    with pytest.raises(StateTokenError):
        tokens().open(".".join(parts), "s", T0)


def test_parse_keys_reads_kid_colon_hex_pairs_in_order():
    assert parse_keys(f"k2:{K2[1].hex()}, k1:{K1[1].hex()}") == [K2, K1]


@pytest.mark.parametrize(("text", "says"), [
    ("", "expected kid:hexkey"),
    ("k1", "expected kid:hexkey"),
    ("k1:zz" + "00" * 16, "not hex"),
    ("k1:0011", "at least 16"),
    ("bad id:" + "00" * 16, "must be 1-32"),
    (f"k1:{'00' * 16},k1:{'11' * 16}", "twice"),
])
def test_parse_keys_says_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_keys(text)


SECRET = "c2cdb157cb58827d613857296b4eee1aa7b4fe78441948795f47a9dbcca281ff"


@pytest.mark.parametrize("text", [SECRET, f"k1={SECRET}", f":{SECRET}", f"{SECRET}:k1",
                                  f"k2:{'11' * 32},{SECRET}"])
def test_a_misformed_key_is_never_repeated_in_the_message(text):
    """The edge function answers its configuration errors to every client: a bare hex key
    (an easy mistake) was sent, whole, to anyone who asked."""
    with pytest.raises(ValueError) as err:
        parse_keys(text)
    assert SECRET[:12] not in str(err.value) and SECRET[-12:] not in str(err.value)
