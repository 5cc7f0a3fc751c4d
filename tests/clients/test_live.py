"""The client against the real stack (Kafka, PostgreSQL, the three services in-process): an
operator registers a store and an affiliate, the store joins, the storefront posts a signed
catalog, click and order through the tracker, and the store, the affiliate and finance read
the attributed order and its commission back through the commission API — all with the
client."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from alliance_client import (
    AdminClient,
    AffiliateClient,
    Conflict,
    FinanceClient,
    NotFound,
    StoreClient,
    StorefrontClient,
    Unauthorized,
)
from alliance_client.models.commission import OrderView
from shared.config import Settings
from tests.integration.harness import eventually, running, uid

pytestmark = pytest.mark.integration


async def test_a_signed_click_and_order_come_back_attributed(settings: Settings) -> None:
    u = uid()
    store_id, affiliate_id, order_id = f"s-{u}", f"aff-{u}", f"o-{u}"
    async with running(settings) as svc:
        admin = AdminClient(settings.admin_token, svc.commission)
        created = await admin.create_store(
            store_id, "Client store", f"https://{store_id}.shop.example/item/{{product_id}}"
        )
        affiliate_key = (await admin.create_affiliate(affiliate_id, "Client affiliate")).api_key
        store = StoreClient(store_id, created.api_key, svc.commission)
        program = await store.join("0.08")
        assert (program.state, program.default_rate) == ("joined", "0.08")

        storefront = StorefrontClient(store_id, created.webhook_secret, svc.tracker)
        catalog = {
            "event_id": f"cat-{u}",
            "type": "product_upserted",
            "occurred_at": datetime.now(UTC),
            "product_id": "p1",
            "category_id": "c1",
            "title": "Lamp",
            "price": Decimal("25.00"),
            "currency": "USD",
        }

        async def uploaded() -> bool | None:
            try:
                answer = await storefront.post_events([catalog])
            except Unauthorized:
                return None  # the directory has not reached the tracker yet
            assert answer.accepted + answer.duplicates == 1, answer
            return True

        await eventually(uploaded)

        affiliate = AffiliateClient(affiliate_key, tracker=svc.tracker, commission=svc.commission)

        async def linked() -> str | None:
            try:
                return (await affiliate.create_link(store_id, "p1", sub_id="client")).code
            except (Unauthorized, NotFound, Conflict):
                return None  # the tracker has not seen the affiliate, the join or the catalog

        code = await eventually(linked)
        click = await storefront.post_click(
            event_id=f"click-{u}",
            code=code,
            visitor_id=f"v-{u}",
            occurred_at=datetime.now(UTC),
            ip="203.0.113.9",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        assert click.click_id == f"s2s:{store_id}:click-{u}"
        placed = {
            "event_id": f"{order_id}-placed",
            "type": "order_placed",
            "occurred_at": datetime.now(UTC),
            "order_id": order_id,
            "visitor_id": f"v-{u}",
            "currency": "USD",
            "items": [{"product_id": "p1", "quantity": 2, "unit_price": Decimal("25.00")}],
        }
        done = {
            "event_id": f"{order_id}-done",
            "type": "order_completed",
            "occurred_at": datetime.now(UTC),
            "order_id": order_id,
        }
        answer = await storefront.post_events([placed, done])
        assert (answer.accepted, answer.rejected) == (2, 0)
        again = await storefront.post_events([placed])
        assert (again.accepted, again.duplicates) == (0, 1)  # idempotent by event id

        async def completed() -> OrderView | None:
            try:
                view = await store.order(order_id)
            except NotFound:
                return None
            return view if view.status == "completed" and view.attributed else None

        view = await eventually(completed)
        assert view.affiliate_id == affiliate_id
        assert view.click_id == click.click_id
        assert Decimal(view.payable) == Decimal("4.00")  # 2 × 25.00 × 8%
        # the model is the API's answer, field for field
        raw = await svc.commission.get(
            f"/v1/stores/{store_id}/orders/{order_id}",
            headers={"Authorization": f"Bearer {created.api_key}"},
        )
        assert view.model_dump(mode="json") == raw.json()

        mine = [o async for o in affiliate.all_orders()]
        assert [(o.order_id, o.store_id) for o in mine] == [(order_id, store_id)]
        finance = FinanceClient(settings.admin_token, svc.commission)
        postings = {
            (line.account, line.amount)
            for line in await finance.ledger_lines()
            if line.order_id == order_id
        }
        assert postings == {
            (f"store:{store_id}:commission", "-4.00"),
            (f"affiliate:{affiliate_id}:earned", "4.00"),
        }
        with pytest.raises(NotFound) as foreign:
            await StoreClient("someone-else", created.api_key, svc.commission).order(order_id)
        assert foreign.value.code == "not_found"
