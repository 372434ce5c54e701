"""``make bench``: the participant app on a slow phone — how long until a person can type
their code, first visit and next visit (service worker), beside a bare page from the same
gateway over the same slow link in the same run.

The gateway runs as a process (its console script) on a Kafka and a PostgreSQL started
here. Debian's Chromium (Playwright for Python, never a downloaded browser) opens
``/app/`` in a phone's viewport with Chrome DevTools' throttling: the CPU slowed
``--cpu-slowdown`` times (4: a low-end phone) and the network of Chrome's "Slow 4G"
preset (150 ms round trip, 1.6 Mbit/s down, 750 kbit/s up). Timed from the navigation's
start until the code field is visible and enabled (the app's modules loaded, run and
translated), ``--visits`` times each in fresh browser contexts; the next visit is the
same context loaded again, its shell from the service worker. The baseline is the
gateway's ``/healthz`` (a few bytes of JSON, nothing to run) over the same link.
Also printed: the bytes a first visit transfers.

Usage: ``uv run python -m bench.app [--visits 15] [--cpu-slowdown 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from bench.answers import INTERNAL_TOKEN, OPERATOR_KEY
from bench.enrolment import _percentile, _wait_ready
from bench.stack import start_stack
from tessera_common.identity import generate_signing_key
from tessera_devstack.processes import free_port

CHROMIUM = os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium")
SLOW_4G = {"offline": False, "latency": 150, "downloadThroughput": 1.6e6 / 8, "uploadThroughput": 750e3 / 8}


async def _visits(base: str, visits: int, slowdown: float) -> dict[str, list[float] | list[int]]:
    results: dict[str, list] = {"baseline": [], "first visit": [], "next visit": [], "bytes": []}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            for _ in range(visits):
                context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                                    has_touch=True, locale="nl-NL")
                page = await context.new_page()
                cdp = await context.new_cdp_session(page)
                await cdp.send("Network.enable")
                await cdp.send("Network.emulateNetworkConditions", SLOW_4G)
                await cdp.send("Emulation.setCPUThrottlingRate", {"rate": slowdown})
                received: list[int] = []
                cdp.on("Network.loadingFinished",
                       lambda e, into=received: into.append(int(e.get("encodedDataLength", 0))))

                started = time.perf_counter()
                await page.goto(f"{base}/healthz")
                results["baseline"].append(time.perf_counter() - started)

                received.clear()
                started = time.perf_counter()
                await page.goto(f"{base}/app/")
                await page.locator("#code").wait_for(state="visible")
                await page.wait_for_function("() => !document.querySelector('#code').disabled")
                results["first visit"].append(time.perf_counter() - started)
                results["bytes"].append(sum(received))
                await page.evaluate("() => navigator.serviceWorker.ready")

                started = time.perf_counter()
                await page.reload()
                await page.locator("#code").wait_for(state="visible")
                results["next visit"].append(time.perf_counter() - started)
                await context.close()
        finally:
            await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=15)
    parser.add_argument("--cpu-slowdown", type=float, default=4.0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-app-"))
    os.chmod(root, 0o755)
    stack = start_stack(root)
    try:
        private, public = generate_signing_key()
        port = free_port()
        server = stack.spawn_service("enrolment", port, TESSERA_OPERATOR_KEY=OPERATOR_KEY,
                                     TESSERA_INTERNAL_TOKEN=INTERNAL_TOKEN, TESSERA_GATEWAY_SIGNING_KEY=private,
                                     TESSERA_GATEWAY_PUBLIC_KEY=public, TESSERA_ENVIRONMENT="test")
        base = f"http://127.0.0.1:{port}"
        _wait_ready(server, f"{base}/readyz")
        results = asyncio.run(_visits(base, args.visits, args.cpu_slowdown))

        print(f"\nTessera participant app bench: {args.visits} visits each, phone viewport, CPU {args.cpu_slowdown:g}× "
              f"slower, Chrome's Slow 4G (150 ms RTT, 1.6 Mbit/s down), Debian's Chromium, {os.cpu_count()} cores")
        print(f"{'until the code field can be typed in':<40}{'p50 ms':>10}{'p90 ms':>10}")
        for label in ("baseline", "first visit", "next visit"):
            name = "baseline: /healthz (bare JSON)" if label == "baseline" else f"/app/, {label}"
            seconds = results[label]
            print(f"{name:<40}{_percentile(seconds, 50) * 1000:>10.0f}{_percentile(seconds, 90) * 1000:>10.0f}")
        print(f"bytes a first visit transfers: {statistics.median(results['bytes']) / 1024:.0f} KiB (median)")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
