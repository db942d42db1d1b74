"""The operator page in a real headless browser (Debian's chromium, driven by Playwright) against
the demo: every cabinet on the map, an alarm acknowledged, a dim executed, nothing fetched elsewhere.

The demo runs in the test's event loop with its own Mosquitto, as a newcomer's does: 3 real agents (a
door that opens on demo-002, a failed lamp on demo-003) and fleet-sim cabinets, all in the registry
with coordinates. Every request the page makes is seen by a route handler; one to another host is
refused and counted. A viewer's token gets the same page without the command form or the acknowledge
buttons. With a tile server configured (a stand-in on another port), its origin is the only other
one the page asks, and the Content-Security-Policy lets its tiles in.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from central.auth import Tokens
from central.server import CentralServer
from central.store.auth_rows import Role
from central.store.sqlite import SqliteStore
from central.times import now_ms
from central.web.settings import WebSettings
from cityedge.broker import MosquittoBroker
from cityedge.demo import RunningDemo, demo_in_background
from cityedge.metropole import registry_entry
from cityedge.testing import wait_until

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed: pip install -e '.[dev]'"
)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"no browser at {CHROMIUM}: apt-get install chromium (.ci/setup does as root)",
    ),
]

CABINETS = 40
UI_TIMEOUT_MS = 30_000


class Page:
    """A browser page on the demo, with every request it makes recorded and foreign ones refused."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
        self.requests: list[str] = []
        self.foreign: list[str] = []
        self.problems: list[str] = []

    async def route(self, route: Any) -> None:
        url = route.request.url
        self.requests.append(url)
        if url.startswith(self.origin + "/"):
            await route.continue_()
        else:
            self.foreign.append(url)
            await route.abort()

    def console(self, message: Any) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")


@contextlib.asynccontextmanager
async def browser_page(browser: Any, demo: RunningDemo, token: str) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = await context.new_page()
    watched = Page(page, demo.url)
    await context.route("**/*", watched.route)
    page.on("console", watched.console)
    page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        await page.goto(demo.url + "/")
        await page.fill("#login-token", token)
        await page.click("#login-form button[type=submit]")
        await page.wait_for_selector("#main:not([hidden])")
        yield watched
    finally:
        await context.close()
    assert watched.foreign == [], f"the page asked other hosts: {watched.foreign}"
    assert watched.problems == [], watched.problems
    assert not any("token" in url or "ce1_" in url for url in watched.requests), "a token in a URL"


async def markers_shown(page: Any) -> int:
    """Cabinets the map shows: single markers plus the counts on the clusters."""
    return int(
        await page.evaluate(
            """() => document.querySelectorAll('#map .leaflet-marker-icon.cab').length
              + [...document.querySelectorAll('#map .marker-cluster span')]
                  .reduce((n, el) => n + Number(el.textContent), 0)"""
        )
    )


# One demo and one browser for the module's tests (each takes ~15 s to start); the demo starts its
# own Mosquitto, as a newcomer's does.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningDemo]:
    folder = tmp_path_factory.mktemp("demo")
    async with demo_in_background(cabinets=CABINETS, data_dir=folder, real_cabinets=3) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


