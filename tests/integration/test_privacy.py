"""Privacy over HTTP on the real stack (docs/privacy.md): consent on the redirect, a
visitor's erasure and export, the truncation of addresses at rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text

from shared.config import Settings
from shared.db import make_engine
from tests.integration.harness import (
    Services,
    admin,
    eventually,
    order_view,
    running,
    signed_post,
    uid,
)
from tests.integration.test_pipeline import placed
from tests.integration.test_public_limits import caught_up
from tests.services.tracker.test_endpoints import ready_link

pytestmark = pytest.mark.integration


def landing_visitor(resp: httpx.Response) -> str:
    return parse_qs(urlsplit(resp.headers["location"]).query)["alliance_vid"][0]


def landing_click(resp: httpx.Response) -> str:
    return parse_qs(urlsplit(resp.headers["location"]).query)["alliance_click"][0]


async def follow(
    svc: Services, code: str, cookies: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    """One buyer's redirect with no cookie jar of its own (the ``cookies`` given only)."""
    svc.tracker.cookies.clear()
    if cookies:
        kw["headers"] = kw.get("headers", {}) | {
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())
        }
    resp = await svc.tracker.get(f"/r/{code}", **kw)
    svc.tracker.cookies.clear()
    assert resp.status_code == 302, resp.text
    return resp


class TestConsent:
    async def test_gpc_and_a_declared_refusal_set_no_cookie_and_the_order_is_still_attributed(
        self, settings: Settings
    ) -> None:
        u = uid()
        async with running(settings) as svc:
            store, link = await ready_link(svc, settings, u)
            code = str(link["code"])

            assert "set-cookie" in (await follow(svc, code)).headers  # the default: a cookie
            for refusal in (
                {"headers": {"Sec-GPC": "1"}},
                {"params": {"consent": "false"}},
                {"cookies": {"alliance_consent": "false"}},
            ):
                resp = await follow(svc, code, **refusal)
                assert "set-cookie" not in resp.headers, refusal
                assert landing_visitor(resp)  # the id rides on the landing URL only

            # a buyer who had the cookie and now objects: not read (a new visitor), removed
            had = await follow(svc, code)
            cookie = had.headers["set-cookie"].split(";")[0].split("=", 1)[1]
            gone = await follow(
                svc, code, headers={"Sec-GPC": "1"}, cookies={"alliance_vid": cookie}
            )
            assert "Max-Age=0" in gone.headers["set-cookie"]
            assert landing_visitor(gone) != landing_visitor(had)

            # the storefront keeps the landing URL's visitor in its own session: attributed
            visitor = landing_visitor(await follow(svc, code, headers={"Sec-GPC": "1"}))
            order = f"o-{u}"
            resp = await signed_post(
                svc.tracker, "/v1/events", store, {"events": [placed(order, visitor)]}
            )
            assert resp.status_code == 202, resp.text
            view = await eventually(
                lambda: order_view(svc, settings, (store.store_id, order), affiliate_id=f"aff-{u}")
            )
            assert view["affiliate_id"] == f"aff-{u}"

    async def test_a_program_requiring_consent_sets_the_cookie_only_on_a_declared_yes(
        self, settings: Settings
    ) -> None:
        u = uid()
        async with running(settings) as svc:
            store, link = await ready_link(svc, settings, u)
            code = str(link["code"])
            base = f"/v1/stores/{store.store_id}"

            bad = await svc.commission.put(
                f"{base}/consent", json={"consent": "maybe"}, headers=store.auth
            )
            assert bad.status_code == 422
            put = await svc.commission.put(
                f"{base}/consent", json={"consent": "required"}, headers=store.auth
            )
            assert put.status_code == 200, put.text
            assert put.json()["consent"] == "required"
            ops = (await svc.commission.get(f"{base}/operations", headers=store.auth)).json()
            assert ops[-1]["kind"] == "consent"
            assert ops[-1]["before"]["consent"] == "not_required"
            assert ops[-1]["after"]["consent"] == "required"
            audit = (await svc.commission.get("/v1/audit", headers=admin(settings))).json()
            assert any(
                e["subject"] == f"store:{store.store_id}/program"
                and (e.get("after") or {}).get("consent") == "required"
                for e in audit["items"]
            )

            async def honoured() -> bool | None:  # the tracker learns it from the directory
                resp = await follow(svc, code)
                return True if "set-cookie" not in resp.headers else None

            await eventually(honoured)
            yes = await follow(svc, code, params={"consent": "true"})
            assert "set-cookie" in yes.headers
            yes_cookie = await follow(svc, code, cookies={"alliance_consent": "true"})
            assert "set-cookie" in yes_cookie.headers
            refused = await follow(svc, code, params={"consent": "true"}, headers={"Sec-GPC": "1"})
            assert "set-cookie" not in refused.headers


