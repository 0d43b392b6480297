"""Record the rrweb fixtures in tests/data/rrweb/ with the real recorder in a real browser.

Each scenario drives Debian's Chromium over the demo store with Playwright, the rrweb
recorder injected into every page, and writes two files: NAME.json, the rrweb event stream
(what `trigger-engine import rrweb` reads), and NAME.actions.json, what Playwright really
did (scroll positions, clicks and typed fields with the page's own timestamps), against
which tests/control/test_rrweb_import.py checks the conversion.

    npm install --prefix /tmp/rrweb-rec rrweb@2.2.2
    .venv/bin/python -m demo.store --port 8811 --edge http://127.0.0.1:1 &
    .venv/bin/python loadtest/record_rrweb.py --rrweb /tmp/rrweb-rec/node_modules/rrweb \\
        --store http://127.0.0.1:8811 --out tests/data/rrweb

rrweb records no layout, so the page reports its document height as an rrweb custom event
(`document-height`, as a site would with `rrweb.record.addCustomEvent`) at load and whenever
the height changes; the importer reads it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

VIEWPORT = {"width": 1280, "height": 720}

# Started on each loaded page (rrweb 2.2.2 started from an init script, before the page's
# own scripts, overflows the stack in Chromium 156); events wait in window.__rr until collected.
RECORDER = """() => {
  window.__rr = [];
  rrweb.record({ emit: function (e) { window.__rr.push(e); }, sampling: { mousemove: 50 } });
  var last = 0;
  function report() {
    var h = document.documentElement.scrollHeight;
    if (h !== last) { last = h; rrweb.record.addCustomEvent("document-height", { height: h }); }
  }
  report();
  new ResizeObserver(report).observe(document.documentElement);
}"""


class Session:
    def __init__(self, page: Page, base: str, rrweb: str) -> None:
        self.page, self.base, self.rrweb = page, base, rrweb
        self.events: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []

    def now(self) -> int:
        return int(self.page.evaluate("Date.now()"))

    def collect(self) -> None:
        self.events += self.page.evaluate("window.__rr ? window.__rr.splice(0) : []")

    def goto(self, path: str) -> None:
        if self.events or self.actions:
            self.collect()
        self.page.goto(self.base + path)
        self.page.add_script_tag(content=self.rrweb)
        self.page.evaluate(RECORDER)
        self.page.wait_for_timeout(300)
        self.actions.append({"action": "page", "path": path, "t": self.now()})

    def scroll_to(self, y: int) -> None:
        self.page.evaluate(f"window.scrollTo(0, {y})")
        self.page.wait_for_timeout(200)  # rrweb throttles scroll events at 100 ms
        at = self.page.evaluate("({t: Date.now(), y: Math.round(scrollY), vh: innerHeight,"
                                " h: document.documentElement.scrollHeight})")
        self.actions.append({"action": "scroll", **at})

    def move(self, x: int, y: int) -> None:
        self.page.mouse.move(x, y, steps=8)
        self.actions.append({"action": "mousemove", "t": self.now(), "x": x, "y": y})

    def click(self, selector: str) -> None:
        t = self.now()
        self.page.click(selector)
        self.actions.append({"action": "click", "selector": selector, "t": t, "t_end": self.now()})

    def type(self, field_id: str, text: str) -> None:
        t = self.now()
        self.page.click(f"#{field_id}")
        self.page.keyboard.type(text, delay=60)
        self.actions.append({"action": "type", "field": field_id, "t": t, "t_end": self.now()})

    def stay(self, ms: int) -> None:
        self.page.wait_for_timeout(ms)

    def read(self, ms: int) -> None:
        """Stay on the page moving the mouse now and then, as a reader does."""
        for n in range(ms // 700):
            self.page.wait_for_timeout(700)
            self.move(420 + 30 * (n % 3), 320 + 20 * (n % 2))

    def save(self, out: Path, name: str) -> None:
        self.collect()
        self.actions.append({"action": "end", "t": self.now()})
        (out / f"{name}.json").write_text(json.dumps(self.events, separators=(",", ":")) + "\n")
        (out / f"{name}.actions.json").write_text(json.dumps(self.actions, indent=1) + "\n")


def pricing_reader(s: Session) -> None:
    s.goto("/pricing")
    s.move(400, 300)
    height = int(s.page.evaluate("document.documentElement.scrollHeight - innerHeight"))
    for step in range(1, 6):
        s.scroll_to(height * step // 5)
        s.stay(300)
    s.read(3500)


def half_reader(s: Session) -> None:
    s.goto("/pricing")
    s.move(500, 200)
    # y + viewport = half the document: depth 0.5
    y = int(s.page.evaluate("document.documentElement.scrollHeight / 2 - innerHeight"))
    s.scroll_to(max(0, y) // 2)
    s.scroll_to(max(0, y))
    s.read(4200)


def cart_abandoner(s: Session) -> None:
    s.goto("/product/grinder")
    s.move(300, 400)
    s.goto("/cart")
    s.stay(800)
    s.click("#abandon-cart")
    s.read(4200)  # still on the page when the reminder falls due


def checkout_typist(s: Session) -> None:
    s.goto("/checkout")
    s.type("checkout-name", "Ada Lovelace")
    s.type("checkout-email", "ada@example.org")
    s.type("checkout-card", "4242424242424242")
    s.stay(500)


SCENARIOS: dict[str, Callable[[Session], None]] = {
    "pricing-reader": pricing_reader, "half-reader": half_reader,
    "cart-abandoner": cart_abandoner, "checkout-typist": checkout_typist,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rrweb", type=Path, required=True, help="the rrweb npm package folder")
    parser.add_argument("--store", required=True, help="the demo store's URL")
    parser.add_argument("--edge-pattern", default="http://127.0.0.1:1/**",
                        help="requests to the store's --edge, aborted")
    parser.add_argument("--out", type=Path, default=Path("tests/data/rrweb"))
    args = parser.parse_args()
    rrweb = (args.rrweb / "dist" / "rrweb.umd.min.cjs").read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for name, scenario in SCENARIOS.items():
            context = browser.new_context(viewport=VIEWPORT)
            # the store's edge is unreachable on purpose: fail its SDK at once, not at a timeout
            context.route(args.edge_pattern, lambda route: route.abort())
            session = Session(context.new_page(), args.store.rstrip("/"), rrweb)
            scenario(session)
            session.save(args.out, name)
            context.close()
            print(f"{name}: {len(session.events)} rrweb events")
        browser.close()


if __name__ == "__main__":
    main()