async def test_an_operator_sees_every_cabinet_acknowledges_an_alarm_and_dims_a_cabinet(
    demo: RunningDemo, browser: Any
) -> None:
    headers = {"Authorization": f"Bearer {demo.token}"}
    async with (
        httpx.AsyncClient(base_url=f"{demo.url}/api/v1", headers=headers, timeout=10) as api,
        browser_page(browser, demo, demo.token) as watched,
    ):
        page = watched.page
        assert await page.text_content("#who") == "demo (admin)"
        # Every cabinet of the demo is in the registry, so every one is on the map.
        await page.wait_for_selector(f'#map[data-placed="{CABINETS}"]')
        await wait_until(
            lambda: _shown(page), timeout=20, what=f"{CABINETS} cabinets on the map (markers + clusters)"
        )
        await page.wait_for_selector('#live[data-state="on"]')
        # The demo's door and lamp alarms colour their cabinets (or the clusters holding them) red.
        await page.wait_for_selector("#map .cab-alarm, #map .cluster-alarm")
        in_alarm = await page.text_content("#map-legend li[data-state='alarm']")
        assert in_alarm is not None and int(in_alarm.split()[0]) >= 1, in_alarm

        # The alarm board: the demo's door (or lamp) alarm, acknowledged from the page.
        await page.click('#nav a[href="#/alarms"]')
        ack = page.locator("#alarms tr[data-state='raised'] button.ack").first
        await ack.wait_for()
        row = page.locator("#alarms tr[data-state='raised']").first
        episode_id = await row.get_attribute("data-id")
        await ack.click()
        await page.wait_for_selector(f"#alarms tr[data-id='{episode_id}'][data-state='acknowledged']")

        async def acknowledged() -> bool:
            episode = (await api.get(f"/alarm-episodes/{episode_id}")).json()
            return bool(episode["state"] == "acknowledged" and episode["acked_by"] == "demo")

        await wait_until(acknowledged, timeout=10, what=f"episode {episode_id} acknowledged in the API")

        # A cabinet's page: a dim sent from the form, followed live to executed.
        await page.goto(f"{demo.url}/#/cabinet/demo-001")
        await page.wait_for_selector("#cab-values tbody tr")
        await page.wait_for_selector("#command-form:not([hidden])")
        await page.select_option("#command-form select[name=action]", "dim")
        await page.fill("#command-form input[name=level_pct]", "30")
        await page.click("#command-form button[type=submit]")
        executed = page.locator("#commands tr[data-status='executed']").first
        await executed.wait_for()
        command_id = await executed.get_attribute("data-id")
        command = (await api.get(f"/commands/{command_id}")).json()
        assert (command["action"], command["args"]) == ("dim", {"level_pct": 30})
        assert (command["status"], command["issued_by"]) == ("executed", "demo")
        # A chart of the cabinet's power over the last day, drawn by uPlot.
        await page.wait_for_selector("#chart .uplot")

        await page.click('#nav a[href="#/kpi"]')
        await page.wait_for_selector("#kpi-energy")
        await page.select_option("#lang", "fr")
        assert await page.text_content('#nav a[href="#/alarms"]') == "Alarmes"


async def _shown(page: Any) -> bool:
    return await markers_shown(page) == CABINETS


async def test_a_viewer_sees_the_fleet_but_no_command_form_and_no_acknowledge(
    demo: RunningDemo, browser: Any
) -> None:
    async with SqliteStore(demo.db, durable=False) as store:
        viewer = await Tokens(store).create("wall-screen", Role.VIEWER)
    async with browser_page(browser, demo, viewer) as watched:
        page = watched.page
        assert await page.text_content("#who") == "wall-screen (viewer)"
        await page.wait_for_selector(f'#map[data-placed="{CABINETS}"]')
        await page.click('#nav a[href="#/alarms"]')
        await page.wait_for_selector("#alarms tbody tr")
        assert await page.locator("#alarms button").count() == 0
        await page.goto(f"{demo.url}/#/cabinet/demo-001")
        await page.wait_for_selector("#cab-values tbody tr")
        assert await page.locator("#command-form").is_hidden()


# A 1x1 PNG: what the stand-in tile server answers for every tile.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf000000030101009c1e0a6b0000000049454e44ae426082"
)


@contextlib.asynccontextmanager
async def tile_server() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP server on another port (so another origin) answering every GET with a PNG tile."""
    asked: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        asked.append(request.split(b" ")[1].decode())
        head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(PIXEL)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + PIXEL)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", asked


async def test_a_configured_tile_server_is_the_only_other_origin_and_the_csp_lets_it_in(
    tmp_path: Path, browser: Any
) -> None:
    async with tile_server() as (tiles, asked), MosquittoBroker() as mosquitto:
        web = WebSettings(tile_url=tiles + "/{z}/{x}/{y}.png", tile_attribution="© city tiles")
        async with CentralServer(
            db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0, web=web
        ) as central:
            for number in range(1, 4):
                await central.store.put_registry(
                    registry_entry(f"cab-{number}", number, rated_power_w=300.0, now_ms=now_ms())
                )
            token = await Tokens(central.store).create("screen", Role.VIEWER)
            demo = RunningDemo(central.url, token, tmp_path / "central.db", [])
            context = await browser.new_context()
            page = await context.new_page()
            problems: list[str] = []
            others: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on(
                "request",
                lambda r: others.append(r.url) if not r.url.startswith((central.url, tiles)) else None,
            )
            await page.goto(demo.url + "/")
            await page.fill("#login-token", token)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector('#map[data-placed="3"]')
            await page.wait_for_selector("#map img.leaflet-tile-loaded")
            assert await page.text_content(".leaflet-control-attribution") == "© city tiles"
            await context.close()
    assert asked and all(path.endswith(".png") for path in asked), asked
    assert others == [] and problems == [], (others, problems)