async def tables_naming(settings: Settings, needle: str) -> dict[str, int]:
    """Every column of every table of both schemas (information_schema) that holds ``needle``
    anywhere in its text (bytes as text, JSON as text): ``{"schema.table.column": rows}``."""
    engine = make_engine(settings.database_url)
    found: dict[str, int] = {}
    try:
        async with engine.connect() as conn:
            columns = await conn.execute(
                text(
                    "SELECT table_schema, table_name, column_name, data_type "
                    "FROM information_schema.columns "
                    "WHERE table_schema IN ('attribution', 'commission') "
                    "AND table_name IN (SELECT table_name FROM information_schema.tables t "
                    "  WHERE t.table_schema = columns.table_schema "
                    "  AND t.table_type = 'BASE TABLE')"
                )
            )
            for schema, table, column, kind in list(columns):
                value = (
                    f"encode(\"{column}\", 'escape')" if kind == "bytea" else f'"{column}"::text'
                )
                n = await conn.scalar(
                    text(
                        f'SELECT count(*) FROM "{schema}"."{table}" '
                        f"WHERE strpos({value}, :needle) > 0"
                    ),
                    {"needle": needle},
                )
                if n:
                    found[f"{schema}.{table}.{column}"] = int(n)
    finally:
        await engine.dispose()
    return found


def page_view(store_id: str, visitor: str, event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "page_view",
        "occurred_at": datetime.now(UTC).isoformat(),
        "visitor_id": visitor,
        "product_id": "p1",
    }


