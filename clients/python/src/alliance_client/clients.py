"""Typed clients of the Alliance API, one per principal: a storefront (signed posts to the
tracker), an affiliate, a store, finance and the operator (admin token). All are async
(httpx); each takes a service as its base URL or as an open ``httpx.AsyncClient`` (whose
settings — transport, timeouts, proxies — are then the caller's), and raises
:class:`~alliance_client.errors.ApiError` for every error answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, Self

from pydantic_core import to_json

from alliance_client._http import DEFAULT_TIMEOUT_S, Door, Target, body_of, parse
from alliance_client.models import commission as cm
from alliance_client.models import tracker as tm
from alliance_client.signing import store_headers

Event = Mapping[str, Any]
When = datetime | date | str | None


def _when(value: When) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else value


def _given(**fields: Any) -> dict[str, Any]:
    """The fields the caller gave (None: not given, the server's default applies)."""
    return {k: v for k, v in fields.items() if v is not None}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _settlement(
    door: Door, of: Literal["stores", "affiliates"], who: str, start: When, end: When
) -> cm.Settlement:
    """``GET /v1/settlements/stores/{store_id}`` or ``…/affiliates/{affiliate_id}``."""
    template, key = {
        "stores": ("/v1/settlements/stores/{store_id}", "store_id"),
        "affiliates": ("/v1/settlements/affiliates/{affiliate_id}", "affiliate_id"),
    }[of]
    params = {"from": _when(start), "to": _when(end)}
    return parse(cm.Settlement, await door.send("GET", template, {key: who}, params=params))


class _Client:
    """Owns the doors it opened; ``async with`` closes them."""

    _doors: tuple[Door, ...] = ()

    async def aclose(self) -> None:
        for door in self._doors:
            await door.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _door(target: Target | None, headers: Mapping[str, str], timeout: float, what: str) -> Door:
    if target is None:
        return _Missing(what)
    return Door(target, headers, timeout)


class _Missing(Door):
    """A service the client was not given: using it says which one is missing."""

    def __init__(self, what: str) -> None:
        self.owned = False
        self.what = what
        self.headers = {}

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"this client was made without the {self.what} service's URL")


