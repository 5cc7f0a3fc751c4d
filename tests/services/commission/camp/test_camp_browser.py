"""The camp's buyer page in headless Chromium (Debian's, driven by Playwright), served by the
commission service over real HTTP: the list in the API's order, "more" pages, keyword search,
the category filter, and a personalised order for a visitor with history (the tracker's sealed
cookie in the browser) against the plain one of a visitor without. Both orders, and each
product's boost, are checked against the ones the HTTP test's independent computation gives
(the answer shows no score: it would reveal the stores' rates and affiliate sales).
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from deploy.stack.browser import ensure_chromium
from shared.config import Settings
from shared.visitors import VISITOR_COOKIE, VisitorCookies
from tests.integration.harness import Store, eventually, running, signed_post, uid
from tests.integration.test_camp import camp, expected, ranked, set_up
from tests.services.commission.reports.test_dashboard_browser import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    served,
)

pytestmark = pytest.mark.integration

#: more products than a page of the camp (24) holds, so the page has a "more"
EXTRA = 30


async def shown(page: Any) -> list[str]:
    """``store/product`` of every product on the page, in order."""
    items = page.locator("#products li.product")
    stores = await items.evaluate_all(
        "els => els.map(e => e.dataset.store + '/' + e.dataset.product)"
    )
    return list(stores)


async def boosts(page: Any) -> list[Decimal]:
    """The boost of every product on the page, in order (its ``data-boost``)."""
    items = page.locator("#products li.product")
    return [Decimal(b) for b in await items.evaluate_all("els => els.map(e => e.dataset.boost)")]


def order(items: list[dict[str, Any]]) -> list[str]:
    return [f"{i['store_id']}/{i['product_id']}" for i in items]


async def test_the_camp_page_searches_filters_pages_and_personalises(settings: Settings) -> None:
    from playwright.async_api import async_playwright

    chromium = await asyncio.to_thread(ensure_chromium)
    ARTIFACTS.mkdir(exist_ok=True)
    u = uid()
    cookies = VisitorCookies(settings.secret_key)
    visitor = f"v-{u}"
    sealed = cookies.seal(visitor)
    async with running(settings) as svc:
        stores = await set_up(svc, settings, u)
        b, c = stores["b"], stores["c"]
        now = datetime.now(UTC).isoformat()
        bulk: dict[str, list[tuple[str, str, str | None]]] = {
            "b": [(f"bulk-{n:02}", f"Bulk item {n}", "bulk") for n in range(EXTRA)]
        }
        extra = [
            {
                "event_id": f"bulk-{p}",
                "type": "product_upserted",
                "occurred_at": now,
                "product_id": p,
                "category_id": category,
                "title": title,
                "price": "1.00",
                "currency": "USD",
            }
            for p, title, category in bulk["b"]
        ]
        resp = await signed_post(svc.tracker, "/v1/events", b, {"events": extra})
        assert resp.status_code == 202, resp.text
        # the visitor bought in garden at b and viewed toys at c
        history: list[tuple[Store, dict[str, Any]]] = [
            (
                b,
                {
                    "event_id": f"o-{u}",
                    "type": "order_placed",
                    "order_id": f"o-{u}",
                    "currency": "USD",
                    "items": [{"product_id": "b2", "quantity": 1, "unit_price": "10.00"}],
                },
            ),
            (c, {"event_id": f"pv-{u}", "type": "page_view", "product_id": "c3"}),
        ]
        for store, event in history:
            first: dict[str, Any] = {"occurred_at": now, "visitor_id": visitor}
            payload = {"events": [first | event]}
            resp = await signed_post(svc.tracker, "/v1/events", store, payload)
            assert resp.status_code == 202, resp.text

        # computed independently (no affiliate sales here): bought in garden at b (3 each),
        # viewed toys at c (1 each)
        want_plain = expected(u, {}, {}, {}, extra=bulk)
        want_personal = expected(u, {}, {"garden": 3, "toys": 1}, {"b": 3, "c": 1}, extra=bulk)
        assert len(want_plain) == 10 + EXTRA
        assert [r[:2] for r in want_plain] != [r[:2] for r in want_personal]

        async def ready() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
            plain, _ = await camp(svc.commission, None, 100)
            personal, flags = await camp(svc.commission, sealed, 100)
            if ranked(plain) != want_plain or ranked(personal) != want_personal:
                return None  # the catalog or the history is still on its way
            assert all(flags)
            return plain, personal

        plain, personal = await eventually(ready, timeout_s=60)
        assert order(plain) != order(personal)

        async with served(svc.apps["commission"]) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            errors: list[str] = []
            try:
                # a visitor without history: the plain ranking, 24 then "more"
                anonymous = await browser.new_page(viewport={"width": 1280, "height": 900})
                anonymous.on("pageerror", lambda exc: errors.append(str(exc)))
                await anonymous.goto(f"{base}/camp")
                await anonymous.wait_for_selector("body[data-loaded]")
                assert await shown(anonymous) == order(plain)[:24]
                assert await boosts(anonymous) == [Decimal(1)] * 24
                assert await anonymous.locator("#personal").is_hidden()
                await anonymous.click("#more")
                await anonymous.wait_for_selector("body[data-pages='2']")
                assert await shown(anonymous) == order(plain)
                assert await anonymous.locator("#more").is_hidden()

                # keyword search
                await anonymous.fill("#q", "lamp")
                await anonymous.click("#search button[type=submit]")
                await anonymous.wait_for_selector("body[data-loaded][data-pages='1']")
                titles = await anonymous.locator("#products .title").all_inner_texts()
                lamps, _ = await camp(svc.commission, None, 100, q="lamp")
                assert titles == [i["title"] for i in lamps]
                assert titles
                assert all("lamp" in t.lower() for t in titles)

                # the category filter (its options come from the API)
                await anonymous.fill("#q", "")
                await anonymous.wait_for_selector("#category[data-loaded]")
                await anonymous.select_option("#category", "kitchen")
                await anonymous.wait_for_selector("body[data-loaded][data-pages='1']")

                async def kitchen() -> list[str] | None:
                    got = await anonymous.locator("#products li.product").evaluate_all(
                        "els => els.map(e => e.dataset.category)"
                    )
                    return got if got and set(got) == {"kitchen"} else None

                await eventually(kitchen, timeout_s=10)
                kitchen_items, _ = await camp(svc.commission, None, 100, category_id="kitchen")
                assert await shown(anonymous) == order(kitchen_items)
                await anonymous.screenshot(path=ARTIFACTS / "camp-kitchen.png", full_page=True)

                # the visitor with history: their cookie, sealed as the tracker does
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                await context.add_cookies(
                    [{"name": VISITOR_COOKIE, "value": sealed, "url": base, "httpOnly": True}]
                )
                known = await context.new_page()
                known.on("pageerror", lambda exc: errors.append(str(exc)))
                await known.goto(f"{base}/camp")
                await known.wait_for_selector("body[data-loaded]")
                assert await known.locator("#personal").is_visible()
                assert await shown(known) == order(personal)[:24]
                assert await boosts(known) == [r[2] for r in want_personal][:24]
                assert any(b != 1 for b in await boosts(known))
                assert (await shown(known))[:24] != (await shown(anonymous))[:24]
                # what they bought from ranks higher for them than for the anonymous visitor
                mine, theirs = order(personal), order(plain)
                hose = f"{b.store_id}/b2"
                assert mine.index(hose) < theirs.index(hose)
                badges = known.locator('li[data-product="b2"] .badge.because')
                assert await badges.count() == 2
                await known.screenshot(path=ARTIFACTS / "camp-personal.png", full_page=True)
                assert errors == []
            finally:
                await browser.close()
