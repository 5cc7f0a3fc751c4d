"""What the code enforces, the documents state, and what they state, the code does (issue 19,
defect 12): times in query strings are ISO 8601, never bare numbers; the OpenAPI schemas
state the bounds the code checks; a ``405`` names every allowed method."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from shared.config import Settings
from tests.integration.harness import admin, new_store, running

pytestmark = pytest.mark.integration

#: bare numbers pydantic alone reads as unix seconds (``?to=0`` was 1970-01-01)
BARE_NUMBERS = ("0", "1700000000", "-1", "1e3", "0.5", "20260131")


def error_types(resp: httpx.Response) -> set[str]:
    return {e["type"] for e in resp.json()["error"].get("errors", [])}


class TestBareNumbersAreNotTimes:
    async def test_a_bare_number_is_not_a_time_in_any_range_query(self, settings: Settings) -> None:
        async with running(settings) as svc:
            store = (await new_store(svc, settings, f"s-{uuid.uuid4().hex[:8]}")).store_id
            paths = (
                "/v1/ledger",
                f"/v1/settlements/stores/{store}",
                "/v1/settlements/affiliates/a1",
                "/v1/reconciliation",
                f"/v1/stores/{store}/operations",
            )
            wrong = []
            for path in paths:
                for bound in ("from", "to"):
                    for value in BARE_NUMBERS:
                        resp = await svc.commission.get(
                            path, params={bound: value}, headers=admin(settings)
                        )
                        if resp.status_code != 422 or "datetime_not_iso" not in error_types(resp):
                            wrong.append(f"{path}?{bound}={value}: {resp.status_code}")
                iso = await svc.commission.get(
                    path,
                    params={"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00+01:00"},
                    headers=admin(settings),
                )
                if iso.status_code != 200:
                    wrong.append(f"{path} with ISO times: {iso.status_code} {iso.text[:200]}")
        assert not wrong, "\n".join(wrong)

    async def test_a_bare_number_is_not_a_day_in_a_report(self, settings: Settings) -> None:
        async with running(settings) as svc:
            store = (await new_store(svc, settings, f"s-{uuid.uuid4().hex[:8]}")).store_id
            wrong = []
            for report in ("dashboard", "traffic", "orders", "refunds", "transactions"):
                path = f"/v1/stores/{store}/reports/{report}"
                for bound in ("from", "to"):
                    for value in (*BARE_NUMBERS, "2026-1-31", "2026-01-31T00:00:00Z"):
                        resp = await svc.commission.get(
                            path, params={bound: value}, headers=admin(settings)
                        )
                        if resp.status_code != 422 or "date_not_iso" not in error_types(resp):
                            wrong.append(f"{path}?{bound}={value}: {resp.status_code}")
                days = await svc.commission.get(
                    path, params={"from": "2026-01-01", "to": "2026-01-31"}, headers=admin(settings)
                )
                if days.status_code != 200:
                    wrong.append(f"{path} with ISO days: {days.status_code} {days.text[:200]}")
            before = await svc.commission.get(
                f"/v1/stores/{store}/reports/orders",
                params={"from": "0999-12-31"},
                headers=admin(settings),
            )
        assert not wrong, "\n".join(wrong)
        assert before.status_code == 422
        assert "date_out_of_range" in error_types(before)


def parameter(openapi: dict[str, Any], path: str, name: str, method: str = "get") -> Any:
    (found,) = [p for p in openapi["paths"][path][method]["parameters"] if p["name"] == name]
    return found


class TestTheSchemasStateTheRules:
    async def test_range_days_periods_and_cursors_are_stated_in_the_openapi(
        self, settings: Settings
    ) -> None:
        async with running(settings) as svc:
            doc = (await svc.commission.get("/openapi.json")).json()
        for path in ("/v1/ledger", "/v1/settlements/stores/{store_id}", "/v1/reconciliation"):
            for bound in ("from", "to"):
                p = parameter(doc, path, bound)
                (schema, _) = p["schema"]["anyOf"]
                assert schema["format"] == "date-time"
                assert schema["pattern"].startswith("^[0-9]{4}-")
                for stated in ("datetime_not_iso", "1000 to 8999", "empty_range"):
                    assert stated in p["description"], (path, bound, stated)
        for bound in ("from", "to"):
            p = parameter(doc, "/v1/stores/{store_id}/reports/orders", bound)
            (schema, _) = p["schema"]["anyOf"]
            assert schema["format"] == "date"
            assert schema["pattern"] == "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
            for stated in ("date_not_iso", "400 days", "range_too_long", "1970-01-01"):
                assert stated in p["description"], (bound, stated)
        period = parameter(doc, "/v1/statements/{store_id}/{period}", "period")
        assert period["schema"]["pattern"] == "^[0-9]{4}-(0[1-9]|1[0-2])$"
        assert "2000 to 2100" in period["description"]
        assert "invalid_period" in period["description"]
        for path, name in (
            ("/v1/camp/products", "cursor"),
            ("/v1/stores/{store_id}/reports/transactions", "cursor"),
            ("/v1/ledger", "cursor"),
            ("/v1/affiliate/endpoints/{endpoint_id}/deliveries", "cursor"),
        ):
            assert "previous page" in parameter(doc, path, name)["description"], path


class TestMethodNotAllowed:
    async def test_a_405_lists_every_allowed_method_on_every_service(
        self, settings: Settings
    ) -> None:
        async with running(settings) as svc:
            answers = {
                ("commission", "PUT", "/v1/affiliate/endpoints"): "GET, POST",
                ("commission", "PATCH", "/v1/payouts"): "POST",
                ("commission", "POST", "/healthz"): "GET",
                ("commission", "POST", "/dashboard/static/dashboard.js"): "GET",
                ("tracker", "GET", "/v1/events"): "POST",
                ("tracker", "DELETE", "/v1/links"): "GET, POST"
                if await _links_has_get(svc.tracker)
                else "POST",
                ("attribution", "POST", "/healthz"): "GET",
            }
            clients = {
                "commission": svc.commission,
                "tracker": svc.tracker,
                "attribution": svc.attribution,
            }
            got = {
                key: await clients[key[0]].request(key[1], key[2], headers=admin(settings))
                for key in answers
            }
        for key, allow in answers.items():
            assert got[key].status_code == 405, (key, got[key].text)
            assert got[key].headers["allow"] == allow, key
            assert got[key].json()["error"]["code"] == "method_not_allowed"

    @pytest.mark.parametrize(
        "prefix",
        ["/v1/affiliate/endpoints", "/v1/stores/s1/endpoints", "/v1/finance/endpoints"],
    )
    async def test_deleting_the_endpoint_templates_is_a_405_not_a_422(
        self, settings: Settings, prefix: str
    ) -> None:
        async with running(settings) as svc:
            resp = await svc.commission.delete(f"{prefix}/templates", headers=admin(settings))
            malformed = await svc.commission.delete(
                "/v1/stores/s1/endpoints/we_nope", headers=admin(settings)
            )
        assert resp.status_code == 405, resp.text
        assert resp.headers["allow"] == "GET"
        assert malformed.status_code == 422, "any other malformed id is still a 422"


async def _links_has_get(tracker: httpx.AsyncClient) -> bool:
    doc = (await tracker.get("/openapi.json")).json()
    return "get" in doc["paths"]["/v1/links"]
