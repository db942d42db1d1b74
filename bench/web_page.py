"""The operator page's first load on the demo: bytes transferred, and time until the map is drawn.

Starts the demo in this process (its own Mosquitto, central, ``--cabinets`` simulated cabinets with
coordinates in Dijon Métropole), then loads http://.../ in Debian's headless chromium (Playwright)
``--runs`` times, each in a fresh browser context (a cold cache), with the token already in the tab's
sessionStorage (as after signing in), and reports:

- bytes: what crossed the wire for the load (encoded bodies and headers of every response, from the
  browser's own counts), split into the page's files and the API's answers;
- time to the map: from the navigation's start to the first frame after the cabinets were placed on
  the map (the page stamps it: ``document.body.dataset.mapDrawnMs``);
- the same for a warm load (the browser's cache kept: the page's files revalidated, 304).

With ``--screenshots DIR`` it also saves the map and a cabinet's page as PNG (the README's).

    .venv/bin/python bench/web_page.py [--cabinets 5] [--runs 5] [--screenshots docs/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from cityedge.demo import RunningDemo, demo_in_background

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 860}


async def _load(context: Any, demo: RunningDemo) -> tuple[float, int, int]:
    """One load of the page: (ms to the map, bytes of the page's files, bytes of API answers)."""
    page = await context.new_page()
    responses: list[Any] = []

    def finished(request: Any) -> None:  # playwright cannot take a builtin method as a handler
        responses.append(request)

    page.on("requestfinished", finished)
    await page.goto(demo.url + "/")
    await page.wait_for_selector("body[data-map-drawn-ms]", state="attached", timeout=60_000)
    drawn = float(await page.evaluate("Number(document.body.dataset.mapDrawnMs)"))
    await page.wait_for_timeout(1000)  # the answers that follow the first draw (alarms, stream hello)
    files = api = 0
    for request in responses:
        if request.url.endswith("/api/v1/stream"):
            continue  # the live stream stays open: not part of the load
        sizes = await request.sizes()
        size = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        if "/api/v1/" in request.url:
            api += size
        else:
            files += size
    await page.close()
    return drawn, files, api


async def _screenshots(browser: Any, demo: RunningDemo, folder: Path) -> None:
    context = await _context(browser, demo)
    page = await context.new_page()
    await page.goto(demo.url + "/")
    await page.wait_for_selector("body[data-map-drawn-ms]", state="attached", timeout=60_000)
    await page.wait_for_timeout(1500)  # the live stream's first events, the clusters' animation
    await page.screenshot(path=str(folder / "map.png"))
    await page.goto(demo.url + "/#/cabinet/demo-001")
    await page.wait_for_selector("#chart .uplot", timeout=60_000)
    # A dim sent from the form, shown through its lifecycle.
    await page.fill("#command-form input[name=level_pct]", "60")
    await page.click("#command-form button[type=submit]")
    await page.wait_for_selector("#commands tr[data-status='executed']", timeout=60_000)
    await page.screenshot(path=str(folder / "cabinet.png"), full_page=True)
    await context.close()
    print(f"screenshots: {folder / 'map.png'}, {folder / 'cabinet.png'}")


async def _context(browser: Any, demo: RunningDemo) -> Any:
    context = await browser.new_context(viewport=VIEWPORT, locale="en-GB")
    # As after signing in: the token is in the tab's sessionStorage, never in a URL.
    await context.add_init_script(f"sessionStorage.setItem('cityedge.token', {demo.token!r});")
    return context


def _summary(name: str, loads: list[tuple[float, int, int]]) -> None:
    times = sorted(x[0] for x in loads)
    files, api = loads[-1][1], loads[-1][2]
    print(
        f"{name}: map drawn after {statistics.median(times):.0f} ms median"
        f" (min {times[0]:.0f}, max {times[-1]:.0f}, {len(times)} loads);"
        f" {files + api:,} bytes transferred ({files:,} page files, {api:,} API answers)"
    )


async def measure(cabinets: int, runs: int, screenshots: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="cityedge-web-") as folder:
        async with demo_in_background(cabinets=cabinets, data_dir=Path(folder)) as demo:
            # Let every cabinet come online and send a first batch, as a demo someone just opened.
            await asyncio.sleep(15)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM)
                cold = []
                for _ in range(runs):
                    context = await _context(browser, demo)
                    cold.append(await _load(context, demo))
                    await context.close()
                context = await _context(browser, demo)
                await _load(context, demo)
                warm = [await _load(context, demo) for _ in range(runs)]
                await context.close()
                print(f"demo: {cabinets} cabinets, page at {demo.url}/")
                _summary("first load (cold cache)", cold)
                _summary("load again (warm cache)", warm)
                if screenshots is not None:
                    await _screenshots(browser, demo, screenshots)
                await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cabinets", type=int, default=5, help="demo cabinets (the demo's default: 5)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--screenshots", type=Path, default=None, help="save map.png and cabinet.png here")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"no browser at {CHROMIUM}: apt-get install chromium")
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    asyncio.run(measure(args.cabinets, args.runs, args.screenshots))


if __name__ == "__main__":
    main()
