"""After a fuzzer: the pipeline still carries a normal order end to end."""

from __future__ import annotations

import time
import uuid

from shared.config import Settings
from tests.integration.harness import (
    Services,
    Store,
    buyer_clicks,
    eventually,
    new_affiliate,
    new_store,
    order_view,
    signed_post,
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