class TestErasure:
    async def test_after_an_erasure_no_column_of_any_table_holds_the_visitor_and_money_stays(
        self, settings: Settings
    ) -> None:
        u = uid()
        async with running(settings) as svc:
            store, link = await ready_link(svc, settings, u)
            svc.tracker.cookies.clear()
            first = await svc.tracker.get(f"/r/{link['code']}")  # the cookie stays in the jar
            visitor = landing_visitor(first)
            order = f"o-{u}"
            events = [page_view(store.store_id, visitor, f"pv-{u}"), placed(order, visitor)]
            sent = await signed_post(svc.tracker, "/v1/events", store, {"events": events})
            assert sent.status_code == 202, sent.text
            before = await eventually(
                lambda: order_view(svc, settings, (store.store_id, order), affiliate_id=f"aff-{u}")
            )
            await eventually(lambda: caught_up(settings, svc))

            held = await svc.commission.get(
                f"/v1/admin/visitors/{visitor}", headers=admin(settings)
            )
            assert held.status_code == 200, held.text
            export = held.json()
            assert export["erased"] is False
            assert [c["click_id"] for c in export["clicks"]] == [landing_click(first)]
            assert [o["order_id"] for o in export["orders"]] == [order]
            assert export["interests"]
            assert export["visits"]
            assert (
                await svc.commission.get(f"/v1/admin/visitors/{visitor}", headers=store.auth)
            ).status_code == 403
            assert await tables_naming(settings, visitor)  # it was everywhere

            erased = await svc.commission.delete(
                f"/v1/admin/visitors/{visitor}", headers=admin(settings)
            )
            assert erased.status_code == 200, erased.text
            body = erased.json()
            assert body["already_erased"] is False
            assert body["erased"]["report_clicks"] == 1
            assert body["erased"]["orders"] == 1
            alias = body["visitor_pseudonym"]

            # events still on their way: a click (the buyer's cookie), a view, an order
            late = await svc.tracker.get(f"/r/{link['code']}")
            assert landing_visitor(late) == visitor
            late_order = f"o2-{u}"
            late_events = [
                page_view(store.store_id, visitor, f"pv2-{u}"),
                placed(late_order, visitor),
            ]
            sent = await signed_post(svc.tracker, "/v1/events", store, {"events": late_events})
            assert sent.status_code == 202, sent.text
            await eventually(
                lambda: order_view(svc, settings, (store.store_id, late_order), status="placed")
            )
            await eventually(lambda: caught_up(settings, svc))

            async def nothing_left() -> bool | None:
                return True if not await tables_naming(settings, visitor) else None

            await eventually(nothing_left)
            after = await order_view(svc, settings, (store.store_id, order))
            assert after is not None
            money = ("affiliate_id", "estimated", "commission", "net", "status", "items")
            assert {k: after.get(k) for k in money} == {k: before.get(k) for k in money}
            assert await tables_naming(settings, alias), "orders keep the pseudonym"

            again = await svc.commission.delete(
                f"/v1/admin/visitors/{visitor}", headers=admin(settings)
            )
            assert again.status_code == 200
            assert again.json()["already_erased"] is True
            assert again.json()["visitor_pseudonym"] == alias
            exported = (
                await svc.commission.get(f"/v1/admin/visitors/{visitor}", headers=admin(settings))
            ).json()
            assert exported["erased"] is True
            assert not any(exported[k] for k in ("clicks", "visits", "interests", "orders"))
            audit = (
                await svc.commission.get(
                    "/v1/audit", params={"kind": "visitor.erase"}, headers=admin(settings)
                )
            ).json()["items"]
            assert [e["subject"] for e in audit if e["kind"] == "visitor.erase"] == [
                f"visitor:{alias}"
            ] * 2


class TestAddressMinimisation:
    @pytest.mark.parametrize("schema", ["attribution", "commission"])
    async def test_addresses_of_days_over_by_the_setting_are_cut_to_their_network(
        self, settings: Settings, schema: str
    ) -> None:
        from datetime import date, timedelta

        from shared.clock import FixedClock
        from shared.db import make_sessions
        from shared.privacy_store import AddressMinimisation

        old, recent = date(2026, 12, 1), date(2026, 12, 5)
        rows = [
            (old, "L", "address:203.0.113.7", 2, 1),
            (old, "L", "address:203.0.113.99", 3, 0),  # the same /24: one row, counts summed
            (old, "L", "address:2001:db8:abcd:12::1", 1, 0),
            (old, "L", "visitor:v1", 4, 0),  # not an address
            (recent, "L", "address:198.51.100.1", 1, 0),  # its day is not over by a day yet
        ]
        engine = make_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        f"INSERT INTO {schema}.click_caps "
                        "(day, link_code, subject, stored, overflow) "
                        "VALUES (:day, :link, :subject, :stored, :overflow)"
                    ),
                    [
                        {"day": d, "link": k, "subject": s, "stored": n, "overflow": o}
                        for d, k, s, n, o in rows
                    ],
                )
            now = datetime(2026, 12, 5, 12, tzinfo=UTC)
            job = AddressMinimisation(
                make_sessions(engine), schema, FixedClock(now), timedelta(hours=24), 3600, 2
            )
            assert await job.run_once() == 3  # in chunks of 2
            assert await job.run_once() == 0  # idempotent
            async with engine.connect() as conn:
                got = {
                    (r.day, r.subject): (r.stored, r.overflow)
                    for r in await conn.execute(
                        text(f"SELECT day, subject, stored, overflow FROM {schema}.click_caps")
                    )
                }
        finally:
            await engine.dispose()
        assert got == {
            (old, "address:203.0.113.0/24"): (5, 1),
            (old, "address:2001:db8:abcd::/48"): (1, 0),
            (old, "visitor:v1"): (4, 0),
            (recent, "address:198.51.100.1"): (1, 0),
        }


