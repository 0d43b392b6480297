"""Screenshots of the console over the benchmark's month of telemetry
(`python -m loadtest.bench_console --screenshots docs/images`).

Publishes a pack that defines the benchmark's triggers and the threshold experiment (so the
triggers carry their pack and the experiments page checks the arms against a declared
split), signs in with Debian's Chromium driven by Playwright, as the browser tests do, and
saves each page as a PNG of the console at 1280 px.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

# page -> (file, whole page); the triggers page is cut at one screen, its table runs on for
# 50 triggers (the audit's heat map is left out: one synthetic trigger per session makes it
# a bare diagonal)
PAGES = {"/triggers?period=30d": ("console-triggers.png", False),
         "/experiments?period=30d": ("console-experiments.png", True)}
WIDTH, HEIGHT = 1280, 900
SPLIT = {"adaptive": 45, "static": 45, "holdout": 10}


def experiment_pack(triggers: int) -> str:
    """A pack with the benchmark's trigger ids, under the split its sessions were drawn with."""
    arms = ", ".join(f"{arm}: {share}%" for arm, share in SPLIT.items())
    lines = ["pack: storefront", "settings:", f"  experiment: {{salt: bench, {arms}}}",
             "triggers:"]
    for i in range(triggers):
        lines += [f"  - id: t-{i:02d}", "    page: /pricing", "    when:",
                  f"      - scroll_depth: \">= {40 + i}%\"",
                  "    action: {content: discount-nudge-10}", "    cap: {per_session: 1}"]
    return "\n".join(lines) + "\n"


def publish(base: str, token: str, triggers: int) -> None:
    """The pack stored and published through the API, as `trigger-engine publish` does."""
    auth = {"Authorization": f"Bearer {token}"}
    put = urllib.request.Request(f"{base}/v1/packs/storefront", method="PUT",
                                 data=experiment_pack(triggers).encode(),
                                 headers={**auth, "Content-Type": "application/yaml"})
    urllib.request.urlopen(put).read()
    urllib.request.urlopen(urllib.request.Request(f"{base}/v1/snapshots", method="POST",
                                                  data=b"", headers=auth)).read()


def capture(base: str, token: str, out_dir: str | Path) -> list[Path]:
    """Sign in and save each page of PAGES into `out_dir`; returns the files written."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("screenshots need Chromium: apt-get install chromium")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.goto(f"{base}/sign-in")
        page.fill("#token", token)
        page.fill("#name", "screenshots")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/triggers*")
        for path, (name, full_page) in PAGES.items():
            page.goto(base + path)
            target = out / name
            page.screenshot(path=str(target), full_page=full_page)
            written.append(target)
        browser.close()
    return written