class StorefrontClient(_Client):
    """A store's storefront: posts its events and server-side clicks to the tracker, each body
    signed with the store's webhook secret (``X-Alliance-Signature``); the tracker refuses a
    signature older than five minutes, so each post is signed when it is sent. ``clock``
    (unix seconds) is for tests."""

    def __init__(
        self,
        store_id: str,
        webhook_secret: str,
        tracker: Target,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store_id = store_id
        self.secret = webhook_secret
        self.clock = clock
        self.tracker = Door(tracker, {}, timeout)
        self._doors = (self.tracker,)

    def signed(self, payload: Any, *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """The exact body (JSON) of ``payload`` and the headers that sign it."""
        body = to_json(payload)
        at = int(self.clock()) if timestamp is None else timestamp
        return body, store_headers(self.store_id, self.secret, body, timestamp=at)

    async def post_events(
        self, events: Sequence[Event], *, timestamp: int | None = None
    ) -> tm.EventsResponse:
        """``POST /v1/events``: a batch (at most 1,000) of storefront events — ``order_placed``,
        ``order_completed``, ``order_cancelled``, ``order_refunded``, ``product_upserted`` … as
        the tracker's README describes them. Each event is judged on its own: see ``results``.
        Idempotent by ``event_id`` (a duplicate is counted, not applied again)."""
        body, headers = self.signed({"events": list(events)}, timestamp=timestamp)
        response = await self.tracker.send("POST", "/v1/events", content=body, headers=headers)
        return parse(tm.EventsResponse, response)

    async def post_click(
        self,
        *,
        event_id: str,
        code: str,
        visitor_id: str,
        occurred_at: datetime,
        ip: str | None = None,
        user_agent: str | None = None,
        timestamp: int | None = None,
    ) -> tm.ClickAccepted:
        """``POST /v1/clicks``: a click on the link ``code`` recorded server to server (no
        cookie); idempotent by ``event_id``."""
        click = tm.ServerClick(
            event_id=event_id,
            code=code,
            visitor_id=visitor_id,
            occurred_at=occurred_at,
            ip=ip,
            user_agent=user_agent,
        )
        body, headers = self.signed(body_of(click), timestamp=timestamp)
        response = await self.tracker.send("POST", "/v1/clicks", content=body, headers=headers)
        return parse(tm.ClickAccepted, response)


class AffiliateClient(_Client):
    """An affiliate (its ``ala_…`` API key): links from the tracker; orders, earnings,
    products, payout settings and webhook endpoints from the commission service."""

    def __init__(
        self,
        api_key: str,
        *,
        tracker: Target | None = None,
        commission: Target | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.tracker = _door(tracker, _bearer(api_key), timeout, "tracker")
        self.commission = _door(commission, _bearer(api_key), timeout, "commission")
        self._doors = (self.tracker, self.commission)

    async def create_link(
        self, store_id: str, product_id: str | None = None, *, sub_id: str | None = None
    ) -> tm.LinkResponse:
        """``POST /v1/links``: a tracking link to a store (or one of its products)."""
        request = tm.LinkRequest.model_validate(
            _given(store_id=store_id, product_id=product_id, sub_id=sub_id)
        )
        response = await self.tracker.send("POST", "/v1/links", json=body_of(request))
        return parse(tm.LinkResponse, response)

    async def orders(
        self,
        *,
        start: When = None,
        end: When = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> cm.AffiliateOrdersPage:
        """``GET /v1/affiliate/orders``: one page of the affiliate's attributed orders."""
        params = {"from": _when(start), "to": _when(end), "status": status, "cursor": cursor}
        response = await self.commission.send(
            "GET", "/v1/affiliate/orders", params={**params, "limit": limit}
        )
        return parse(cm.AffiliateOrdersPage, response)

    async def all_orders(self, **filters: Any) -> AsyncIterator[cm.AffiliateOrder]:
        """Every order of :meth:`orders` (same filters), page after page."""
        cursor: str | None = None
        while True:
            page = await self.orders(cursor=cursor, **filters)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def earnings(self, *, start: When = None, end: When = None) -> cm.AffiliateEarnings:
        """``GET /v1/affiliate/earnings``: payable, pending and paid, per currency."""
        response = await self.commission.send(
            "GET", "/v1/affiliate/earnings", params={"from": _when(start), "to": _when(end)}
        )
        return parse(cm.AffiliateEarnings, response)

    async def settlement(
        self, affiliate_id: str, *, start: When = None, end: When = None
    ) -> cm.Settlement:
        """``GET /v1/settlements/affiliates/{affiliate_id}`` (the caller's own id)."""
        return await _settlement(self.commission, "affiliates", affiliate_id, start, end)

    async def products(
        self,
        *,
        q: str | None = None,
        category_id: str | None = None,
        sort: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> cm.ChannelPage:
        """``GET /v1/affiliate/products``: the products of the stores in the program."""
        params = {"q": q, "category_id": category_id, "sort": sort, "cursor": cursor}
        response = await self.commission.send(
            "GET", "/v1/affiliate/products", params={**params, "limit": limit}
        )
        return parse(cm.ChannelPage, response)

    async def payout_settings(self) -> cm.PayoutSettingsView:
        """``GET /v1/affiliate/payout-settings``."""
        response = await self.commission.send("GET", "/v1/affiliate/payout-settings")
        return parse(cm.PayoutSettingsView, response)

    async def set_payout_settings(
        self, settings: cm.PayoutSettingsRequest
    ) -> cm.PayoutSettingsView:
        """``PUT /v1/affiliate/payout-settings``."""
        response = await self.commission.send(
            "PUT", "/v1/affiliate/payout-settings", json=body_of(settings)
        )
        return parse(cm.PayoutSettingsView, response)

    async def create_endpoint(
        self, url: str, events: Sequence[str], *, method: Literal["POST", "GET"] = "POST"
    ) -> cm.EndpointCreated:
        """``POST /v1/affiliate/endpoints``: a webhook (POST) or postback (GET template); the
        answer's ``secret`` (shown once) verifies its deliveries
        (:func:`alliance_client.signing.verify`)."""
        request = cm.EndpointRequest(url=url, method=method, events=list(events))
        response = await self.commission.send(
            "POST", "/v1/affiliate/endpoints", json=body_of(request)
        )
        return parse(cm.EndpointCreated, response)

    async def endpoints(self) -> cm.EndpointList:
        """``GET /v1/affiliate/endpoints``."""
        return parse(cm.EndpointList, await self.commission.send("GET", "/v1/affiliate/endpoints"))


class StoreClient(_Client):
    """A store (its ``als_…`` API key; the operator's admin token works too): its program
    settings, coupons, orders, settlement and statements, on the commission service."""

    def __init__(
        self, store_id: str, api_key: str, commission: Target, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.store_id = store_id
        self.commission = Door(commission, _bearer(api_key), timeout)
        self._doors = (self.commission,)

    async def _program(
        self, method: str, template: str, body: Any = None, **path: str
    ) -> cm.ProgramResponse:
        response = await self.commission.send(
            method, template, {"store_id": self.store_id, **path}, json=body
        )
        return parse(cm.ProgramResponse, response)

    async def program(self) -> cm.ProgramResponse:
        """``GET /v1/stores/{store_id}/program``: the store's program and its settings."""
        return await self._program("GET", "/v1/stores/{store_id}/program")

    async def join(self, default_rate: Decimal | str | None = None) -> cm.ProgramResponse:
        """``POST /v1/stores/{store_id}/program/join``, at ``default_rate`` (a fraction:
        ``"0.06"``) or the platform's default."""
        body = body_of(cm.JoinRequest(default_rate=Decimal(default_rate)) if default_rate else {})
        return await self._program("POST", "/v1/stores/{store_id}/program/join", body)

    async def exit(self) -> cm.ProgramResponse:
        """``POST /v1/stores/{store_id}/program/exit`` (``Conflict`` before the minimum stay:
        ``details["exit_allowed_at"]``)."""
        return await self._program("POST", "/v1/stores/{store_id}/program/exit")

    async def set_default_rate(self, rate: Decimal | str) -> cm.ProgramResponse:
        """``PUT /v1/stores/{store_id}/rates/default``."""
        body = body_of(cm.RateRequest(rate=Decimal(rate)))
        return await self._program("PUT", "/v1/stores/{store_id}/rates/default", body)

    async def set_category_rate(self, category_id: str, rate: Decimal | str) -> cm.ProgramResponse:
        """``PUT /v1/stores/{store_id}/rates/categories/{category_id}``."""
        return await self._program(
            "PUT",
            "/v1/stores/{store_id}/rates/categories/{category_id}",
            body_of(cm.RateRequest(rate=Decimal(rate))),
            category_id=category_id,
        )

    async def set_attribution_window(self, days: int) -> cm.ProgramResponse:
        """``PUT /v1/stores/{store_id}/attribution-window``."""
        body = body_of(cm.WindowRequest(days=days))
        return await self._program("PUT", "/v1/stores/{store_id}/attribution-window", body)

    async def set_lock_period(self, days: int) -> cm.ProgramResponse:
        """``PUT /v1/stores/{store_id}/lock-period``."""
        body = body_of(cm.LockPeriodRequest(days=days))
        return await self._program("PUT", "/v1/stores/{store_id}/lock-period", body)

    async def set_coupon_policy(self, policy: cm.CouponPolicy) -> cm.ProgramResponse:
        """``PUT /v1/stores/{store_id}/coupon-policy``."""
        body = body_of(cm.CouponPolicyRequest(policy=policy))
        return await self._program("PUT", "/v1/stores/{store_id}/coupon-policy", body)

    async def put_coupon(
        self, code: str, affiliate_id: str, *, valid_from: When = None, valid_to: When = None
    ) -> cm.CouponView:
        """``PUT /v1/stores/{store_id}/coupons/{code}``: the code credits ``affiliate_id``."""
        body = _given(
            affiliate_id=affiliate_id, valid_from=_when(valid_from), valid_to=_when(valid_to)
        )
        response = await self.commission.send(
            "PUT",
            "/v1/stores/{store_id}/coupons/{code}",
            {"store_id": self.store_id, "code": code},
            json=body_of(cm.CouponRequest.model_validate(body)),
        )
        return parse(cm.CouponView, response)

    async def coupons(self) -> list[cm.CouponView]:
        """``GET /v1/stores/{store_id}/coupons``."""
        response = await self.commission.send(
            "GET", "/v1/stores/{store_id}/coupons", {"store_id": self.store_id}
        )
        return parse(list[cm.CouponView], response)

    async def order(self, order_id: str) -> cm.OrderView:
        """``GET /v1/stores/{store_id}/orders/{order_id}``: the order, its attribution and
        commission (``NotFound`` until the commission service has it)."""
        response = await self.commission.send(
            "GET",
            "/v1/stores/{store_id}/orders/{order_id}",
            {"store_id": self.store_id, "order_id": order_id},
        )
        return parse(cm.OrderView, response)

    async def explain(self, order_id: str) -> cm.AttributionExplanation:
        """``GET /v1/stores/{store_id}/orders/{order_id}/attribution``: why it was credited."""
        response = await self.commission.send(
            "GET",
            "/v1/stores/{store_id}/orders/{order_id}/attribution",
            {"store_id": self.store_id, "order_id": order_id},
        )
        return parse(cm.AttributionExplanation, response)

    async def adjust(self, order_id: str, adjustment: cm.AdjustmentRequest) -> cm.AdjustmentView:
        """``POST /v1/stores/{store_id}/orders/{order_id}/adjustments``."""
        response = await self.commission.send(
            "POST",
            "/v1/stores/{store_id}/orders/{order_id}/adjustments",
            {"store_id": self.store_id, "order_id": order_id},
            json=body_of(adjustment),
        )
        return parse(cm.AdjustmentView, response)

    async def settlement(self, *, start: When = None, end: When = None) -> cm.Settlement:
        """``GET /v1/settlements/stores/{store_id}``: what the store owes, per currency."""
        return await _settlement(self.commission, "stores", self.store_id, start, end)

    async def statement(self, period: str) -> cm.Statement:
        """``GET /v1/statements/{store_id}/{period}`` (``period``: ``2026-03``)."""
        response = await self.commission.send(
            "GET",
            "/v1/statements/{store_id}/{period}",
            {"store_id": self.store_id, "period": period},
        )
        return parse(cm.Statement, response)


class FinanceClient(_Client):
    """Finance (an ``alf_…`` key; the operator's admin token works too): the ledger,
    settlements, payouts and payout runs, holds, minimums and exchange rates."""

    def __init__(
        self, api_key: str, commission: Target, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.commission = Door(commission, _bearer(api_key), timeout)
        self._doors = (self.commission,)

    async def ledger(
        self,
        *,
        account: str | None = None,
        start: When = None,
        end: When = None,
        cursor: int | None = None,
        limit: int | None = None,
    ) -> cm.LedgerPage:
        """``GET /v1/ledger``: one page of postings, oldest first."""
        params = {"account": account, "from": _when(start), "to": _when(end), "cursor": cursor}
        response = await self.commission.send(
            "GET", "/v1/ledger", params={**params, "limit": limit}
        )
        return parse(cm.LedgerPage, response)

    async def ledger_lines(self, **filters: Any) -> list[cm.LedgerLine]:
        """Every posting of :meth:`ledger` (same filters), all pages."""
        lines: list[cm.LedgerLine] = []
        cursor: int | None = 0
        while cursor is not None:
            page = await self.ledger(cursor=cursor, limit=1000, **filters)
            lines += page.items
            cursor = page.next_cursor
        return lines

    async def store_settlement(
        self, store_id: str, *, start: When = None, end: When = None
    ) -> cm.Settlement:
        """``GET /v1/settlements/stores/{store_id}``."""
        return await _settlement(self.commission, "stores", store_id, start, end)

    async def affiliate_settlement(
        self, affiliate_id: str, *, start: When = None, end: When = None
    ) -> cm.Settlement:
        """``GET /v1/settlements/affiliates/{affiliate_id}``."""
        return await _settlement(self.commission, "affiliates", affiliate_id, start, end)

    async def create_payout(self, affiliate_id: str, up_to: datetime) -> cm.PayoutView:
        """``POST /v1/payouts``: pay the affiliate's payable balance up to ``up_to``."""
        request = cm.PayoutRequest(affiliate_id=affiliate_id, up_to=up_to)
        response = await self.commission.send("POST", "/v1/payouts", json=body_of(request))
        return parse(cm.PayoutView, response)

    async def payout(self, payout_id: int) -> cm.PayoutView:
        """``GET /v1/payouts/{payout_id}``."""
        response = await self.commission.send(
            "GET", "/v1/payouts/{payout_id}", {"payout_id": payout_id}
        )
        return parse(cm.PayoutView, response)

    async def create_payout_run(
        self, up_to: datetime, currency: str | None = None
    ) -> cm.PayoutRunView:
        """``POST /v1/finance/payout-runs``: pay every affiliate over its minimum."""
        request = cm.PayoutRunRequest.model_validate(_given(up_to=up_to, currency=currency))
        response = await self.commission.send(
            "POST", "/v1/finance/payout-runs", json=body_of(request)
        )
        return parse(cm.PayoutRunView, response)

    async def payout_run(self, run_id: int) -> cm.PayoutRunView:
        """``GET /v1/finance/payout-runs/{run_id}``."""
        response = await self.commission.send(
            "GET", "/v1/finance/payout-runs/{run_id}", {"run_id": run_id}
        )
        return parse(cm.PayoutRunView, response)

    async def payment_file(self, run_id: int, *, format: str | None = None) -> bytes:
        """``GET /v1/finance/payout-runs/{run_id}/payment-file``: the run's pain.001 XML (or
        CSV with ``format="csv"``), as bytes."""
        response = await self.commission.send(
            "GET",
            "/v1/finance/payout-runs/{run_id}/payment-file",
            {"run_id": run_id},
            params={"format": format},
        )
        return response.content

    async def place_hold(self, hold: cm.HoldRequest) -> cm.HoldView:
        """``POST /v1/finance/holds``."""
        response = await self.commission.send("POST", "/v1/finance/holds", json=body_of(hold))
        return parse(cm.HoldView, response)

    async def holds(
        self, *, affiliate_id: str | None = None, status: str | None = None
    ) -> list[cm.HoldView]:
        """``GET /v1/finance/holds``."""
        response = await self.commission.send(
            "GET", "/v1/finance/holds", params={"affiliate_id": affiliate_id, "status": status}
        )
        return parse(list[cm.HoldView], response)

    async def release_hold(self, hold_id: int) -> cm.HoldView:
        """``POST /v1/finance/holds/{hold_id}/release``."""
        response = await self.commission.send(
            "POST", "/v1/finance/holds/{hold_id}/release", {"hold_id": hold_id}
        )
        return parse(cm.HoldView, response)

    async def set_payout_minimum(self, currency: str, minimum: Decimal | str) -> cm.MinimumsView:
        """``PUT /v1/finance/payout-minimums/{currency}``."""
        response = await self.commission.send(
            "PUT",
            "/v1/finance/payout-minimums/{currency}",
            {"currency": currency},
            json=body_of(cm.MinimumRequest(minimum=Decimal(minimum))),
        )
        return parse(cm.MinimumsView, response)

    async def set_fx_rates(self, day: date, rates: Mapping[str, Decimal | str]) -> dict[str, str]:
        """``PUT /v1/finance/fx-rates/{day}`` (``{"EUR/USD": "1.0843"}``)."""
        response = await self.commission.send(
            "PUT",
            "/v1/finance/fx-rates/{day}",
            {"day": day.isoformat()},
            json={k: str(v) for k, v in rates.items()},
        )
        return parse(dict[str, str], response)


class AdminClient(_Client):
    """The operator (``ALLIANCE_ADMIN_TOKEN``): stores, affiliates and finance users."""

    def __init__(
        self, token: str, commission: Target, *, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.commission = Door(commission, _bearer(token), timeout)
        self._doors = (self.commission,)

    async def create_store(
        self, store_id: str, name: str, landing_url_template: str
    ) -> cm.CreatedStore:
        """``POST /v1/admin/stores``: the answer holds the store's API key and webhook secret,
        shown this once."""
        request = cm.CreateStore(
            store_id=store_id, name=name, landing_url_template=landing_url_template
        )
        response = await self.commission.send("POST", "/v1/admin/stores", json=body_of(request))
        return parse(cm.CreatedStore, response)

    async def create_affiliate(self, affiliate_id: str, name: str) -> cm.CreatedKey:
        """``POST /v1/admin/affiliates``: the affiliate's API key, shown this once."""
        request = cm.CreateAffiliate(affiliate_id=affiliate_id, name=name)
        response = await self.commission.send("POST", "/v1/admin/affiliates", json=body_of(request))
        return parse(cm.CreatedKey, response)

    async def create_finance_user(self, user_id: str) -> cm.CreatedKey:
        """``POST /v1/admin/finance-users``: the user's API key, shown this once."""
        request = cm.CreateFinanceUser(user_id=user_id)
        response = await self.commission.send(
            "POST", "/v1/admin/finance-users", json=body_of(request)
        )
        return parse(cm.CreatedKey, response)

    async def rotate_store_secret(self, store_id: str) -> cm.RotatedSecret:
        """``POST /v1/admin/stores/{store_id}/rotate-secret``."""
        response = await self.commission.send(
            "POST", "/v1/admin/stores/{store_id}/rotate-secret", {"store_id": store_id}
        )
        return parse(cm.RotatedSecret, response)