class TestCommandLine:
    async def test_alliance_privacy_erase_is_idempotent_audited_and_checks_the_id(
        self, settings: Settings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import argparse
        import asyncio
        import json

        from deploy.cli import _privacy

        def run(action: str, visitor: str) -> Any:
            return asyncio.to_thread(
                _privacy, argparse.Namespace(action=action, visitor=visitor), settings
            )

        assert await run("erase", "not an id") == 2
        capsys.readouterr()
        assert await run("erase", "v-cli-1") == 0
        first = json.loads(capsys.readouterr().out)
        assert first["already_erased"] is False
        assert await run("erase", "v-cli-1") == 0
        second = json.loads(capsys.readouterr().out)
        assert second["already_erased"] is True
        assert second["visitor_pseudonym"] == first["visitor_pseudonym"]
        assert await run("export", "v-cli-1") == 0
        assert json.loads(capsys.readouterr().out)["erased"] is True
        engine = make_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                subjects = list(
                    await conn.scalars(
                        text(
                            "SELECT subject FROM commission.audit_log "
                            "WHERE kind = 'visitor.erase' ORDER BY id"
                        )
                    )
                )
                on_outbox = await conn.scalar(
                    text("SELECT count(*) FROM commission.outbox WHERE topic = :t"),
                    {"t": settings.topic("privacy")},
                )
        finally:
            await engine.dispose()
        assert subjects == [f"visitor:{first['visitor_pseudonym']}"] * 2
        assert on_outbox == 2  # for attribution, once a relay runs
        assert "v-cli-1" not in json.dumps(subjects)


class TestErasureRace:
    async def test_an_erasure_waits_for_a_batch_screened_before_it_and_deletes_its_click(
        self, settings: Settings
    ) -> None:
        import asyncio

        from services.attribution.privacy import Erasures
        from shared.clock import FixedClock
        from shared.db import make_sessions
        from shared.events import Click, Erasure
        from shared.kafka import Received
        from shared.privacy import ErasureSeal, visitor_hash

        secret, visitor = settings.secret_key, f"v-race-{uid()}"
        now = datetime(2026, 12, 5, 12, tzinfo=UTC)
        erasures = Erasures(secret, FixedClock(now))
        click = Click(
            event_id=f"c-{visitor}",
            occurred_at=now,
            received_at=now,
            affiliate_id="a",
            store_id="s",
            link_code="L",
            visitor_id=visitor,
        )
        erasure = Erasure(
            event_id=f"erasure:{visitor}",
            occurred_at=now,
            visitor_hash=visitor_hash(secret, visitor),
            sealed_visitor=ErasureSeal(secret).seal(visitor),
        )

        def record(value: Any) -> Received[Any]:
            return Received("t", 0, 0, None, value, 0)

        engine = make_engine(settings.database_url)
        sessions = make_sessions(engine)

        async def erase() -> None:
            async with sessions() as session, session.begin():
                await erasures.apply(session, [record(erasure)])

        try:
            async with sessions() as batch, batch.begin():
                kept = await erasures.apply(batch, [record(click)])
                assert kept[0].value is click  # not erased yet
                erasing = asyncio.create_task(erase())
                await asyncio.sleep(1.0)
                assert not erasing.done(), "the erasure waits for the batch in flight"
                await batch.execute(  # the batch stores its click, then commits
                    text(
                        "INSERT INTO attribution.clicks (click_id, store_id, visitor_id, "
                        "affiliate_id, occurred_at, received_at, suspicious, link_code) "
                        "VALUES (:id, 's', :v, 'a', :at, :at, false, 'L')"
                    ),
                    {"id": click.event_id, "v": visitor, "at": now},
                )
            await asyncio.wait_for(erasing, 30)
            async with sessions() as session, session.begin():
                left = await session.scalar(
                    text("SELECT count(*) FROM attribution.clicks WHERE visitor_id = :v"),
                    {"v": visitor},
                )
                later = await erasures.apply(session, [record(click)])
            assert left == 0
            assert later[0].value is None  # a batch after it: the click is dropped
        finally:
            await engine.dispose()
