"""How late nudges appear in a real browser: `python -m loadtest.bench_browser`.

Starts the browser stack (control plane, edge host, demo store; loadtest/browser_stack.py),
then in headless Chromium (Debian's, driven by Playwright) repeats two journeys in fresh
browser contexts: the pricing page read to the bottom (the nudge is due 3 s after the page
view) and a cart abandoned (the reminder is due 3 s after the cart_abandon event). Each
lateness is the moment the nudge element entered the page minus its due moment, both on
the page's own clock. Prints p50 and max per journey (and writes them as JSON with
--json); `--screenshot PATH` saves the pricing nudge on the demo page.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from loadtest.browser_stack import PROBE, BrowserStack, decide_events


def _events(page: Any) -> list[dict[str, Any]]:
    return decide_events(page.evaluate("window.__probe.sent"))


def pricing(page: Any, demo: str) -> float:
    page.goto(demo + "/pricing")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_selector("[data-trigger='pricing-discount']", state="visible", timeout=15_000)
    [pv] = [e["ts_ms"] for e in _events(page) if e["type"] == "page_view"]
    return page.evaluate("window.__probe.appeared['pricing-discount']") - (pv + 3000)


def cart(page: Any, demo: str) -> float:
    page.goto(demo + "/cart")
    page.click("#abandon-cart")
    page.wait_for_selector("[data-trigger='checkout-reminder']", state="visible", timeout=15_000)
    [at] = [e["ts_ms"] for e in _events(page) if e.get("name") == "cart_abandon"]
    return page.evaluate("window.__probe.appeared['checkout-reminder']") - (at + 3000)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="journeys of each kind")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--screenshot", type=Path, help="save the pricing nudge here (PNG)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: Chromium is needed (Debian/Ubuntu: apt-get install chromium)")
    late: dict[str, list[float]] = {"pricing": [], "cart": []}
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as work, \
            sync_playwright() as p:
        stack = BrowserStack(Path(work))
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for i in range(args.runs):
                for name, journey in (("pricing", pricing), ("cart", cart)):
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    context.add_init_script(PROBE)
                    page = context.new_page()
                    late[name].append(journey(page, stack.demo))
                    if args.screenshot and name == "pricing" and i == 0:
                        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                        page.evaluate("window.scrollTo(0, 0)")  # the plans, under the toast
                        page.wait_for_timeout(200)
                        page.screenshot(path=str(args.screenshot))
                    context.close()
        finally:
            browser.close()
            stack.close()
    figures = {name: {"runs": len(v), "p50_ms": statistics.median(v), "max_ms": max(v),
                      "min_ms": min(v)} for name, v in late.items()}
    for name, f in figures.items():
        print(f"{name:8} nudge late by p50 {f['p50_ms']:.0f} ms, max {f['max_ms']:.0f} ms "
              f"(min {f['min_ms']:.0f} ms) over {f['runs']} runs")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
