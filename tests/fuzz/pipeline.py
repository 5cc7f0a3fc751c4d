"""After a fuzzer: the pipeline still carries a normal order end to end."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from shared.config import Settings
from shared.db import make_engine
from tests.integration.harness import (
    Services,
    Store,
    buyer_clicks,
    eventually,
    new_affiliate,
    new_link,
    new_store,
    order_view,
    signed_post,
    visitor_of,
)
from tests.integration.test_pipeline import completed, placed


async def click_and_order(svc: Services, store: Store, affiliate_key: str) -> str:
    """A buyer clicks the affiliate's link to the store's product p1, then the store reports
    the order placed and completed: the order's id."""
    visitor = await buyer_clicks(svc, affiliate_key, store.store_id)
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    resp = await signed_post(
        svc.tracker,
        "/v1/events",
        store,
        {"events": [placed(order_id, visitor), completed(order_id)]},
    )
    assert resp.status_code == 202, resp.text
    return order_id


async def a_normal_order_flows(svc: Services, settings: Settings) -> float:
    """A fresh store and affiliate, a click and an order placed and completed: seconds until
    the commission service shows it paid to the affiliate (at most a minute)."""
    u = uuid.uuid4().hex[:8]
    started = time.monotonic()
    store = await new_store(svc, settings, f"after-{u}")
    key = await new_affiliate(svc, settings, f"after-aff-{u}")
    order_id = await click_and_order(svc, store, key)
    want = {"status": "completed", "affiliate_id": f"after-aff-{u}", "payable": "2.19"}
    await eventually(lambda: order_view(svc, settings, (store.store_id, order_id), **want), 60)
    return time.monotonic() - started


def _lines(items: list[dict[str, Any]]) -> list[tuple[str, int, Decimal, Decimal]]:
    return [
        (i["product_id"], int(i["quantity"]), Decimal(i["unit_price"]), Decimal(i["shipping_fee"]))
        for i in items
    ]


async def placement_differences(settings: Settings, store_id: str) -> list[str]:
    """The store's decided orders whose placement at commission (currency, time, lines) is not
    the one attribution decided from; [] when every consumer holds the same."""
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        """
                        SELECT a.order_id, a.order_event, c.currency, c.placed_at, c.items
                        FROM attribution.orders a
                        JOIN commission.orders c USING (store_id, order_id)
                        WHERE a.store_id = :store AND a.revision >= 0
                        """
                    ),
                    {"store": store_id},
                )
            ).all()
    finally:
        await engine.dispose()
    out = []
    for order_id, event, currency, placed_at, items in rows:
        item_defaults = [{"shipping_fee": "0", **i} for i in event["items"]]
        attribution = (
            event["currency"],
            datetime.fromisoformat(event["occurred_at"]),
            _lines(item_defaults),
        )
        commission = (currency, placed_at, _lines(items))
        if attribution != commission:
            out.append(f"{order_id}: {attribution} decided, {commission} at commission")
    return out


async def placements_agree(settings: Settings, store_id: str, timeout_s: float = 60) -> None:
    """Wait until commission holds, for every order of the store attribution decided, the
    placement the decision was made from (decisions travel through Kafka)."""

    async def agreed() -> bool | None:
        return True if not await placement_differences(settings, store_id) else None

    try:
        await eventually(agreed, timeout_s)
    except AssertionError:
        raise AssertionError(await placement_differences(settings, store_id)) from None


async def a_flooding_visitor_orders(svc: Services, settings: Settings, clicks: int) -> None:
    """One visitor replays the affiliate's link ``clicks`` times with its cookie, then the
    store reports its order placed and completed: the order is still decided and paid to the
    affiliate (the flood's clicks are capped and marked, the decision reads what can decide
    it, never the flood)."""
    u = uuid.uuid4().hex[:8]
    store = await new_store(svc, settings, f"flood-{u}")
    key = await new_affiliate(svc, settings, f"flood-aff-{u}")
    link = await new_link(svc, key, store.store_id, "p1")
    first = await svc.tracker.get(f"/r/{link['code']}")
    assert first.status_code == 302, first.text
    visitor = visitor_of(first)
    cookie = first.headers["set-cookie"].split(";", 1)[0]
    for _ in range(clicks - 1):
        again = await svc.tracker.get(f"/r/{link['code']}", headers={"cookie": cookie})
        assert again.status_code == 302, again.text
        assert visitor_of(again) == visitor
    order_id = f"o-{u}"
    resp = await signed_post(
        svc.tracker,
        "/v1/events",
        store,
        {"events": [placed(order_id, visitor), completed(order_id)]},
    )
    assert resp.status_code == 202, resp.text
    want = {"status": "completed", "affiliate_id": f"flood-aff-{u}", "payable": "2.19"}
    await eventually(lambda: order_view(svc, settings, (store.store_id, order_id), **want), 60)
