"""The seller dashboard page in headless Chromium (Debian's, driven by Playwright), served by
the commission service over real HTTP after a month of events through the real pipelines:
sign in, read the figures and a chart's data, filter the transactions, download the CSV,
change a rate and see it in the operation record. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from deploy.stack.browser import ensure_chromium
from shared.config import Settings
from tests.conftest import free_ports
from tests.integration.harness import eventually, running
from tests.services.attribution.test_stream import NOW
from tests.services.commission.reports.test_endpoints import (
    expected,
    history,
    replay,
    set_up_store,
    settled,
)

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"
#: as root on a closed network: no sandbox, and none of Chromium's own network chatter
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` (its lifespan already running) on a real loopback port."""
    (port,) = free_ports(1)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_dashboard_page_shows_filters_exports_and_changes(
    settings: Settings, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    chromium = await asyncio.to_thread(ensure_chromium)  # installs it on a fresh CI machine
    ARTIFACTS.mkdir(exist_ok=True)
    u = uuid.uuid4().hex[:8]
    h = history(u)
    e = expected(h)
    async with running(settings) as svc:
        auth = await set_up_store(svc, settings, h.store)
        key = auth["Authorization"].removeprefix("Bearer ")
        await replay(settings, h)
        await settled(svc, auth, h.store, e)
        async with served(svc.apps["commission"]) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            try:
                await page.goto(f"{base}/dashboard")
                # a wrong key is refused on the page
                await page.fill("#signin-store", h.store)
                await page.fill("#signin-key", "not-the-key")
                await page.click("#signin-form button")
                await page.wait_for_selector("#signin-error:not(:empty)")
                await page.fill("#signin-key", key)
                await page.click("#signin-form button")
                await page.wait_for_selector("body[data-loaded]")
                await page.screenshot(path=ARTIFACTS / "dashboard-full.png", full_page=True)

                clicks = await page.inner_text('.figure[data-label="Affiliate clicks"] .value')
                assert int(clicks) == sum(e.clicks.values())

                # the traffic chart's data is the day series of the report
                labels = await page.evaluate("window.allianceCharts.traffic.data.labels")
                data = await page.evaluate("window.allianceCharts.traffic.data.datasets[0].data")
                assert len(labels) == 90
                by_day = dict(zip(labels, data, strict=True))
                assert sum(data) == sum(e.clicks.values())
                for day, n in e.clicks.items():
                    assert by_day[day.isoformat()] == n
                assert max(data) > 0
                orders_data = await page.evaluate(
                    "window.allianceCharts.orders.data.datasets[0].data"
                )
                live = sum(1 for o in e.orders.values() if o["status"] != "cancelled")
                assert sum(orders_data) == live
                chart = page.locator("#chart-traffic")
                await chart.screenshot(path=ARTIFACTS / "dashboard-traffic-chart.png")

                # filter the transactions by keyword
                await page.fill("#tx-keyword", "lamp")
                await page.select_option("#tx-type", "order")
                await page.click("#tx-filter button[type=submit]")
                title_cells = page.locator("#tx tbody tr td:nth-child(6)")

                async def filtered() -> list[str] | None:
                    # polled from here: a predicate evaluated in the page is an eval, which the
                    # page's Content-Security-Policy (rightly) refuses
                    got = await title_cells.all_inner_texts()
                    return got if got and all("lamp" in t.lower() for t in got) else None

                titles = await eventually(filtered)
                want = sum(
                    1 for o in e.orders.values() for ln in o["lines"] if "lamp" in ln[1].lower()
                )
                assert len(titles) == min(want, 50)
                assert want > 0

                # the CSV download holds the filtered rows
                async with page.expect_download() as info:
                    await page.click("#tx-csv")
                download = await info.value
                saved = tmp_path / download.suggested_filename
                await download.save_as(saved)
                rows = list(csv.DictReader(io.StringIO(saved.read_text())))
                assert len(rows) == want
                assert all("lamp" in r["title"].lower() for r in rows)

                # change the default rate; the change is in the operation record at once
                await page.fill("#default-rate", "0.07")
                await page.click("#set-default button")
                await page.wait_for_selector("#settings-result:has-text('saved')")
                first_op = page.locator("#ops tbody tr").first
                assert (await first_op.locator("td").nth(1).inner_text()) == "default_rate"
                assert (await first_op.locator("td").nth(3).inner_text()) == "0.07"
                default = page.locator('#program .figure[data-label="Default rate"] .value')
                assert (await default.inner_text()) == "0.07"
                # a refused change says why
                await page.fill("#default-rate", "2")
                await page.click("#set-default button")
                await page.wait_for_selector("#settings-result:has-text('Refused')")
                await page.locator("#program").screenshot(path=ARTIFACTS / "dashboard-program.png")
                assert errors == []
            finally:
                await browser.close()
    assert (ARTIFACTS / "dashboard-full.png").stat().st_size > 10_000
    assert date.fromisoformat(labels[-1]) == NOW.date()
    assert date.fromisoformat(labels[0]) == NOW.date() - timedelta(days=89)
