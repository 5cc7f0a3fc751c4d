"""The reports consumer's visitor interests (the camp's history), on the real stack: what each
page view, affiliate click and placed order leaves behind, per store and category, the
suspicious clicks left out, replays changing nothing, and the rows past 90 days forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from services.commission.reports.service import TrafficService
from shared.config import Settings
from shared.events import Click, OrderItem, OrderPlaced, PageView, ProductUpserted, Topic, encode
from tests.integration.harness import eventually, register_store, running, uid
from tests.services.attribution.test_stream import produce

pytestmark = pytest.mark.integration

D1 = Decimal("1.00")


async def interests(svc: Any, visitors: list[str]) -> set[tuple[str, str, str, str, datetime]]:
    async with svc.apps["commission"].state.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT visitor_id, store_id, category_id, kind, last_at "
                "FROM commission.visitor_interests WHERE visitor_id = ANY(:v)"
            ),
            {"v": visitors},
        )
        return {(r[0], r[1], r[2], r[3], r[4]) for r in rows}


async def test_views_clicks_and_orders_leave_interests_idempotently(settings: Settings) -> None:
    u = uid()
    now = datetime.now(UTC).replace(microsecond=0)
    v1, v2 = f"v1-{u}", f"v2-{u}"
    async with running(settings) as svc:
        store = (await register_store(svc, settings, f"s-{u}")).store_id
        catalog = [
            ProductUpserted(
                event_id=f"cat-{p}",
                occurred_at=now - timedelta(days=1),
                store_id=store,
                product_id=p,
                category_id=c,
                title=p,
                price=Decimal("5.00"),
                currency="USD",
            )
            for p, c in (("p1", "kitchen"), ("p2", None))
        ]
        await produce(
            settings, [(Topic.CATALOG, f"{store}:{p.product_id}", encode(p)) for p in catalog]
        )

        async def known() -> bool | None:
            async with svc.apps["commission"].state.sessions() as session:
                n = await session.scalar(
                    text("SELECT count(*) FROM commission.products WHERE store_id = :s"),
                    {"s": store},
                )
            return True if n == 2 else None

        await eventually(known)

        def view(n: int, visitor: str, product: str | None, at: datetime) -> PageView:
            return PageView(
                event_id=f"pv{n}", occurred_at=at, store_id=store, visitor_id=visitor,
                product_id=product,
            )  # fmt: skip

        def click(n: int, product: str, at: datetime, suspicious: bool = False) -> Click:
            return Click(
                event_id=f"c{n}-{u}", occurred_at=at, received_at=at, affiliate_id="aff",
                store_id=store, product_id=product, link_code="k1.x.y", visitor_id=v1,
                suspicious=suspicious,
            )  # fmt: skip

        t = [now - timedelta(hours=h) for h in range(6)]
        old = now - timedelta(days=100)
        order = OrderPlaced(
            event_id=f"o-{u}",
            occurred_at=t[0],
            store_id=store,
            order_id=f"o-{u}",
            visitor_id=v1,
            currency="USD",
            items=[
                OrderItem(product_id="p1", quantity=1, unit_price=Decimal("5.00")),
                OrderItem(product_id="p9", category_id="garden", quantity=1, unit_price=D1),
            ],
        )
        events = [
            (Topic.PAGE_VIEWS, v1, encode(view(1, v1, "p1", t[5]))),  # kitchen (the catalog's)
            (Topic.PAGE_VIEWS, v1, encode(view(2, v1, None, t[4]))),  # the store only
            (Topic.PAGE_VIEWS, v1, encode(view(3, v1, "p-unknown", t[3]))),  # not in the catalog
            (Topic.CLICKS, v1, encode(click(1, "p2", t[2]))),  # p2 has no category
            (Topic.CLICKS, v1, encode(click(2, "p1", t[1], suspicious=True))),  # left out
            (Topic.ORDERS, v1, encode(order)),
            (Topic.PAGE_VIEWS, v2, encode(view(4, v2, "p1", old))),
        ]
        want = {
            (v1, store, "kitchen", "view", t[5]),
            (v1, store, "", "view", t[3]),  # the later of the two
            (v1, store, "", "click", t[2]),
            (v1, store, "kitchen", "order", t[0]),
            (v1, store, "garden", "order", t[0]),
            (v2, store, "kitchen", "view", old),
        }
        await produce(settings, events)

        async def arrived() -> set[Any] | None:
            got = await interests(svc, [v1, v2])
            return got if len(got) >= len(want) else None

        assert await eventually(arrived, timeout_s=60) == want

        # a replay of everything, in another order, changes nothing
        await produce(settings, list(reversed(events)))
        marker = view(5, f"v3-{u}", None, now)
        await produce(settings, [(Topic.PAGE_VIEWS, v1, encode(marker))])  # after the replay

        async def replayed() -> bool | None:
            return True if await interests(svc, [f"v3-{u}"]) else None

        await eventually(replayed, timeout_s=60)
        assert await interests(svc, [v1, v2]) == want

        # past the camp's 90 days: forgotten
        sessions = svc.apps["commission"].state.sessions
        gone = await TrafficService(settings.attribution_window_days).forget_interests(
            sessions, now, batch=1
        )
        assert gone == 1  # this test's database: only v2's view is that old
        assert await interests(svc, [v1, v2]) == want - {(v2, store, "kitchen", "view", old)}
