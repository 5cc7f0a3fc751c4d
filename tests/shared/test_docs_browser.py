"""Swagger UI under the page policy, in a real browser: the page renders the API with its own
inline script allowed by hash, and the browser reports no policy violation."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from deploy.stack.browser import ensure_chromium
from shared.docs import service_app
from shared.http import install_error_handlers
from tests.services.commission.reports.test_dashboard_browser import CHROMIUM_ARGS, served

pytestmark = pytest.mark.integration


def docs_app() -> FastAPI:
    app = service_app("Policy probe", None)
    install_error_handlers(app)

    @app.get("/v1/probe", summary="A route to list")
    async def probe() -> dict[str, str]:
        return {"ok": "yes"}

    return app


async def test_swagger_ui_renders_under_the_page_policy_without_violations() -> None:
    from playwright.async_api import async_playwright

    chromium = await asyncio.to_thread(ensure_chromium)
    async with served(docs_app()) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda msg: console.append(msg.text))
            answer = await page.goto(f"{base}/docs")
            assert answer is not None
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            await page.wait_for_selector(".opblock", timeout=15_000)
            assert "probe" in await page.inner_text(".opblock")
            violations = [m for m in console if "Content Security Policy" in m]
            assert violations == []
        finally:
            await browser.close()
