"""Privacy over HTTP on the real stack (README, "Privacy"): consent on the redirect, a
visitor's erasure and export, the truncation of addresses at rest."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.config import Settings
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
from tests.services.tracker.test_endpoints import ready_link

pytestmark = pytest.mark.integration


def landing_visitor(resp: httpx.Response) -> str:
    return parse_qs(urlsplit(resp.headers["location"]).query)["alliance_vid"][0]


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
