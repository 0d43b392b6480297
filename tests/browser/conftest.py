"""Fixtures of the real-browser tests: Debian's Chromium driven by Playwright, against the
real stack (tests/browser/stack.py). `./build.sh test` installs Chromium when it is missing;
without it these tests fail with what to do (they are never skipped)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from loadtest.browser_stack import PROBE, BrowserStack


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is needed by the browser tests: `./build.sh test` installs it "
                    "(Debian/Ubuntu: apt-get install chromium)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def bfcache_browser(browser: Any) -> Iterator[Any]:
    """Chromium with its back/forward cache, which Playwright turns off by default."""
    b = browser.browser_type.launch(executable_path=chromium_path(), args=["--no-sandbox"],
                                    ignore_default_args=["--disable-back-forward-cache"])
    yield b
    b.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserStack]:
    s = BrowserStack(tmp_path_factory.mktemp("browser-stack"))
    try:
        yield s
    finally:
        s.close()


# nudgeKey('state'): the name the SDK stores `nudge.state` under (with its install's edge)
STORED = """window.nudgeKey = (name) =>
  Object.keys(localStorage).find((k) => k.startsWith('nudge.' + name + '@'));"""


class Visit:
    """A fresh browser context (no stored session) with the probe installed; page errors
    are collected and the test fails on any."""

    def __init__(self, browser: Any, stack: BrowserStack, **context: Any) -> None:
        self.stack = stack
        self.context = browser.new_context(**context)
        self.context.add_init_script(PROBE)
        self.context.add_init_script(STORED)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.requests: list[Any] = []
        self.page.on("request", lambda req: self.requests.append(req))

    def goto(self, path: str, origin: str | None = None) -> None:
        """Open a page and wait for the SDK to load (the snippet's stub has no methods)."""
        self.page.goto((origin or self.stack.demo) + path)
        self.page.wait_for_function("window.nudge && typeof window.nudge.track === 'function'")

    def probe(self) -> dict[str, Any]:
        return self.page.evaluate("window.__probe")

    def edge_requests(self) -> list[Any]:
        return [r for r in self.requests if r.url.startswith(self.stack.edge + "/v1/")]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, stack: BrowserStack) -> Iterator[Any]:
    made: list[Visit] = []

    def open_(in_browser: Any = None, **context: Any) -> Visit:
        made.append(Visit(in_browser or browser, stack, **context))
        return made[-1]

    yield open_
    errors = [e for v in made for e in v.errors]
    for v in made:
        v.close()
    assert not errors, f"errors thrown in the page: {errors}"
