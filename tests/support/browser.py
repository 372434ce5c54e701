"""Debian's Chromium driven by Playwright from PyPI (never `playwright install`), and
axe-core from npm evaluated in the page: what every browser test uses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from playwright.async_api import Page

CHROMIUM = os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
#: Screenshots of the pages, to look at (default: a temp folder).
SHOTS = Path(os.environ.get("TESSERA_SCREENSHOTS", Path(tempfile.gettempdir()) / "tessera-screenshots"))


async def accessible(page: Page) -> None:
    """axe-core, in this page, finds nothing serious or critical. It is evaluated
    through the DevTools protocol, which the page's CSP does not govern (a script tag
    with it would be refused, as it should be)."""
    assert AXE.exists(), "axe-core is missing: `make browser-tools` (or `npm ci`) installs it"
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text() + "\n;0")
    result = await page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(" "))}));
    }""")
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert serious == [], serious


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
