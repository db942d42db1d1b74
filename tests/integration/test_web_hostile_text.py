"""The operator page shows what cabinets and operators wrote as text, never as markup.

A real central (SQLite, Mosquitto) holds a cabinet whose every free text is an HTML injection: its
registry label and town (an installer's), an alarm message, a point's text value and its bad
reading's reason, a command's failure reason (the cabinet's), an assignee and a comment (an
operator's). Debian's chromium (Playwright) shows the map, the alarm board and the cabinet's page:
each text appears literally, no injected element exists, nothing ran and no Content-Security-Policy
violation was reported.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.server import CentralServer
from central.store.auth_rows import Role
from central.store.rows import RegistryEntry
from central.testing import ScriptedEdge, wait_until
from central.times import now_ms
from cityedge.broker import MosquittoBroker
from protocols.fleet import DeviceInfo
from protocols.fleet.messages import Event, Quality, Reading
from tests.integration.api_client import bearer, new_token

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no browser at {CHROMIUM}"),
]

CAB = "cab-xss"
UI_TIMEOUT_MS = 20_000


def payload(where: str) -> str:
    """Markup that, if parsed, leaves an element behind and tries to run code naming ``where``."""
    return f"<img src=x class=xss onerror=\"window.__ran='{where}'\"><b class=xss>{where}</b>"


# Records in the browser what ran or what the CSP refused, before any of the page's scripts.
WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective));
"""


async def _hostile_cabinet(server: CentralServer, edge: ScriptedEdge, operator: httpx.AsyncClient) -> None:
    t = now_ms()
    entry = RegistryEntry(
        cabinet=CAB, town=payload("town")[:100], label=payload("label"), latitude=47.32, longitude=5.04,
        rated_power_w=None, baseline_kwh_per_day=None, broker_hash=None,
        created_ms=t, updated_ms=t, revoked_ms=None,
    )  # fmt: skip
    await server.store.put_registry(entry)
    await edge.birth(inventory=[DeviceInfo(name="lc1", driver="modbus", points=["note", "power_w"])], ts=t)
    await edge.send(
        Reading(edge._next_seq(), "lc1/note", t, payload("value")),
        Reading(edge._next_seq(), "lc1/power_w", t, None, Quality.BAD, payload("reason")[:256]),
        Event(
            edge._next_seq(), t, "agent", "alarm_raised", "critical", payload("message"),
            {"alarm": "door_open", "device": "lc1"},
        ),
    )  # fmt: skip

    async def raised() -> bool:
        return bool((await operator.get("/alarm-episodes")).json()["episodes"])

    await wait_until(raised, timeout=10, what="the episode")
    episode = (await operator.get("/alarm-episodes")).json()["episodes"][0]["id"]
    for path, body in (("assign", {"to": payload("to")[:64]}), ("comments", {"text": payload("comment")})):
        answer = await operator.post(f"/alarm-episodes/{episode}/{path}", json=body)
        assert answer.status_code in (200, 201), answer.text
    posted = await operator.post(
        "/commands",
        json={"target": {"cabinet": CAB, "device": "lc1"}, "action": "dim", "args": {"level_pct": 5}},
    )
    assert posted.status_code == 201, posted.text
    command_id = posted.json()["id"]
    await edge.wait_command(command_id)
    await edge.send(edge.result(command_id, "failed", payload("failed")[:256], ts=now_ms()))


async def _nothing_injected(page: Any, problems: list[str]) -> None:
    assert await page.evaluate("() => document.querySelectorAll('.xss').length") == 0
    assert await page.evaluate("() => window.__ran === undefined")
    assert await page.evaluate("() => window.__violations") == []
    assert problems == [], problems


async def test_texts_from_cabinets_and_operators_never_become_markup(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    async with CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as server:
        token = await new_token(server.store, Role.OPERATOR, "op-1")
        async with (
            ScriptedEdge(mosquitto.url, CAB) as edge,
            httpx.AsyncClient(base_url=f"{server.url}/api/v1", headers=bearer(token), timeout=10) as api,
            playwright_api.async_playwright() as pw,
        ):
            await _hostile_cabinet(server, edge, api)
            browser = await pw.chromium.launch(executable_path=CHROMIUM)
            try:
                context = await browser.new_context(locale="en-GB")
                await context.add_init_script(WATCH)
                page = await context.new_page()
                page.set_default_timeout(UI_TIMEOUT_MS)
                problems: list[str] = []
                page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
                page.on(
                    "console",
                    lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
                )
                await page.goto(server.url + "/")
                await page.fill("#login-token", token)
                await page.click("#login-form button[type=submit]")
                await page.wait_for_selector('#map[data-placed="1"]')
                await page.hover("#map .leaflet-marker-icon.cab")
                await page.wait_for_selector(".leaflet-tooltip")
                tip = await page.text_content(".leaflet-tooltip")
                assert tip is not None and payload("label") in tip
                assert payload("town")[:100] in (await page.text_content("#map .town-label")) or ""
                await _nothing_injected(page, problems)

                await page.click('#nav a[href="#/alarms"]')
                await page.wait_for_selector("#alarms tbody tr")
                row = page.locator("#alarms tbody tr").first
                assert payload("to")[:64] in (await row.text_content() or "")
                assert await row.locator("td[title]").first.get_attribute("title") == payload("message")
                await _nothing_injected(page, problems)

                await page.goto(f"{server.url}/#/cabinet/{CAB}")
                await page.wait_for_selector("#cab-values tbody tr")
                await page.wait_for_selector("#commands tr[data-status='failed']")
                text = await page.text_content("main") or ""
                for where, cut in (("label", 200), ("value", 2048), ("failed", 256)):
                    assert payload(where)[:cut] in text, where
                reasons = await page.locator("#cab-values td[title]").evaluate_all(
                    "(tds) => tds.map((td) => td.title)"
                )
                assert payload("reason")[:256] in reasons
                await _nothing_injected(page, problems)
            finally:
                await browser.close()
