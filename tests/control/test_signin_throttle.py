"""Failed console sign-ins are throttled per client address (429 with Retry-After, before
the token is compared), never globally; the addresses remembered are bounded. Configured
tokens shorter than 16 characters are refused at start."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from control_plane import create_app
from control_plane.auth import configured_tokens, ensure_token_file
from control_plane.config import ConfigError
from control_plane.console import throttle
from control_plane.console.throttle import SignInThrottle, client_key
from tests.servers import control_config


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = create_app(control_config(tmp_path))
    ensure_token_file(app.config["DATA_DIR"], "viewer")
    return app


def attempt(app: Any, address: str, token: str) -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    form = client.get("/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    return client.post("/sign-in", data={"csrf": csrf, "name": "x", "token": token})


def test_wrong_tokens_from_one_address_are_429_with_retry_after(app: Any,
                                                                 monkeypatch) -> None:
    burst = app.config["CONSOLE_SIGNIN_FAILURES"]
    right = configured_tokens(app.config, "viewer")[0]
    for n in range(burst):
        assert attempt(app, "203.0.113.7", f"guess-{n}").status_code == 403, n
    refused = attempt(app, "203.0.113.7", "guess-x")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many wrong tokens" in refused.get_data(as_text=True)
    # the right token too: else a guess would still be told apart at full speed
    assert attempt(app, "203.0.113.7", right).status_code == 429
    # another client is not locked out
    assert attempt(app, "198.51.100.9", right).status_code == 302
    # and the address may try again once its wait is over
    later = time.monotonic() + int(refused.headers["Retry-After"]) + 0.1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert attempt(app, "203.0.113.7", right).status_code == 302


def test_successful_sign_ins_are_not_throttled(app: Any) -> None:
    right = configured_tokens(app.config, "viewer")[0]
    for _ in range(app.config["CONSOLE_SIGNIN_FAILURES"] * 2):
        assert attempt(app, "203.0.113.8", right).status_code == 302


def test_zero_turns_the_throttle_off(tmp_path: Path) -> None:
    app = create_app(control_config(tmp_path, CONSOLE_SIGNIN_FAILURES=0))
    ensure_token_file(app.config["DATA_DIR"], "viewer")
    for n in range(30):
        assert attempt(app, "203.0.113.9", f"guess-{n}").status_code == 403


def test_the_addresses_remembered_are_bounded() -> None:
    limiter = SignInThrottle(burst=2, max_addresses=50)
    for n in range(1000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._buckets) == 50
    assert throttle.MAX_ADDRESSES <= 100_000  # the default is bounded too


def test_an_ipv6_client_is_one_address_per_64() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"


@pytest.mark.parametrize("setting", ["VIEWER_TOKENS", "PUBLISHER_TOKENS", "EDGE_TOKENS",
                                     "AUTHOR_TOKENS", "METRICS_TOKENS"])
def test_a_short_configured_token_is_refused_at_start(tmp_path: Path, setting: str) -> None:
    with pytest.raises(ConfigError, match=f"CONTROL_{setting}: token 2 is 6 characters; "
                                          "at least 16") as refused:
        create_app(control_config(tmp_path, **{setting: "0123456789abcdef0123,secret"}))
    assert "secret" not in str(refused.value)


def test_a_short_bound_edge_token_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CONTROL_BOUND_EDGE_TOKENS: entry 1: its token is "
                                          "5 characters") as refused:
        create_app(control_config(tmp_path, BOUND_EDGE_TOKENS="pop-a=short"))
    assert "short" not in str(refused.value)


def test_generated_tokens_are_long_enough(tmp_path: Path) -> None:
    hex32 = "0123456789abcdef" * 2  # what ./build.sh up generates
    create_app(control_config(tmp_path, VIEWER_TOKENS=hex32, METRICS_TOKENS=hex32[:16]))


def test_a_short_token_in_a_token_file_is_refused_at_start_and_never_lets_anyone_in(tmp_path):
    """The token files are the embedded default configuration; only CONTROL_*_TOKENS was
    held to the 16 characters: `abc` in publisher.token signed in and published."""
    from control_plane import config as config_module
    from control_plane.config import ConfigError
    from tests.servers import control_client

    data = tmp_path / "control"
    data.mkdir()
    (data / "viewer.token").write_text("abc\n")
    with pytest.raises(ConfigError) as caught:
        config_module.load({"DATA_DIR": str(data)})
    assert "viewer.token: token 1 is 3 characters" in str(caught.value)
    assert "abc" not in str(caught.value)
    (data / "viewer.token").unlink()
    client = control_client(tmp_path, token=None)  # a valid start, the file written after
    (tmp_path / "control" / "publisher.token").write_text("abc\n")
    answer = client.get("/v1/telemetry/counts", headers={"Authorization": "Bearer abc"})
    assert answer.status_code in (401, 403)
