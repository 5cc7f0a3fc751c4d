"""The audit log over HTTP: every changing route appends exactly one entry (before, after,
actor, address, user agent, request id) in its own transaction, with no secret in it; each
reader sees what it may; the table refuses UPDATE and DELETE; the CSV export."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from shared.clock import FixedClock
from shared.config import Settings
from tests.integration.harness import admin, bearer

pytestmark = pytest.mark.integration
T0 = datetime(2026, 2, 3, tzinfo=UTC)
UA = "audit-test/1.0"
LANDING = "https://x.example/{product_id}"


@dataclass
class Commission:
    client: httpx.AsyncClient
    settings: Settings
    clock: FixedClock

    @property
    def admin(self) -> dict[str, str]:
        return admin(self.settings)

    async def entries(self, auth: dict[str, str], **params: Any) -> list[dict[str, Any]]:
        """Every entry the caller may read, page by page."""
        out: list[dict[str, Any]] = []
        cursor = 0
        while True:
            resp = await self.client.get(
                "/v1/audit", params={**params, "cursor": cursor, "limit": 3}, headers=auth
            )
            assert resp.status_code == 200, resp.text
            page = resp.json()
            out += page["items"]
            if page["next_cursor"] is None:
                return out
            cursor = page["next_cursor"]

    async def one_entry(self, call: Any, kind: str) -> dict[str, Any]:
        """Make the call; exactly one entry is appended, of ``kind``, with the request's
        address, user agent and id."""
        seen = len(await self.entries(self.admin))
        rid = f"rid-{uuid.uuid4().hex[:8]}"
        resp = await call({"X-Request-Id": rid, "User-Agent": UA})
        assert resp.status_code < 300, resp.text
        assert resp.headers["x-request-id"] == rid
        new = (await self.entries(self.admin))[seen:]
        assert [e["kind"] for e in new] == [kind]
        e = new[0]
        assert (e["request_id"], e["user_agent"], e["client_address"]) == (rid, UA, "127.0.0.1")
        assert e["at"].startswith("2026-02-03T00:00:00")
        return e


@pytest.fixture
async def commission(settings: Settings) -> AsyncIterator[Commission]:
    from services.commission.app import create_app

    clock = FixedClock(T0)
    settings = settings.model_copy(update={"webhook_allow_private": True})
    app = create_app(settings, clock, consume=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 5555)),
            base_url="http://commission.test",
        ) as client,
    ):
        yield Commission(client, settings, clock)


def no_secret(entry: dict[str, Any], *secrets: str) -> None:
    text = json.dumps(entry)
    for secret in secrets:
        assert secret not in text


class TestEveryChangeIsRecorded:
    async def test_each_changing_route_writes_exactly_one_entry_with_before_and_after(
        self, commission: Commission
    ) -> None:
        c, u = commission, uuid.uuid4().hex[:6]
        post, put, delete = c.client.post, c.client.put, c.client.delete
        store, aff, fin = f"s-{u}", f"a-{u}", f"f-{u}"

        def as_admin(h: dict[str, str]) -> dict[str, str]:
            return {**h, **c.admin}

        body = {
            "store_id": store,
            "name": store,
            "landing_url_template": "https://x.example/{product_id}",
        }
        created: dict[str, Any] = {}

        async def create_store(h: dict[str, str]) -> httpx.Response:
            resp = await post("/v1/admin/stores", json=body, headers=as_admin(h))
            created.update(resp.json())
            return resp

        e = await c.one_entry(create_store, "store.create")
        assert (e["actor_role"], e["actor_id"], e["tenant"]) == ("admin", "admin", f"store:{store}")
        assert e["before"] is None
        assert e["after"]["store_id"] == store
        assert e["after"]["api_key"] == e["after"]["webhook_secret"] == "[redacted]"
        no_secret(e, created["api_key"], created["webhook_secret"])
        skey = bearer(created["api_key"])

        e = await c.one_entry(
            lambda h: post(
                "/v1/admin/affiliates", json={"affiliate_id": aff, "name": aff}, headers=as_admin(h)
            ),
            "affiliate.create",
        )
        assert e["after"]["affiliate_id"] == aff
        assert e["after"]["api_key"] == "[redacted]"
        fin_key: dict[str, str] = {}

        async def create_finance(h: dict[str, str]) -> httpx.Response:
            resp = await post("/v1/admin/finance-users", json={"user_id": fin}, headers=as_admin(h))
            fin_key.update(bearer(resp.json()["api_key"]))
            return resp

        await c.one_entry(create_finance, "finance_user.create")

        e = await c.one_entry(
            lambda h: post(f"/v1/admin/stores/{store}/rotate-secret", headers=as_admin(h)),
            "secret.rotate",
        )
        assert e["changed"] == ["webhook_secret"]
        assert e["before"] == e["after"] == {"webhook_secret": "[redacted]"}

        rotated: dict[str, str] = {}

        async def rotate_key(h: dict[str, str]) -> httpx.Response:
            resp = await post(f"/v1/admin/stores/{store}/keys/rotate", headers=as_admin(h))
            rotated.update(resp.json())
            return resp

        e = await c.one_entry(rotate_key, "key.rotate")
        assert (e["subject"], e["changed"]) == (f"store:{store}/api_key", ["api_key"])
        no_secret(e, rotated["api_key"])
        skey = bearer(rotated["api_key"])

        base = f"/v1/stores/{store}"
        e = await c.one_entry(
            lambda h: post(f"{base}/program/join", json={}, headers={**h, **skey}), "program.update"
        )
        assert (e["actor_role"], e["actor_id"]) == ("store", store)
        assert e["before"]["joined"] is False
        assert e["after"]["joined"] is True
        e = await c.one_entry(
            lambda h: put(f"{base}/rates/default", json={"rate": "0.08"}, headers={**h, **skey}),
            "program.update",
        )
        assert (e["before"]["default_rate"], e["after"]["default_rate"]) == ("0.06", "0.08")
        assert e["changed"] == ["default_rate"]

        e = await c.one_entry(
            lambda h: put(
                f"{base}/coupons/SAVE10", json={"affiliate_id": aff}, headers={**h, **skey}
            ),
            "coupon.put",
        )
        assert e["before"] is None
        assert e["after"]["affiliate_id"] == aff
        e = await c.one_entry(
            lambda h: delete(f"{base}/coupons/SAVE10", headers={**h, **skey}), "coupon.delete"
        )
        assert e["before"]["code"] == "SAVE10"
        assert e["after"] is None

        hook = {"url": "https://127.0.0.1:9/hook?token=topsecret", "events": ["order.attributed"]}
        endpoint: dict[str, Any] = {}

        async def create_endpoint(h: dict[str, str]) -> httpx.Response:
            resp = await post(f"{base}/endpoints", json=hook, headers={**h, **skey})
            endpoint.update(resp.json())
            return resp

        e = await c.one_entry(create_endpoint, "endpoint.create")
        assert e["tenant"] == f"store:{store}"
        assert e["after"]["url"] == "https://127.0.0.1:9/hook?[redacted]"
        assert e["after"]["secret"] == "[redacted]"
        no_secret(e, endpoint["secret"], "topsecret")
        ep = f"{base}/endpoints/{endpoint['id']}"
        e = await c.one_entry(
            lambda h: post(f"{ep}/rotate-secret", headers={**h, **skey}), "endpoint.rotate_secret"
        )
        assert "secret" in e["changed"]
        assert e["before"]["id"] == endpoint["id"]
        e = await c.one_entry(
            lambda h: post(f"{ep}/enable", headers={**h, **skey}), "endpoint.enable"
        )
        assert e["after"]["status"] == "active"
        e = await c.one_entry(lambda h: delete(ep, headers={**h, **skey}), "endpoint.delete")
        assert e["before"]["id"] == endpoint["id"]
        assert e["after"] is None

        e = await c.one_entry(
            lambda h: post(f"/v1/statements/{store}/2026-01/close", headers={**h, **fin_key}),
            "statement.close",
        )
        assert (e["actor_role"], e["actor_id"]) == ("finance", fin)
        assert e["before"]["closed"] is False
        assert e["after"]["closed"] is True

        # a second close, a refused change, a read: nothing changed, nothing recorded
        seen = len(await c.entries(c.admin))
        again = await post(f"/v1/statements/{store}/2026-01/close", headers=fin_key)
        assert again.status_code == 200
        refused = await post(f"{base}/program/exit", headers=skey)
        assert refused.status_code == 409
        nothing = await post(
            "/v1/payouts",
            json={"affiliate_id": aff, "up_to": T0.isoformat()},
            headers={**fin_key, "Idempotency-Key": "k-" + u * 2},
        )
        assert nothing.status_code == 409
        assert len(await c.entries(c.admin)) == seen


async def _scenario(c: Commission) -> dict[str, dict[str, str]]:
    """Two stores that each change their program, an admin rotation, a finance close."""
    u = uuid.uuid4().hex[:6]
    keys: dict[str, dict[str, str]] = {}
    for s in ("s1", "s2"):
        resp = await c.client.post(
            "/v1/admin/stores",
            json={"store_id": f"{s}-{u}", "name": s, "landing_url_template": LANDING},
            headers=c.admin,
        )
        keys[s] = bearer(resp.json()["api_key"])
        joined = await c.client.post(f"/v1/stores/{s}-{u}/program/join", json={}, headers=keys[s])
        assert joined.status_code == 200
    resp = await c.client.post(
        "/v1/admin/finance-users", json={"user_id": f"f-{u}"}, headers=c.admin
    )
    keys["finance"] = bearer(resp.json()["api_key"])
    closed = await c.client.post(f"/v1/statements/s2-{u}/2026-01/close", headers=keys["finance"])
    assert closed.status_code == 200
    keys["u"] = {"u": u}
    return keys


class TestWhoReadsWhat:
    async def test_each_reader_sees_only_what_it_may(self, commission: Commission) -> None:
        c = commission
        keys = await _scenario(c)
        u = keys["u"]["u"]
        everything = await c.entries(c.admin)
        assert [e["kind"] for e in everything] == [
            "store.create",
            "program.update",
            "store.create",
            "program.update",
            "finance_user.create",
            "statement.close",
        ]
        s1 = await c.entries(keys["s1"])
        assert [e["tenant"] for e in s1] == [f"store:s1-{u}"] * 2
        s2 = await c.entries(keys["s2"])
        assert [e["kind"] for e in s2] == ["store.create", "program.update", "statement.close"]
        finance = await c.entries(keys["finance"])
        assert [e["kind"] for e in finance] == ["statement.close"]

    async def test_filters_by_actor_kind_and_time(self, commission: Commission) -> None:
        c = commission
        keys = await _scenario(c)
        u = keys["u"]["u"]
        by_store = await c.entries(c.admin, actor=f"store:s1-{u}")
        assert [e["actor_id"] for e in by_store] == [f"s1-{u}"]
        assert len(await c.entries(c.admin, actor="admin")) == 3
        assert len(await c.entries(c.admin, kind="program.update")) == 2
        assert len(await c.entries(keys["s1"], kind="statement.close")) == 0
        later = (T0 + timedelta(seconds=1)).isoformat()
        assert await c.entries(c.admin, **{"from": later}) == []
        assert len(await c.entries(c.admin, to=later)) == 6

    async def test_an_affiliate_reads_nothing_of_a_store(self, commission: Commission) -> None:
        c = commission
        await _scenario(c)
        resp = await c.client.post(
            "/v1/admin/affiliates", json={"affiliate_id": "a-x", "name": "a"}, headers=c.admin
        )
        mine = await c.entries(bearer(resp.json()["api_key"]))
        assert [e["kind"] for e in mine] == ["affiliate.create"]

    async def test_without_a_key_no_entry_is_shown(self, commission: Commission) -> None:
        assert (await commission.client.get("/v1/audit")).status_code == 401


class TestAppendOnly:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE commission.audit_log SET kind = 'x.y'",
            "DELETE FROM commission.audit_log",
            "TRUNCATE commission.audit_log",
        ],
    )
    async def test_update_and_delete_are_refused_by_the_trigger(
        self, commission: Commission, statement: str
    ) -> None:
        await _scenario(commission)
        engine = create_async_engine(commission.settings.database_url)
        try:
            async with engine.connect() as conn:
                with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                    await conn.execute(sa.text(statement))
                await conn.rollback()
                count = await conn.scalar(sa.text("SELECT count(*) FROM commission.audit_log"))
            assert count == 6
        finally:
            await engine.dispose()


class TestCsv:
    async def test_the_csv_export_holds_every_readable_entry_and_no_secret(
        self, commission: Commission
    ) -> None:
        c = commission
        keys = await _scenario(c)
        resp = await c.client.get("/v1/audit", headers={**c.admin, "Accept": "text/csv"})
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.text)))
        assert [r["kind"] for r in rows] == [e["kind"] for e in await c.entries(c.admin)]
        assert json.loads(rows[0]["after"])["api_key"] == "[redacted]"
        assert "als_" not in resp.text
        mine = await c.client.get("/v1/audit", headers={**keys["s1"], "Accept": "text/csv"})
        assert len(list(csv.DictReader(io.StringIO(mine.text)))) == 2


class TestNoChangeEscapesTheLog:
    def test_every_changing_route_of_the_commission_api_records_to_the_audit_log(self) -> None:
        """The guard of the class: a new POST, PUT, PATCH or DELETE route that does not take
        the request's audit trail fails here (reads are exempt by their method)."""
        from fastapi.dependencies.models import Dependant
        from fastapi.routing import APIRoute

        from services.commission.app import create_app
        from services.commission.deps import get_audit

        def flat(routes: list[Any]) -> list[APIRoute]:
            """The API routes, those of included routers too (kept as they were included)."""
            out: list[APIRoute] = []
            for r in routes:
                if isinstance(r, APIRoute):
                    out.append(r)
                elif hasattr(r, "original_router"):
                    out += flat(r.original_router.routes)
            return out

        def calls(dependant: Dependant) -> set[object]:
            found: set[object] = {dependant.call}
            for sub in dependant.dependencies:
                found |= calls(sub)
            return found

        app = create_app(Settings(), consume=False)
        changing = [
            r for r in flat(app.routes) if set(r.methods or ()) & {"POST", "PUT", "PATCH", "DELETE"}
        ]
        assert len(changing) >= 30  # admin 5, program 12, finance 2, webhooks 3 × 5
        missing = [
            f"{sorted(r.methods or ())} {r.path}"
            for r in changing
            if get_audit not in calls(r.dependant)
        ]
        assert missing == []
