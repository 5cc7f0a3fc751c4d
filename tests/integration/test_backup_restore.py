"""The restore drill (docs/backups.md): a backup of the live cluster taken mid-traffic,
restored into a fresh cluster on a port of its own, where the attribution and commission
consumers resume from the offsets the backup holds and replay the later events from Kafka.
The restored ledger verifies clean and every order ends exactly as in the original.

The shared stack is only read: its PostgreSQL is copied with ``pg_basebackup`` (never stopped),
and its Kafka keeps running; the restored cluster is stopped and removed at the end."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from alliance_client import ApiError, StoreClient
from deploy.stack import backup, orchestrate, postgres
from services.commission.orders.verify import verify
from shared.config import Settings
from shared.db import scratch_sessions
from tests.conftest import free_ports
from tests.integration import harness
from tests.integration.test_pipeline import completed as _completed
from tests.integration.test_pipeline import placed as _placed

pytestmark = pytest.mark.integration


def _refunded(order_id: str) -> dict[str, Any]:
    return {
        "event_id": f"{order_id}-refund",
        "type": "order_refunded",
        "occurred_at": datetime.now(UTC).isoformat(),
        "order_id": order_id,
        "refund_id": f"rf-{order_id}",
        "currency": "USD",
        "items": [{"product_id": "p1", "amount": "5.00"}],
    }


@asynccontextmanager
async def _consumers(
    settings: Settings, *, consume: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The attribution and commission services (consumers included unless ``consume`` is
    False: then the commission service alone) on ``settings``; a client of the commission
    service."""
    from services.attribution.app import create_app as attribution_app
    from services.commission.app import create_app as commission_app

    commission = commission_app(settings, consume=consume)
    apps = [attribution_app(settings), commission] if consume else [commission]
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=commission), base_url="http://commission.test"
            )
        )


async def _order(
    client: httpx.AsyncClient, settings: Settings, store_id: str, order_id: str
) -> dict[str, Any] | None:
    try:
        view = await StoreClient(store_id, settings.admin_token, client).order(order_id)
    except ApiError:
        return None
    # the whole view: nothing in it depends on when a consumer ran, only on what it was told
    return view.model_dump(mode="json")


async def _books(
    client: httpx.AsyncClient, settings: Settings, store_id: str, orders: list[str]
) -> dict[str, Any] | None:
    """Every order's view and its ledger postings (account, amount), or None while an order
    is missing."""
    views = {}
    for order_id in orders:
        view = await _order(client, settings, store_id, order_id)
        if view is None:
            return None
        views[order_id] = view
    lines = await harness.ledger_lines(client, settings)
    postings = {
        order_id: sorted(
            (line["account"], line["amount"]) for line in lines if line["order_id"] == order_id
        )
        for order_id in orders
    }
    return {"orders": views, "postings": postings}


async def _verify(database_url: str) -> Any:
    async with scratch_sessions(database_url) as sessions, sessions() as session, session.begin():
        return await verify(session, Settings().exit_policy)


async def test_a_backup_taken_mid_traffic_restores_and_catches_up(
    settings: Settings, stack_settings: Settings
) -> None:
    u = harness.uid()
    store_id = f"s-{u}"
    orders: list[str] = []
    cluster = orchestrate.Stack.from_settings(stack_settings).postgres
    # the restored server runs as an unprivileged user when we are root: a folder it reaches
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="drill-", dir="/var/tmp"))
    await asyncio.to_thread(scratch.chmod, 0o755)
    async with harness.running(settings) as svc:
        store = await harness.new_store(svc, settings, store_id)
        key = await harness.new_affiliate(svc, settings, f"aff-{u}")

        async def send(*events: dict[str, Any]) -> None:
            resp = await harness.signed_post(svc.tracker, "/v1/events", store, {"events": events})
            assert resp.status_code == 202, resp.text

        async def place(n: int) -> list[str]:
            placed = []
            for _ in range(n):
                order_id = f"o{len(orders)}-{u}"
                visitor = await harness.buyer_clicks(svc, key, store_id)
                await send(_placed(order_id, visitor))
                orders.append(order_id)
                placed.append(order_id)
            return placed

        # before the backup: placed, completed, refunded, all processed
        first = await place(4)
        await send(*(_completed(o) for o in first[:3]), _refunded(first[0]))
        await harness.eventually(
            lambda: harness.order_view(
                svc, settings, (store_id, first[2]), status="completed", attributed=True
            ),
            timeout_s=60,
        )
        # mid-traffic: events sent and not awaited, the backup taken at once
        second = await place(3)
        await send(_completed(first[3]), *(_completed(o) for o in second[:2]))
        taken = await asyncio.to_thread(backup.take, cluster, scratch / "backup")
        assert taken.format == "plain"
        assert taken.size_bytes > 0
        # after the backup: more orders, completions and refunds
        third = await place(3)
        await send(
            *(_completed(o) for o in third[:2]),
            _refunded(second[0]),
            _refunded(third[0]),
            _refunded(first[1]),
        )
        original = await harness.eventually(
            lambda: _books_when_settled(
                svc.commission,
                settings,
                store_id,
                orders,
                completed={*first, *second[:2], *third[:2]},
                refunded={first[0], first[1], second[0], third[0]},
            ),
            timeout_s=90,
        )
    checked = await _verify(settings.database_url)
    assert checked.ok, checked
    assert any(original["postings"].values())  # the drill compares real commissions

    restored_cfg = postgres.PostgresConfig(
        state_dir=scratch / "restored", port=free_ports(1)[0], durable=False
    )
    try:
        await asyncio.to_thread(backup.restore, taken.path, restored_cfg)
        shutil.rmtree(taken.path)  # the restored cluster has its own copy
        database = make_url(settings.database_url).database
        restored = settings.model_copy(
            update={"database_url": postgres.database_url(restored_cfg, database)}
        )
        async with _consumers(restored, consume=False) as client:
            # the orders placed after the backup are not in it: the consumers must replay them
            assert await _order(client, restored, store_id, third[0]) is None
            assert await _order(client, restored, store_id, first[2]) is not None
        async with _consumers(restored) as client:
            caught_up = await harness.eventually(
                lambda: _same(client, restored, store_id, orders, original), timeout_s=120
            )
        assert caught_up == original
        checked = await _verify(restored.database_url)
        assert checked.ok, checked
        assert checked.orders_checked >= len(orders)
    finally:
        await asyncio.to_thread(postgres.stop, restored_cfg)
        shutil.rmtree(scratch, ignore_errors=True)


async def _books_when_settled(
    client: httpx.AsyncClient,
    settings: Settings,
    store_id: str,
    orders: list[str],
    *,
    completed: set[str],
    refunded: set[str],
) -> dict[str, Any] | None:
    """The books once every event sent has been processed: every order decided, the
    completed ones completed, the refunded ones reversed."""
    books = await _books(client, settings, store_id, orders)
    if books is None:
        return None
    views = books["orders"]
    if not all(view["attribution_decided"] for view in views.values()):
        return None
    if any(views[o]["status"] != "completed" for o in completed):
        return None
    if any(views[o]["reversed"] in ("0.00", "-0.00") for o in refunded):
        return None
    return books


async def _same(
    client: httpx.AsyncClient,
    settings: Settings,
    store_id: str,
    orders: list[str],
    original: dict[str, Any],
) -> dict[str, Any] | None:
    books = await _books(client, settings, store_id, orders)
    return books if books == original else None
