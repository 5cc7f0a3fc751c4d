"""Payout runs over HTTP on the real stack: payout settings (IBAN and BIC checked), minimums,
conversion at a recorded rate through an FX account, runs that resume without paying anyone
twice, the payment files and the self-billing invoice, the webhook and the earnings' preview."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sepaxml
import xmlschema
from pypdf import PdfReader
from sqlalchemy import select, text

from services.commission import models as m
from services.commission.orders.verify import verify
from shared.clock import FixedClock
from shared.config import Settings
from shared.db import make_engine, make_sessions
from tests.integration.harness import Services, admin, bearer, eventually, running
from tests.integration.receiver import Receiver, receiver
from tests.integration.test_scenarios_services import Replay
from tests.scenarios import ts

pytestmark = pytest.mark.integration

#: (affiliate, order, currency, price (10% commission), completed at)
ORDERS = (
    ("aff-usd", "o1", "USD", "200.00", "2026-02-05T12:00:00Z"),  # 20.00 USD
    ("aff-low", "o2", "USD", "150.00", "2026-02-05T12:00:00Z"),  # 15.00 USD, below its own 25
    ("aff-fx", "o3", "EUR", "300.00", "2026-02-05T12:00:00Z"),  # 30.00 EUR, paid in USD
    ("aff-none", "o4", "USD", "80.00", "2026-02-05T12:00:00Z"),  # 8.00 USD, no settings
    ("aff-eur", "o5", "EUR", "400.00", "2026-02-05T12:00:00Z"),  # 40.00 EUR, paid by SEPA
    ("aff-usd", "o6", "USD", "50.00", "2026-02-27T12:00:00Z"),  # 5.00 USD, held (holding)
)
#: the repository's root: the killed run's process imports the project from there
ROOT = Path(__file__).resolve().parents[4]
RUN_AT = ts("2026-03-01T00:00:00Z")
UP_TO = "2026-03-01T00:00:00Z"
HOLDING_DAYS = 7
IBANS = {
    "aff-usd": ("US payee", "GB33BUKB20201555555555", "BUKBGB22"),
    "aff-low": ("Low payee", "GB94BARC10201530093459", "BARCGB22"),
    "aff-fx": ("Fx payee", "FR1420041010050500013M02606", "PSSTFRPPXXX"),
    "aff-eur": ("Eur Payee GmbH", "DE89370400440532013000", "COBADEFFXXX"),
}


def events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"kind": "program.join", "store_id": "s1", "at": "2026-01-01T12:00:00Z", "rate": "0.10"}
    ]
    for n, (aff, *_) in enumerate(ORDERS):
        visitor = f"v{n}"
        out.append(
            {
                "kind": "click",
                "click_id": f"c{n}",
                "affiliate_id": aff,
                "store_id": "s1",
                "visitor_id": visitor,
                "at": f"2026-02-0{1 + n % 3}T12:00:00Z",
            }
        )
    for n, (_, order, currency, units, _) in enumerate(ORDERS):
        out.append(
            {
                "kind": "order_placed",
                "order_id": order,
                "store_id": "s1",
                "visitor_id": f"v{n}",
                "at": "2026-02-04T12:00:00Z",
                "currency": currency,
                "items": [
                    {
                        "product_id": "p1",
                        "category_id": "cat1",
                        "quantity": 1,
                        "unit_price": units,
                        "shipping_fee": "0.00",
                    }
                ],
            }
        )
    for _, order, _, _, completed in sorted(ORDERS, key=lambda o: o[4]):
        out.append({"kind": "order_completed", "order_id": order, "at": completed})
    return out


@dataclass
class World:
    svc: Services
    replay: Replay
    clock: FixedClock
    settings: Settings
    keys: dict[str, dict[str, str]]  # affiliate name → its bearer header

    def id(self, name: str) -> str:
        return self.replay.id(name)

    @property
    def finance(self) -> dict[str, str]:
        return admin(self.settings)


@asynccontextmanager
async def world(settings: Settings) -> AsyncIterator[World]:
    """Six orders of five affiliates completed through the pipeline; the clock at RUN_AT."""
    settings = settings.model_copy(
        update={
            "payout_holding_days": HOLDING_DAYS,
            "webhook_allow_private": True,
            "webhook_interval_s": 0.1,
        }
    )
    evs = events()
    clock = FixedClock(ts(evs[0]["at"]))
    async with running(settings, clock) as svc:
        replay = Replay(svc, settings, clock)
        try:
            for event in evs:
                await replay.apply(event)
            for _, order, _, _, _ in ORDERS:

                async def completed(path: str = replay.order_path(order)) -> bool | None:
                    resp = await svc.commission.get(path, headers=admin(settings))
                    ok = resp.status_code == 200 and resp.json()["status"] == "completed"
                    return True if ok and resp.json()["attribution_decided"] else None

                await eventually(completed)
            keys = {}
            for name in {o[0] for o in ORDERS}:
                resp = await svc.commission.post(
                    "/v1/admin/affiliates",
                    json={"affiliate_id": replay.id(name), "name": name},
                    headers=admin(settings),
                )
                assert resp.status_code == 201, resp.text
                keys[name] = bearer(resp.json()["api_key"])
            clock.set(RUN_AT)
            yield World(svc, replay, clock, settings, keys)
        finally:
            await replay.engine.dispose()


def payout_settings(name: str, currency: str, minimum: str) -> dict[str, Any]:
    holder, iban, bic = IBANS[name]
    return {
        "currency": currency,
        "minimum": minimum,
        "method": "bank_transfer",
        "iban": iban,
        "bic": bic,
        "account_holder": holder,
        "tax_id": f"TAX-{name}",
        "address": f"1 {name} Street, Somewhere",
    }


async def set_up_payees(w: World) -> None:
    for name, currency, minimum in (
        ("aff-usd", "USD", "10.00"),
        ("aff-low", "USD", "25.00"),
        ("aff-fx", "USD", "0"),
        ("aff-eur", "EUR", "10.00"),
    ):
        resp = await w.svc.commission.put(
            "/v1/affiliate/payout-settings",
            json=payout_settings(name, currency, minimum),
            headers=w.keys[name],
        )
        assert resp.status_code == 200, resp.text


async def run(w: World, key: str, **body: Any) -> Any:
    return await w.svc.commission.post(
        "/v1/finance/payout-runs",
        json={"up_to": UP_TO, **body},
        headers={**w.finance, "Idempotency-Key": key},
    )


async def ledger_ok(settings: Settings) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessions(engine)() as session, session.begin():
            result = await verify(session)
            assert result.ok, result
    finally:
        await engine.dispose()


async def each_paid_once(w: World, body: dict[str, Any]) -> None:
    """The run is finished, each payee paid once (one payout transaction each) what it was
    owed, and the ledger verifies."""
    assert body["finished_at"] is not None
    assert {p["affiliate_id"]: p["amount"] for p in body["payouts"]} == {
        w.id("aff-usd"): "20.00",
        w.id("aff-fx"): "32.53",
        w.id("aff-eur"): "40.00",
    }
    engine = make_engine(w.settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            counts = await conn.execute(
                text(
                    "SELECT affiliate_id, count(*) FROM commission.ledger_transactions "
                    "WHERE kind = 'payout' GROUP BY affiliate_id"
                )
            )
            assert {r[0]: r[1] for r in counts} == {
                w.id("aff-usd"): 1,
                w.id("aff-fx"): 1,
                w.id("aff-eur"): 1,
            }
    finally:
        await engine.dispose()
    await ledger_ok(w.settings)


class TestPayoutSettings:
    async def test_a_bad_iban_checksum_or_bic_shape_is_refused_naming_the_field(
        self, settings: Settings
    ) -> None:
        async with running(settings) as svc:
            aff = f"aff-{uuid.uuid4().hex[:8]}"
            resp = await svc.commission.post(
                "/v1/admin/affiliates",
                json={"affiliate_id": aff, "name": aff},
                headers=admin(settings),
            )
            key = bearer(resp.json()["api_key"])
            good = payout_settings("aff-eur", "EUR", "20.00") | {
                "iban": "DE89 3704 0044 0532 0130 00"
            }
            for field, bad, code in (
                ("iban", "DE89370400440532013001", "invalid_iban"),  # checksum off by one
                ("bic", "COBA1EFF", "invalid_bic"),  # a digit where the country is
                ("minimum", "20.001", "amount_too_precise"),
            ):
                refused = await svc.commission.put(
                    "/v1/affiliate/payout-settings", json=good | {field: bad}, headers=key
                )
                assert refused.status_code == 422, refused.text
                (err,) = refused.json()["error"]["errors"]
                assert (err["loc"], err["type"]) == (["body", field], code)
            ok = await svc.commission.put("/v1/affiliate/payout-settings", json=good, headers=key)
            assert ok.status_code == 200, ok.text
            assert ok.json()["iban"] == "DE89370400440532013000"  # stored compact
            got = await svc.commission.get("/v1/affiliate/payout-settings", headers=key)
            assert got.json() == ok.json()
            # nobody sets bank details on an affiliate's behalf, not even the admin token
            proxy = await svc.commission.put(
                "/v1/affiliate/payout-settings", json=good, headers=admin(settings)
            )
            assert proxy.status_code == 403
            # an affiliate's key may not set the platform's minimums
            minimum = await svc.commission.put(
                "/v1/finance/payout-minimums/EUR", json={"minimum": "25"}, headers=key
            )
            assert minimum.status_code == 403


class TestPayoutRuns:
    async def test_a_run_pays_who_reaches_its_minimum_and_carries_the_others_with_why(
        self, settings: Settings
    ) -> None:
        with receiver() as hooks:
            async with world(settings) as w:
                await self._run_and_check(w, hooks)

    async def _run_and_check(self, w: World, hooks: Receiver) -> None:
        svc = w.svc
        hook = await svc.commission.post(
            "/v1/affiliate/endpoints",
            json={"url": hooks.url("/aff"), "method": "POST", "events": ["payout.created"]},
            headers=w.keys["aff-usd"],
        )
        assert hook.status_code == 201, hook.text
        await set_up_payees(w)

        # no rate recorded for EUR → USD: the whole run is refused, nobody is paid
        refused = await run(w, f"run-{uuid.uuid4().hex}")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "fx_rate_missing"
        assert refused.json()["error"]["pairs"] == ["EUR/USD"]
        bad_rate = await svc.commission.put(
            "/v1/finance/fx-rates/2026-03-01", json={"EUR/EUR": "1"}, headers=w.finance
        )
        assert bad_rate.status_code == 422
        assert bad_rate.json()["error"]["code"] == "invalid_fx_rate"
        rates = await svc.commission.put(
            "/v1/finance/fx-rates/2026-03-01", json={"EUR/USD": "1.0843"}, headers=w.finance
        )
        assert rates.json() == {"EUR/USD": "1.0843"}

        key = f"run-{uuid.uuid4().hex}"
        made = await run(w, key)
        assert made.status_code == 201, made.text
        body = made.json()
        payouts = {p["affiliate_id"]: p for p in body["payouts"]}
        carried = {c["affiliate_id"]: c for c in body["carried"]}
        assert set(payouts) == {w.id("aff-usd"), w.id("aff-fx"), w.id("aff-eur")}
        assert set(carried) == {w.id("aff-low"), w.id("aff-none")}
        usd = payouts[w.id("aff-usd")]
        # o6 completed 2 days before the run: held for the holding period, not paid
        assert (usd["currency"], usd["amount"], usd["fx_rate"]) == ("USD", "20.00", None)
        fx = payouts[w.id("aff-fx")]
        # 30.00 EUR × 1.0843 = 32.529 → 32.53 USD (half-up to the cent)
        assert (fx["currency"], fx["amount"]) == ("USD", "32.53")
        assert fx["source_amounts"] == {"EUR": "30.00"}
        assert fx["fx_rate"] == {"EUR/USD": "1.0843"}
        assert fx["conversions"] == [
            {"pair": "EUR/USD", "rate": "1.0843", "from": "30.00", "to": "32.53"}
        ]
        assert fx["rounding"].startswith("half-up")
        assert payouts[w.id("aff-eur")]["amount"] == "40.00"
        low = carried[w.id("aff-low")]
        assert (low["why"], low["balance"], low["minimum"]) == ("below_minimum", "15.00", "25.00")
        assert carried[w.id("aff-none")]["why"] == "no_payout_settings"
        assert carried[w.id("aff-none")]["payable"] == {"USD": "8.00"}
        assert body["finished_at"] is not None

        # the same key: the same run, nothing paid again
        again = await run(w, key)
        assert again.status_code == 200
        assert again.json() == body
        got = await svc.commission.get(f"/v1/finance/payout-runs/{body['id']}", headers=w.finance)
        assert got.json() == body
        reused = await run(w, key, currency="EUR")
        assert reused.status_code == 409
        assert reused.json()["error"]["code"] == "idempotency_key_reused"

        # each currency's ledger sums to zero: the conversion went through the FX account
        ledger = await svc.commission.get(
            "/v1/ledger", params={"account": "fx:EUR/USD"}, headers=w.finance
        )
        legs = {(x["currency"], x["amount"]) for x in ledger.json()["items"]}
        assert legs == {("EUR", "30.00"), ("USD", "-32.53")}
        await ledger_ok(w.settings)

        # a second run finds nobody new to pay: the carried stay carried, the paid are not
        second = await run(w, f"run-{uuid.uuid4().hex}")
        assert second.status_code == 201
        assert second.json()["payouts"] == []

        # the affiliate sees what the next run would do and why money is held back
        earnings = await svc.commission.get("/v1/affiliate/earnings", headers=w.keys["aff-usd"])
        nxt = earnings.json()["next_payout"]
        assert nxt["will_pay"] is False
        assert nxt["held_back"] == {"holding_period": {"USD": "5.00"}}
        w.clock.set(RUN_AT + timedelta(days=HOLDING_DAYS))
        low_view = await svc.commission.get("/v1/affiliate/earnings", headers=w.keys["aff-low"])
        assert low_view.json()["next_payout"]["why_not"] == "below_minimum"

        # the payout.created webhook names the run
        async def delivered() -> list[Any] | None:
            got = hooks.delivered("/aff")
            return got or None

        (request,) = await eventually(delivered)
        event = json.loads(request.body)
        assert event["type"] == "payout.created"
        assert event["data"]["run_id"] == body["id"]
        assert event["data"]["payout_id"] == usd["id"]

        await self._payment_files(w, body)
        await self._invoice(w, fx)

        # runs and single payouts share the balance: nothing left to pay by hand
        single = await svc.commission.post(
            "/v1/payouts",
            json={"affiliate_id": w.id("aff-fx"), "up_to": UP_TO},
            headers={**w.finance, "Idempotency-Key": f"pay-{uuid.uuid4().hex}"},
        )
        assert single.status_code == 409
        assert single.json()["error"]["code"] == "nothing_to_pay"
        # a run in one currency leaves out the affiliates paid in another (none carried)
        eur = await run(w, f"run-{uuid.uuid4().hex}", currency="EUR")
        assert (eur.status_code, eur.json()["payouts"], eur.json()["carried"]) == (201, [], [])
        empty = await svc.commission.get(
            f"/v1/finance/payout-runs/{eur.json()['id']}/payment-file", headers=w.finance
        )
        assert empty.status_code == 409
        assert empty.json()["error"]["code"] == "nothing_to_file"

    async def _payment_files(self, w: World, body: dict[str, Any]) -> None:
        resp = await w.svc.commission.get(
            f"/v1/finance/payout-runs/{body['id']}/payment-file",
            params={"format": "pain.001"},
            headers=w.finance,
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("application/xml")
        # validated here against the standard's XSD, apart from sepaxml's own check
        xsd = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.03.xsd"
        schema = xmlschema.XMLSchema(str(xsd))
        schema.validate(resp.text)
        doc: Any = schema.to_dict(resp.text)
        transfers = doc["CstmrCdtTrfInitn"]["PmtInf"][0]["CdtTrfTxInf"]
        (only,) = transfers  # the run's one EUR payout
        assert only["CdtrAcct"]["Id"]["IBAN"] == "DE89370400440532013000"
        assert Decimal(str(only["Amt"]["InstdAmt"]["$"])) == Decimal("40.00")
        assert only["Cdtr"]["Nm"] == "Eur Payee GmbH"

        csv = await w.svc.commission.get(
            f"/v1/finance/payout-runs/{body['id']}/payment-file",
            params={"format": "csv"},
            headers=w.finance,
        )
        lines = csv.text.strip().splitlines()
        assert lines[0].startswith("payout_id,run_id,affiliate_id")
        assert len(lines) == 1 + 3
        assert any("EUR/USD=1.0843" in line and "32.53" in line for line in lines)
        other = await w.svc.commission.get(
            f"/v1/finance/payout-runs/{body['id']}/payment-file", headers=w.keys["aff-eur"]
        )
        assert other.status_code == 403

    async def _invoice(self, w: World, payout: dict[str, Any]) -> None:
        path = f"/v1/payouts/{payout['id']}/invoice.pdf"
        resp = await w.svc.commission.get(path, headers=w.keys["aff-fx"])
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "application/pdf"
        assert resp.content.startswith(b"%PDF")
        pdf_text = "".join(
            page.extract_text() for page in PdfReader(io.BytesIO(resp.content)).pages
        )
        for expected in (
            "SELF-BILLING INVOICE",
            f"Payer: {w.settings.payer_name}",
            "Payee: Fx payee",
            "Tax id: TAX-aff-fx",
            f"{w.id('s1')}: 1 orders, commission 30.00 EUR",
            "30.00 EUR at EUR/USD 1.0843 = 32.53 USD",
            "Total paid: 32.53 USD",
        ):
            assert expected in pdf_text, (expected, pdf_text)
        # another affiliate's invoice is not found; finance reads every one
        theirs = await w.svc.commission.get(path, headers=w.keys["aff-usd"])
        assert theirs.status_code == 404
        assert (await w.svc.commission.get(path, headers=w.finance)).status_code == 200

    @pytest.mark.allow_logged_errors
    async def test_a_run_interrupted_half_way_resumes_without_paying_anyone_twice(
        self, settings: Settings
    ) -> None:
        async with world(settings) as w:
            await set_up_payees(w)
            await w.svc.commission.put(
                "/v1/finance/fx-rates/2026-03-01", json={"EUR/USD": "1.0843"}, headers=w.finance
            )
            finance = w.svc.apps["commission"].state.finance
            steps: list[str] = []

            async def crash_on_second_payee(affiliate_id: str) -> None:
                steps.append(affiliate_id)
                if len(steps) == 2:  # its payout is posted, not committed: the process dies
                    raise RuntimeError("killed mid-run")

            finance.step_hook = crash_on_second_payee
            key = f"run-{uuid.uuid4().hex}"
            with pytest.raises(RuntimeError, match="killed mid-run"):
                await run(w, key)
            engine = make_engine(w.settings.database_url, pool_size=1)
            try:
                async with engine.connect() as conn:
                    run_row = (
                        await conn.execute(
                            select(m.payout_runs).where(m.payout_runs.c.idempotency_key == key)
                        )
                    ).one()
                    assert run_row.finished_at is None
                    paid = await conn.execute(
                        select(m.payouts.c.affiliate_id).where(m.payouts.c.run_id == run_row.id)
                    )
                    assert [r[0] for r in paid] == [steps[0]]  # the first step only
                finance.step_hook = None
                resumed = await run(w, key)
                assert resumed.status_code == 200, resumed.text
                body = resumed.json()
                assert body["id"] == run_row.id
            finally:
                await engine.dispose()
            await each_paid_once(w, body)

    async def test_a_run_killed_mid_step_resumes_by_its_key_paying_everyone_once(
        self, settings: Settings
    ) -> None:
        """The run's process is killed (SIGKILL) inside the second affiliate's step, its
        payout posted and not committed; the same key posted over HTTP finishes the run."""
        async with world(settings) as w:
            await set_up_payees(w)
            await w.svc.commission.put(
                "/v1/finance/fx-rates/2026-03-01", json={"EUR/USD": "1.0843"}, headers=w.finance
            )
            key = f"run-{uuid.uuid4().hex}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.services.commission.finance.kill_mid_run",
                w.settings.database_url,
                key,
                UP_TO.replace("Z", "+00:00"),
                str(HOLDING_DAYS),
                RUN_AT.isoformat(),
                "2",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == -signal.SIGKILL, (out, err)
            # the first payee's step committed; the second's payout was posted, never committed
            assert out.decode().splitlines() == [
                f"step 1: {w.id('aff-eur')}",
                f"step 2: {w.id('aff-fx')}",
            ]
            resumed = await run(w, key)
            assert resumed.status_code == 200, resumed.text  # the run existed: resumed
            body = resumed.json()
            assert body["created_by"] == "finance:kill-test"
            await each_paid_once(w, body)
