"""Issue 19, defects 1 and 9, through the services on the real stack: a storefront's event ids
cannot reach a decision's idempotency slot, and commission pays on exactly the placement
attribution decided from."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from services.commission import models as m
from services.commission.orders.service import OrderService
from services.commission.program.service import ProgramService
from shared.clock import SystemClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from shared.events import Attribution
from shared.kafka import Received
from tests.integration import events, harness
from tests.integration.test_pipeline import placed

pytestmark = pytest.mark.integration


def status(kind: str, order_id: str, event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        "order_id": order_id,
    }


async def post(svc: harness.Services, store: harness.Store, events: list[dict[str, Any]]) -> None:
    resp = await harness.signed_post(svc.tracker, "/v1/events", store, {"events": events})
    assert resp.status_code == 202, resp.text
    assert resp.json()["rejected"] == 0, resp.text


class TestIdempotencyNamespaces:
    async def test_a_store_event_shaped_like_a_decision_id_cannot_take_its_slot(
        self, settings: Settings
    ) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.new_store(svc, settings, f"sns-{u}", rate="0.10")
            key = await harness.new_affiliate(svc, settings, f"affns-{u}")
            visitor = await harness.buyer_clicks(svc, key, store.store_id)
            order = f"o-{u}"
            decoy = f"decoy-{u}"
            # before the decision: a store event whose id is the decision's (revision 0)
            await post(
                svc, store, [status("order_cancelled", decoy, f"{store.store_id}:{order}:0")]
            )
            await post(svc, store, [placed(order, visitor, "50.00", qty=1, ship="0.00")])
            await harness.eventually(
                lambda: harness.order_view(
                    svc, settings, (store.store_id, order), affiliate_id=f"affns-{u}"
                )
            )
            # after the decision: the completion, its id shaped like the decision's and the
            # next correction's
            await post(
                svc,
                store,
                [status("order_completed", order, f"{store.store_id}:{order}:1")],
            )
            view = await harness.eventually(
                lambda: harness.order_view(
                    svc,
                    settings,
                    (store.store_id, order),
                    status="completed",
                    attributed=True,
                    payable="5.00",
                )
            )
            assert view["affiliate_id"] == f"affns-{u}"
            # the decoy was applied too, in the storefront's namespace
            await harness.eventually(
                lambda: harness.order_view(
                    svc, settings, (store.store_id, decoy), status="cancelled"
                )
            )


def _received(topic: str, offset: int, value: Any) -> Received[Any]:
    return Received(topic, 0, offset, None, value, 0)


class TestOnePlacement:
    async def test_commission_pays_on_exactly_the_placement_attribution_decided_from(
        self, settings: Settings
    ) -> None:
        """Two differing ``order_placed`` of one order: commission saw the other one first
        (its own partition), attribution decided from this one."""
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.new_store(svc, settings, f"sop-{u}", rate="0.10")
            await harness.new_affiliate(svc, settings, f"affop-{u}")
            order = f"o-{u}"
            seen_first = events.placement(store.store_id, order, f"v-other-{u}", "EUR", "99.00")
            decided_from = events.placement(store.store_id, order, f"v-buyer-{u}", "USD", "10.00")
            decision = events.decision(decided_from, f"affop-{u}")
            orders = OrderService(SystemClock(), programs=ProgramService())
            engine = make_engine(settings.database_url, pool_size=1)
            try:
                sessions = make_sessions(engine)
                for n, event in enumerate([seen_first, decision, decided_from]):
                    async with sessions() as session, session.begin():
                        topic = "attributions" if isinstance(event, Attribution) else "orders"
                        await orders.handle_batch(session, [_received(topic, n, event)])
                async with sessions() as session:
                    lines = (
                        await session.execute(
                            select(m.order_lines.c.currency, m.order_lines.c.sales_minor).where(
                                m.order_lines.c.store_id == store.store_id,
                                m.order_lines.c.order_id == order,
                            )
                        )
                    ).all()
            finally:
                await engine.dispose()
            view = await harness.order_view(svc, settings, (store.store_id, order))
            assert view is not None
            assert (view["currency"], view["affiliate_id"]) == ("USD", f"affop-{u}")
            assert [Decimal(i["base"]) for i in view["items"]] == [Decimal("10.00")]
            assert Decimal(view["estimated"]) == Decimal("1.00")
            assert lines == [("USD", 1000)]
