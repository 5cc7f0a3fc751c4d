"""Issue 9, through HTTP on the real stack: who may change a program, key rotation, no
development secret in production, safe exports and pages, and checked input at creation."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from deploy import procs
from shared.config import InsecureSettings, Settings
from tests.conftest import free_ports
from tests.integration import harness
from tests.integration.test_pipeline import completed, placed

pytestmark = pytest.mark.integration


#: every program change a store may make, as (method, path under /v1/stores/{id}, body)
PROGRAM_CHANGES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "program/join", {}),
    ("PUT", "rates/default", {"rate": "0.08"}),
    ("PUT", "rates/categories/c1", {"rate": "0.09"}),
    ("DELETE", "rates/categories/c1", None),
    ("PUT", "main-products/p1", {"rate": "0.1"}),
    ("DELETE", "main-products/p1", None),
    ("PUT", "attribution-window", {"days": 7}),
    ("DELETE", "attribution-window", None),
    ("PUT", "incentives/new-buyer", {"extra_rate": "0.02"}),
    (
        "PUT",
        "incentives/tiers",
        {"currency": "USD", "tiers": [{"from": "1000.00", "extra_rate": "0.02"}]},
    ),
    ("PUT", "incentives/caps", {"per_order": {"USD": "5.00"}}),
    ("POST", "program/exit", None),
]


async def change(
    svc: harness.Services, store_id: str, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await svc.commission.request(
        method, f"/v1/stores/{store_id}/{path}", json=body, headers=headers
    )


class TestWhoMayChangeAProgram:
    async def test_finance_cannot_change_a_program(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.register_store(svc, settings, f"s-{u}")
            finance = harness.bearer(await harness.new_finance_user(svc, settings, f"fin-{u}"))
            for method, path, body in PROGRAM_CHANGES:
                resp = await change(svc, store.store_id, method, path, body, finance)
                assert resp.status_code == 403, (method, path, resp.text)
                assert resp.json()["error"]["code"] == "forbidden"
            # nothing changed, and finance still reads the program and its record
            program = await svc.commission.get(
                f"/v1/stores/{store.store_id}/program", headers=finance
            )
            assert program.status_code == 200
            assert program.json()["state"] == "never_joined"
            ops = await svc.commission.get(
                f"/v1/stores/{store.store_id}/operations", headers=finance
            )
            assert ops.status_code == 200
            assert ops.json() == []
            # the store's own key may
            joined = await change(svc, store.store_id, "POST", "program/join", {}, store.auth)
            assert joined.status_code == 200, joined.text

    async def test_another_store_cannot_change_a_program(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.register_store(svc, settings, f"s-{u}")
            other = await harness.register_store(svc, settings, f"t-{u}")
            for method, path, body in PROGRAM_CHANGES:
                resp = await change(svc, store.store_id, method, path, body, other.auth)
                assert resp.status_code == 403, (method, path, resp.text)
            program = await svc.commission.get(
                f"/v1/stores/{store.store_id}/program", headers=store.auth
            )
            assert program.json()["state"] == "never_joined"

    async def test_admin_may_change_a_program(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.register_store(svc, settings, f"s-{u}")
            headers = harness.admin(settings)
            for method, path, body in PROGRAM_CHANGES[:-1]:  # exit: not within 15 days
                resp = await change(svc, store.store_id, method, path, body, headers)
                assert resp.status_code == 200, (method, path, resp.text)
            ops = await svc.commission.get(
                f"/v1/stores/{store.store_id}/operations", headers=store.auth
            )
            assert {op["actor"] for op in ops.json()} == {"admin:admin"}
            assert len(ops.json()) == len(PROGRAM_CHANGES) - 1

    async def test_a_store_may_not_close_statements_or_pay(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.register_store(svc, settings, f"s-{u}")
            closed = await svc.commission.post(
                f"/v1/statements/{store.store_id}/2026-01/close", headers=store.auth
            )
            assert closed.status_code == 403
            paid = await svc.commission.post(
                "/v1/payouts",
                json={"affiliate_id": "a", "up_to": "2026-01-01T00:00:00Z"},
                headers={**store.auth, "Idempotency-Key": f"k-{u}-123456"},
            )
            assert paid.status_code == 403

    async def test_only_the_exact_admin_token_is_the_admin(self, settings: Settings) -> None:
        async with harness.running(settings) as svc:
            token = settings.admin_token
            for wrong in (token[:-1], token + "x", token.upper(), "x" + token[1:]):
                resp = await svc.commission.post(
                    "/v1/admin/finance-users",
                    json={"user_id": f"f-{harness.uid()}"},
                    headers=harness.bearer(wrong),
                )
                assert resp.status_code == 401, wrong


class TestKeyRotation:
    async def rotate(
        self, svc: harness.Services, settings: Settings, kind: str, principal: str
    ) -> str:
        resp = await svc.commission.post(
            f"/v1/admin/{kind}/{principal}/keys/rotate", headers=harness.admin(settings)
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] == principal
        key: str = resp.json()["api_key"]
        return key

    async def test_a_rotated_affiliate_key_stops_working(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.new_store(svc, settings, f"s-{u}")
            old = await harness.new_affiliate(svc, settings, f"aff-{u}")
            await harness.new_link(svc, old, store.store_id, "p1")  # the tracker knows the old key
            new = await self.rotate(svc, settings, "affiliates", f"aff-{u}")
            assert new != old
            assert new.startswith("ala_")

            # at once on the commission service
            earnings = "/v1/affiliate/earnings"
            assert (
                await svc.commission.get(earnings, headers=harness.bearer(old))
            ).status_code == 401
            assert (
                await svc.commission.get(earnings, headers=harness.bearer(new))
            ).status_code == 200

            # on the tracker once the directory entry reached it: the old key is refused
            async def refused() -> bool | None:
                resp = await svc.tracker.post(
                    "/v1/links", json={"store_id": store.store_id}, headers=harness.bearer(old)
                )
                return True if resp.status_code == 401 else None

            await harness.eventually(refused)
            link = await harness.new_link(svc, new, store.store_id, "p1")
            redirect = await svc.tracker.get(f"/r/{link['code']}")
            assert redirect.status_code == 302

    async def test_a_rotated_store_key_stops_working(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.new_store(svc, settings, f"s-{u}")
            program = f"/v1/stores/{store.store_id}/program"
            new = await self.rotate(svc, settings, "stores", store.store_id)
            assert new.startswith("als_")
            assert (await svc.commission.get(program, headers=store.auth)).status_code == 401
            assert (
                await svc.commission.get(program, headers=harness.bearer(new))
            ).status_code == 200
            resp = await change(
                svc, store.store_id, "PUT", "rates/default", {"rate": "0.07"}, store.auth
            )
            assert resp.status_code == 401
            resp = await change(
                svc, store.store_id, "PUT", "rates/default", {"rate": "0.07"}, harness.bearer(new)
            )
            assert resp.status_code == 200
            # the webhook secret is another credential: still the same
            event = {
                "event_id": f"view-{u}",
                "type": "page_view",
                "occurred_at": placed("x", "v")["occurred_at"],
                "visitor_id": f"v-{u}",
            }
            posted = await harness.signed_post(
                svc.tracker, "/v1/events", store, {"events": [event]}
            )
            assert posted.status_code == 202, posted.text

    async def test_a_rotated_finance_key_stops_working(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            old = await harness.new_finance_user(svc, settings, f"fin-{u}")
            assert (
                await svc.commission.get("/v1/ledger", headers=harness.bearer(old))
            ).status_code == 200
            new = await self.rotate(svc, settings, "finance-users", f"fin-{u}")
            assert new.startswith("alf_")
            assert (
                await svc.commission.get("/v1/ledger", headers=harness.bearer(old))
            ).status_code == 401
            assert (
                await svc.commission.get("/v1/ledger", headers=harness.bearer(new))
            ).status_code == 200

    async def test_only_the_admin_rotates_keys_of_principals_that_exist(
        self, settings: Settings
    ) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.register_store(svc, settings, f"s-{u}")
            own = await svc.commission.post(
                f"/v1/admin/stores/{store.store_id}/keys/rotate", headers=store.auth
            )
            assert own.status_code == 403
            missing = await svc.commission.post(
                f"/v1/admin/affiliates/nobody-{u}/keys/rotate", headers=harness.admin(settings)
            )
            assert missing.status_code == 404
            # a store's id is not an affiliate's
            crossed = await svc.commission.post(
                f"/v1/admin/affiliates/{store.store_id}/keys/rotate",
                headers=harness.admin(settings),
            )
            assert crossed.status_code == 404
            assert (
                await svc.commission.get(f"/v1/stores/{store.store_id}/program", headers=store.auth)
            ).status_code == 200


#: secrets fit for production (long, random-looking, not the development defaults)
GOOD = {
    "admin_token": "adm-" + "a" * 40,
    "secret_key": "sec-" + "b" * 40,
    "link_keys": "k2:" + "c" * 40 + ",k1:" + "d" * 40,
}
GOOD_ENV = {
    "ALLIANCE_ADMIN_TOKEN": GOOD["admin_token"],
    "ALLIANCE_SECRET_KEY": GOOD["secret_key"],
    "ALLIANCE_LINK_KEYS": GOOD["link_keys"],
}


def _apps() -> dict[str, Callable[[Settings], FastAPI]]:
    from services.attribution.app import create_app as attribution_app
    from services.commission.app import create_app as commission_app
    from services.tracker.app import create_app as tracker_app

    return {"tracker": tracker_app, "attribution": attribution_app, "commission": commission_app}


def _service_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "ALLIANCE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": settings.database_url,
        "ALLIANCE_TOPIC_PREFIX": settings.topic_prefix,
        "ALLIANCE_SPOOL_DIR": str(settings.spool_path),
        **extra,
    }


class TestProductionSecrets:
    async def test_production_refuses_development_secrets(self, settings: Settings) -> None:
        prod = settings.model_copy(update={"env": "production"})
        variables = ("ALLIANCE_ADMIN_TOKEN", "ALLIANCE_SECRET_KEY", "ALLIANCE_LINK_KEYS")
        for name, create_app in _apps().items():
            with pytest.raises(InsecureSettings) as refused:
                create_app(prod)
            for variable in variables:
                assert variable in str(refused.value), (name, variable)
        # each secret on its own: the development default, empty, too short
        weak = {
            "admin_token": ["dev-only-admin-token", "", "x" * 31],
            "secret_key": ["dev-only-secret-key-change-me", "  ", "y" * 31],
            "link_keys": [
                "k1:dev-only-link-key-change-me",
                "k9:dev-only-link-key-change-me",
                "k2:" + "c" * 40 + ",k1:short",
                "",
            ],
        }
        for field, values in weak.items():
            variable = f"ALLIANCE_{field.upper()}"
            for value in values:
                s = prod.model_copy(update={**GOOD, field: value})
                with pytest.raises(InsecureSettings) as refused:
                    _apps()["tracker"](s)
                message = str(refused.value)
                assert variable in message, (field, value)
                assert [v for v in variables if v in message] == [variable]
        # exactly 32 characters is enough; with good secrets every service starts and is ready
        assert not prod.model_copy(update={**GOOD, "admin_token": "z" * 32}).production_problems()
        async with harness.running(prod.model_copy(update=GOOD)) as svc:
            for client in (svc.tracker, svc.attribution, svc.commission):
                assert (await client.get("/readyz")).status_code == 200

    async def test_a_service_process_refuses_to_start_and_says_why(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        base = {**os.environ, **_service_env(settings), "ALLIANCE_ENV": "production"}
        for variable in GOOD_ENV:
            base.pop(variable, None)
        (port,) = free_ports(1)
        serve = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "deploy.cli", "tracker"],
            env={**base, "ALLIANCE_TRACKER_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert serve.returncode != 0
        assert "ALLIANCE_ADMIN_TOKEN" in serve.stderr
        assert "ALLIANCE_ENV" in serve.stderr
        # `alliance services start` says it too, and starts nothing
        state = tmp_path / "state"
        start = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "deploy.cli", "services", "start"],
            env={**base, "ALLIANCE_STATE_DIR": str(state)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert start.returncode != 0
        assert "ALLIANCE_SECRET_KEY" in start.stderr
        assert "ALLIANCE_LINK_KEYS" in start.stderr
        assert not list(state.glob("run/*.pid"))
        # with production secrets the same process starts and is ready
        run_dir = tmp_path / "run"
        env = {
            **_service_env(settings),
            **GOOD_ENV,
            "ALLIANCE_ENV": "production",
            "ALLIANCE_TRACKER_PORT": str(port),
        }
        pid = procs.start("tracker", ["tracker"], run_dir, env)
        try:
            url = f"http://127.0.0.1:{port}/readyz"
            await asyncio.to_thread(procs.wait_ready, url, 60, pid=pid, log=run_dir / "tracker.log")
        finally:
            await asyncio.to_thread(procs.stop, "tracker", run_dir)


class TestExportsAndPages:
    async def test_csv_exports_neutralise_formulas(self, settings: Settings) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.new_store(svc, settings, f"s-{u}")
            key = await harness.new_affiliate(svc, settings, f"aff-{u}")
            visitor = await harness.buyer_clicks(svc, key, store.store_id)
            order_id = f"o-{u}"
            order = placed(order_id, visitor)
            order["items"][0]["title"] = '=HYPERLINK("http://evil.example","x")'
            refund = {
                "event_id": f"{order_id}-r1",
                "type": "order_refunded",
                "occurred_at": placed("x", "v")["occurred_at"],
                "order_id": order_id,
                "refund_id": "@r1",
                "currency": "USD",
                "items": [{"product_id": "p1", "amount": "10.00"}],
            }
            resp = await harness.signed_post(
                svc.tracker,
                "/v1/events",
                store,
                {"events": [order, completed(order_id), refund]},
            )
            assert resp.status_code == 202, resp.text
            account = f"store:{store.store_id}:commission"

            async def posted() -> list[dict[str, Any]] | None:
                lines = await harness.ledger_lines(svc.commission, settings, account=account)
                return lines if len(lines) == 2 else None

            lines = await harness.eventually(posted, timeout_s=60)
            exported = await svc.commission.get(
                "/v1/ledger",
                params={"account": account},
                headers={**harness.admin(settings), "Accept": "text/csv"},
            )
            rows = list(csv.DictReader(io.StringIO(exported.text)))
            for row, line in zip(rows, lines, strict=True):
                if line["amount"].startswith("-"):
                    assert row["amount"] == "'" + line["amount"]
                else:
                    assert row["amount"] == line["amount"]
            assert any(r["amount"].startswith("'-") for r in rows)

            report = f"/v1/stores/{store.store_id}/reports/transactions"

            async def both_lines() -> list[dict[str, Any]] | None:
                got = await svc.commission.get(report, headers=store.auth)
                items: list[dict[str, Any]] = got.json()["items"]
                return items if {i["type"] for i in items} == {"order", "refund"} else None

            await harness.eventually(both_lines)
            got = await svc.commission.get(report, headers={**store.auth, "Accept": "text/csv"})
            rows = list(csv.DictReader(io.StringIO(got.text)))
            assert {r["title"] for r in rows} == {"'" + order["items"][0]["title"]}
            refund_row = next(r for r in rows if r["type"] == "refund")
            assert refund_row["refund_id"] == "'@r1"
            assert refund_row["commission"].startswith("'-")
            for row in rows:
                for cell in row.values():
                    assert not (cell or "").startswith(("=", "+", "-", "@", "\t", "\r"))

    async def test_the_dashboard_page_forbids_inline_script_and_framing(
        self, settings: Settings
    ) -> None:
        async with harness.running(settings) as svc:
            page = await svc.commission.get("/dashboard")
            assert page.status_code == 200
            csp = page.headers["content-security-policy"]
            assert csp == "default-src 'self'; frame-ancestors 'none'"
            html = page.text
            # every script is a file of this origin; no inline script, style or handler
            assert re.findall(r"<script\b[^>]*>\s*</script>", html) == re.findall(
                r"<script\b[^>]*>[^<]*</script>", html
            )
            assert all(' src="/' in tag for tag in re.findall(r"<script\b[^>]*>", html))
            assert "<style" not in html
            assert " style=" not in html
            assert not re.search(r"\son[a-z]+=", html)
            assert "http://" not in html
            assert "https://" not in html

    async def test_docs_are_served_without_the_internet(self, settings: Settings) -> None:
        async with harness.running(settings) as svc:
            for client in (svc.tracker, svc.attribution, svc.commission):
                docs = await client.get("/docs")
                assert docs.status_code == 200, docs.text
                assert "https://" not in docs.text
                assert "http://" not in docs.text
                assets = re.findall(r"""(?:src|href)=['"](/[^'"]+)['"]""", docs.text)
                # at least these two (the page may link more of its own, a favicon say)
                assert {a.rsplit("/", 1)[1] for a in assets} >= {
                    "swagger-ui-bundle.js",
                    "swagger-ui.css",
                }
                for asset in assets:
                    got = await client.get(asset)
                    assert got.status_code == 200, asset
                    assert len(got.content) > 100, asset
                assert (await client.get("/openapi.json")).status_code == 200

    async def test_readyz_names_the_failed_dependency_without_exception_text(
        self, settings: Settings
    ) -> None:
        async with harness.commission_without_database(settings) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["failed"] == ["postgres"]
        assert body["checks"] == {"kafka": "ok", "postgres": "error", "workers": "ok"}
        for leak in ("nobody", "secretpw", "127.0.0.1", "Error", "refused", "asyncpg"):
            assert leak not in ready.text


class TestCheckedAtCreation:
    async def test_a_landing_url_template_is_checked_at_store_creation(
        self, settings: Settings
    ) -> None:
        bad = [
            "ftp://shop.example/{product_id}",
            "https:///item/{product_id}",
            "shop.example/{product_id}",
            "https://{product_id}.shop.example/",
            "https://shop.example/a/{product_id}/{product_id}",
            "https://shop.example/{store_id}/{product_id}",
            "https://shop.example/{product}",
            "https://shop.example/item}",
            "https://shop.example/#{product_id}",
            "https://user:pw@shop.example/{product_id}",
            "https://shop.example/a\r\nSet-Cookie: x=1/{product_id}",
            "https://shop.example:99999/{product_id}",
        ]
        good = [
            "https://shop.example/item/{product_id}",
            "http://shop.example/item?id={product_id}&ref=alliance",
            "https://shop.example/",
        ]
        async with harness.running(settings) as svc:
            for n, t in enumerate(bad):
                resp = await svc.commission.post(
                    "/v1/admin/stores",
                    json={
                        "store_id": f"b{n}-{harness.uid()}",
                        "name": "b",
                        "landing_url_template": t,
                    },
                    headers=harness.admin(settings),
                )
                assert resp.status_code == 422, t
                assert "invalid_landing_url" in resp.text, (t, resp.text)
            for n, t in enumerate(good):
                resp = await svc.commission.post(
                    "/v1/admin/stores",
                    json={
                        "store_id": f"g{n}-{harness.uid()}",
                        "name": "g",
                        "landing_url_template": t,
                    },
                    headers=harness.admin(settings),
                )
                assert resp.status_code == 201, (t, resp.text)

    async def test_principal_ids_have_no_colon_and_at_most_64_characters(
        self, settings: Settings
    ) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            longest = f"s{u}".ljust(64, "x")
            for store_id, status in ((f"a:{u}", 422), (longest + "y", 422), (longest, 201)):
                resp = await svc.commission.post(
                    "/v1/admin/stores",
                    json={
                        "store_id": store_id,
                        "name": "s",
                        "landing_url_template": "https://x.example/{product_id}",
                    },
                    headers=harness.admin(settings),
                )
                assert resp.status_code == status, (store_id, resp.text)
            for path, body in (
                ("/v1/admin/affiliates", {"affiliate_id": f"a:{u}", "name": "a"}),
                ("/v1/admin/finance-users", {"user_id": f"f:{u}"}),
            ):
                resp = await svc.commission.post(path, json=body, headers=harness.admin(settings))
                assert resp.status_code == 422, resp.text

    async def test_a_statement_period_is_exactly_yyyy_mm_from_2000_to_2100(
        self, settings: Settings
    ) -> None:
        u = harness.uid()
        async with harness.running(settings) as svc:
            store = await harness.register_store(svc, settings, f"s-{u}")
            base = f"/v1/statements/{store.store_id}"
            for period in (
                "2026-1",
                "2026-001",
                "26-01",
                "10000-01",
                "1999-12",
                "2101-01",
                "2026-13",
                "2026-00",
                "+2026-01",
                " 2026-01",
                "2026-01 ",
                "２０２６-０１",
                "2026_01",
            ):
                got = await svc.commission.get(f"{base}/{period}", headers=store.auth)
                assert got.status_code == 422, (period, got.text)
                assert got.json()["error"]["code"] == "invalid_period"
                closed = await svc.commission.post(
                    f"{base}/{period}/close", headers=harness.admin(settings)
                )
                assert closed.status_code == 422, (period, closed.text)
            for period in ("2000-01", "2026-12", "2100-12"):
                got = await svc.commission.get(f"{base}/{period}", headers=store.auth)
                assert got.status_code == 200, (period, got.text)
                assert got.json()["period"] == period
