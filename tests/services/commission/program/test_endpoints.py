"""The program API over HTTP: join/exit/rejoin rules, rates, main products, operation record,
and the ledger's pagination and CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.clock import FixedClock
from shared.config import Settings
from tests.integration.harness import admin, register_store, running
from tests.integration.test_scenarios_services import replayed
from tests.services.commission.reports.test_endpoints import csv_cells

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_join_exit_rejoin_rates_main_products_and_the_operation_record(
    settings: Settings,
) -> None:
    clock = FixedClock(T0)
    u = uuid.uuid4().hex[:6]
    async with running(settings, clock) as svc:
        store = await register_store(
            svc, settings, f"s-{u}", landing="https://x.example/{product_id}"
        )
        auth = store.auth
        base = f"/v1/stores/s-{u}"
        joined = await svc.commission.post(f"{base}/program/join", json={}, headers=auth)
        assert joined.json()["default_rate"] == "0.06"
        assert joined.json()["exit_allowed_at"].startswith("2026-01-16T00:00:00")

        clock.advance(timedelta(days=14))
        early = await svc.commission.post(f"{base}/program/exit", headers=auth)
        assert early.status_code == 409
        assert early.json()["error"]["code"] == "exit_too_early"
        assert early.json()["error"]["exit_allowed_at"].startswith("2026-01-16T00:00:00")

        assert (
            await svc.commission.put(f"{base}/rates/default", json={"rate": "0.95"}, headers=auth)
        ).status_code == 422
        assert (
            await svc.commission.put(f"{base}/rates/default", json={"rate": 0.1}, headers=auth)
        ).status_code == 422
        assert (
            await svc.commission.put(
                f"{base}/rates/categories/c1", json={"rate": "0.08"}, headers=auth
            )
        ).status_code == 200
        for n in range(60):
            resp = await svc.commission.put(
                f"{base}/main-products/p{n}", json={"rate": "0.1"}, headers=auth
            )
            assert resp.status_code == 200, resp.text
        sixty_first = await svc.commission.put(f"{base}/main-products/p60", json={}, headers=auth)
        assert sixty_first.status_code == 409
        assert sixty_first.json()["error"]["code"] == "too_many_main_products"
        mains = (await svc.commission.get(f"{base}/main-products", headers=auth)).json()
        assert len(mains) == 60
        assert mains[0]["rate"] == "0.1"

        clock.advance(timedelta(days=2))
        assert (await svc.commission.post(f"{base}/program/exit", headers=auth)).status_code == 200
        clock.advance(timedelta(days=3))
        rejoin = await svc.commission.post(
            f"{base}/program/join", json={"default_rate": "0.07"}, headers=auth
        )
        assert rejoin.status_code == 409
        assert rejoin.json()["error"]["rejoin_allowed_at"].startswith("2026-02-01T00:00:00")
        clock.advance(timedelta(days=12))
        assert (
            await svc.commission.post(
                f"{base}/program/join", json={"default_rate": "0.07"}, headers=auth
            )
        ).status_code == 200

        ops = (await svc.commission.get(f"{base}/operations", headers=auth)).json()
        kinds = [o["kind"] for o in ops]
        assert kinds[:2] == ["join", "category_rate"]
        assert kinds.count("main_product") == 60
        assert kinds[-2:] == ["exit", "join"]
        assert all(o["actor"] == f"store:s-{u}" for o in ops)
        assert ops[1]["before"]["category_rates"] == {}
        assert ops[1]["after"]["category_rates"] == {"c1": "0.08"}
        window = await svc.commission.get(
            f"{base}/operations",
            params={"from": "2026-01-17T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
            headers=auth,
        )
        assert [o["kind"] for o in window.json()] == ["exit"]
        other = await svc.commission.get("/v1/stores/someone-else/operations", headers=auth)
        assert other.status_code == 403


async def test_ledger_pages_are_stable_and_export_as_csv(settings: Settings) -> None:
    async with replayed(settings, "06-cancel-and-refunds") as r:
        svc, replay, _scenario, _clock = r.svc, r.replay, r.scenario, r.clock
        account = f"affiliate:{replay.id('aff-a')}:earned"
        pages, cursor = [], 0
        while True:
            page = (
                await svc.commission.get(
                    "/v1/ledger",
                    params={"account": account, "cursor": cursor, "limit": 2},
                    headers=admin(settings),
                )
            ).json()
            pages.append(page["items"])
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
        lines = [x for p in pages for x in p]
        assert all(len(p) <= 2 for p in pages)
        assert len({x["posting_id"] for x in lines}) == len(lines)
        # commission of o2 (2.95), o3 (2.80), o5 (0.03); reversals of r1 (−1.25) and r2 (−2.80)
        assert sorted(x["amount"] for x in lines) == ["-1.25", "-2.80", "0.03", "2.80", "2.95"]
        # streamed two postings a page: the export reads page after page as it writes
        svc.apps["commission"].state.finance.export_page = 2
        exported = await svc.commission.get(
            "/v1/ledger",
            params={"account": account},
            headers={**admin(settings), "Accept": "text/csv"},
        )
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert rows == [csv_cells(x) for x in lines]  # the JSON pages, cell for cell
        # OWASP's CSV-injection rule holds for amounts too: a negative one starts with '
        assert sorted(r["amount"] for r in rows) == sorted(
            "'" + x["amount"] if x["amount"].startswith("-") else x["amount"] for x in lines
        )
        assert (
            await svc.commission.get("/v1/ledger", headers={"Authorization": "Bearer x"})
        ).status_code == 401
