"""Every request the fuzzers found answered with a server error, kept as a regression: each is
now refused with ``422`` and the one error body (``{"error": {"code", "message", …}}``)."""

from __future__ import annotations

import uuid
from typing import Any

from shared.config import Settings
from shared.db import encode_cursor
from shared.http import ErrorBody
from tests.fuzz.bridge import FUZZ_MARKS
from tests.integration.harness import admin, commission_without_database, new_store, running

pytestmark = FUZZ_MARKS

FAR_FUTURE = "9999-12-31T23:59:59-23:59"  # year 10000 in UTC
FAR_PAST = "0001-01-01T00:00:00+23:59"  # year 0 in UTC
BEYOND_64_BITS = "99999999999999999999999"


def found(store: str) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """(method, path, JSON body, the code of the answer) of each finding, as the admin."""
    times = [
        f"/v1/ledger?{bound}={value}"
        for bound in ("from", "to")
        for value in (FAR_PAST.replace("+", "%2B"), FAR_FUTURE)
    ] + [
        f"{path}?{bound}={FAR_FUTURE}"
        for path in (
            f"/v1/settlements/stores/{store}",
            "/v1/settlements/affiliates/a1",
            "/v1/affiliate/orders",
            "/v1/affiliate/earnings",
            "/v1/reconciliation",
            f"/v1/stores/{store}/operations",
        )
        for bound in ("from", "to")
    ]
    return [
        *[("GET", path, None, "invalid_request") for path in times],
        ("GET", f"/v1/payouts/{BEYOND_64_BITS}", None, "invalid_request"),
        ("GET", f"/v1/payouts/-{BEYOND_64_BITS}", None, "invalid_request"),
        ("GET", f"/v1/ledger?cursor={BEYOND_64_BITS}", None, "invalid_request"),
        ("GET", f"/v1/stores/{store}/reports/dashboard?to=0001-01-01", None, "invalid_request"),
        ("GET", f"/v1/stores/{store}/reports/traffic?to=0001-01-01", None, "invalid_request"),
        (
            "GET",
            f"/v1/stores/{store}/reports/transactions?cursor="
            + encode_cursor([FAR_FUTURE, "order", "o1", "00000"]),
            None,
            "bad_cursor",
        ),
        (
            "GET",
            "/v1/affiliate/orders?cursor=" + encode_cursor(["\x00", "\x00"]),
            None,
            "bad_cursor",
        ),
        (
            "GET",
            "/v1/affiliate/products?cursor=" + encode_cursor(["1e999999"] * 4),
            None,
            "bad_cursor",
        ),
        ("PUT", f"/v1/stores/{store}/main-products/{'a' * 129}", {}, "invalid_request"),
        ("DELETE", f"/v1/stores/{store}/rates/categories/{'a' * 129}", None, "invalid_request"),
        ("POST", "/v1/payouts", {"affiliate_id": "a1", "up_to": FAR_FUTURE}, "invalid_request"),
        ("POST", "/v1/payouts", {"affiliate_id": "a1", "up_to": FAR_PAST}, "invalid_request"),
        (
            "POST",
            "/v1/admin/affiliates",
            {"affiliate_id": "a-nul", "name": "a\x00b"},
            "invalid_request",
        ),
    ]


async def test_what_the_fuzzers_found_is_refused_as_malformed_never_a_server_error(
    settings: Settings,
) -> None:
    async with running(settings) as svc:
        store = (await new_store(svc, settings, f"found-{uuid.uuid4().hex[:8]}")).store_id
        wrong = []
        for method, path, body, code in found(store):
            headers = admin(settings) | {"Idempotency-Key": "fuzz-finding-1"}
            resp = await svc.commission.request(method, path, json=body, headers=headers)
            error = ErrorBody.model_validate_json(resp.content).error if resp.is_error else None
            if resp.status_code != 422 or error is None or error.code != code:
                wrong.append(f"{method} {path[:80]}: {resp.status_code} {resp.text[:200]}")
        assert not wrong, "\n".join(wrong)


async def test_an_unreachable_database_is_a_503_to_retry_never_a_500(settings: Settings) -> None:
    async with commission_without_database(settings) as client:
        resp = await client.get("/v1/ledger", headers=admin(settings))
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"] == "1"
    assert ErrorBody.model_validate_json(resp.content).error.code == "unavailable"
