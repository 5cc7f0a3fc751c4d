"""Partner approval over HTTP with the services on real Kafka and PostgreSQL: the enrollment
setting, applications and decisions with their tenancy, what the tracker lets through, and
what a banned affiliate's orders pay."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.config import Settings
from tests.integration import harness
from tests.integration.harness import admin, bearer, eventually, signed_post
from tests.integration.test_pipeline import completed, placed

pytestmark = pytest.mark.integration


async def link(svc: harness.Services, key: str, store_id: str) -> httpx.Response:
    """The tracker's answer to the affiliate's link request (from the affiliate's address)."""
    transport = httpx.ASGITransport(app=svc.apps["tracker"], client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker.test") as client:
        return await client.post("/v1/links", json={"store_id": store_id}, headers=bearer(key))


async def link_answer(svc: harness.Services, key: str, store_id: str, status: int) -> Any:
    """The link answer once the tracker gives ``status`` (the directory is asynchronous)."""

    async def probe() -> Any:
        resp = await link(svc, key, store_id)
        return resp.json() if resp.status_code == status else None

    return await eventually(probe)


async def test_partner_approval_end_to_end(settings: Settings) -> None:
    u = harness.uid()
    async with harness.running(settings) as svc:
        c = svc.commission
        store = await harness.new_store(svc, settings, f"ps-{u}", rate="0.10")
        other = await harness.new_store(svc, settings, f"po-{u}", rate="0.10")
        a, b, n = f"pa-{u}", f"pb-{u}", f"pn-{u}"
        key_a = await harness.new_affiliate(svc, settings, a)
        key_b = await harness.new_affiliate(svc, settings, b)
        key_n = await harness.new_affiliate(svc, settings, n)
        s = f"/v1/stores/{store.store_id}"

        # -- the enrollment setting: open by default, versioned, the store's own ------------
        assert (await c.get(f"{s}/program", headers=store.auth)).json()["enrollment"] == "open"
        bad = await c.put(f"{s}/enrollment", json={"mode": "closed"}, headers=store.auth)
        assert bad.status_code == 422
        foreign = await c.put(f"{s}/enrollment", json={"mode": "approval"}, headers=other.auth)
        assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "forbidden")
        await link_answer(svc, key_n, store.store_id, 201)  # open: anyone may promote
        set_ = await c.put(f"{s}/enrollment", json={"mode": "approval"}, headers=store.auth)
        assert (set_.status_code, set_.json()["enrollment"]) == (200, "approval"), set_.text
        ops = (await c.get(f"{s}/operations", headers=store.auth)).json()
        (op,) = [o for o in ops if o["kind"] == "enrollment"]
        assert (op["policy"], op["before"]["enrollment"], op["after"]["enrollment"]) == (
            "approval",
            "open",
            "approval",
        )

        # -- the tracker refuses links of an affiliate the store has not approved -----------
        refused = await link_answer(svc, key_a, store.store_id, 403)
        assert refused["error"]["code"] == "not_approved"
        assert {k: v for k, v in refused["error"].items() if k != "message"} == {
            "code": "not_approved",
            "store_id": store.store_id,
            "affiliate_id": a,
            "enrollment": "approval",
            "status": None,
        }

        # -- applications: the affiliate's own, idempotent ----------------------------------
        applied = await c.post(
            f"{s}/applications", json={"message": "garden blog"}, headers=bearer(key_a)
        )
        assert applied.status_code == 201, applied.text
        assert (applied.json()["status"], applied.json()["message"]) == ("pending", "garden blog")
        again = await c.post(f"{s}/applications", json={}, headers=bearer(key_a))
        assert (again.status_code, again.json()["status"]) == (200, "pending")
        by_store = await c.post(f"{s}/applications", json={}, headers=store.auth)
        assert by_store.status_code == 403
        nowhere = await c.post(f"/v1/stores/none-{u}/applications", json={}, headers=bearer(key_a))
        assert (nowhere.status_code, nowhere.json()["error"]["code"]) == (404, "not_found")
        too_long = await c.post(
            f"{s}/applications", json={"message": "x" * 1001}, headers=bearer(key_b)
        )
        assert too_long.status_code == 422
        assert (
            await c.post(f"{s}/applications", json={}, headers=bearer(key_b))
        ).status_code == 201

        # -- tenancy: a store sees its own partners, an affiliate its own applications ------
        pending = (await c.get(f"{s}/partners?status=pending", headers=store.auth)).json()
        assert [p["affiliate_id"] for p in pending["items"]] == sorted([a, b])
        assert (await c.get(f"{s}/partners", headers=other.auth)).status_code == 403
        theirs = await c.get(f"/v1/stores/{other.store_id}/partners", headers=other.auth)
        assert theirs.json() == {"items": [], "next_cursor": None}
        mine = (await c.get(f"/v1/affiliates/{a}/applications", headers=bearer(key_a))).json()
        assert [(p["store_id"], p["status"]) for p in mine["items"]] == [
            (store.store_id, "pending")
        ]
        snoop = await c.get(f"/v1/affiliates/{a}/applications", headers=bearer(key_b))
        assert snoop.status_code == 403
        by_other_store = await c.get(f"/v1/affiliates/{a}/applications", headers=other.auth)
        assert by_other_store.status_code == 403
        decided_elsewhere = await c.post(f"{s}/partners/{a}/approve", json={}, headers=other.auth)
        assert decided_elsewhere.status_code == 403
        bad_status = await c.get(f"{s}/partners?status=maybe", headers=store.auth)
        assert bad_status.status_code == 422

        # -- paging by affiliate id ---------------------------------------------------------
        first = (await c.get(f"{s}/partners?limit=1", headers=store.auth)).json()
        assert len(first["items"]) == 1
        assert first["next_cursor"] == first["items"][0]["affiliate_id"]
        rest = (
            await c.get(
                f"{s}/partners",
                params={"limit": 1, "cursor": first["next_cursor"]},
                headers=store.auth,
            )
        ).json()
        assert [p["affiliate_id"] for p in first["items"] + rest["items"]] == sorted([a, b])
        assert rest["next_cursor"] in (None, rest["items"][0]["affiliate_id"])

        # -- decisions: reasons, refusals -----------------------------------------------------
        no_reason = await c.post(f"{s}/partners/{b}/reject", json={}, headers=store.auth)
        assert (no_reason.status_code, no_reason.json()["error"]["code"]) == (
            422,
            "reason_required",
        )
        bad_reason = await c.post(
            f"{s}/partners/{b}/reject", json={"reason": "mood"}, headers=store.auth
        )
        assert bad_reason.status_code == 422
        never = await c.post(
            f"{s}/partners/{n}/reject", json={"reason": "not_a_fit"}, headers=store.auth
        )
        assert (never.status_code, never.json()["error"]["code"]) == (409, "invalid_transition")
        ghost = await c.post(f"{s}/partners/ghost-{u}/approve", json={}, headers=store.auth)
        assert (ghost.status_code, ghost.json()["error"]["code"]) == (404, "not_found")
        rejected = await c.post(
            f"{s}/partners/{b}/reject",
            json={"reason": "not_a_fit", "note": "coupons only"},
            headers=store.auth,
        )
        assert rejected.json()["status"] == "rejected", rejected.text
        approved = await c.post(
            f"{s}/partners/{a}/approve", json={"reason": "meets_criteria"}, headers=store.auth
        )
        assert (approved.status_code, approved.json()["status"]) == (200, "approved")

        # -- the tracker follows: A gets links, B does not; B's server clicks are refused ---
        code_a = (await link_answer(svc, key_a, store.store_id, 201))["code"]
        refused_b = await link_answer(svc, key_b, store.store_id, 403)
        assert refused_b["error"]["status"] == "rejected"
        mine = (await c.get(f"/v1/affiliates/{b}/applications", headers=bearer(key_b))).json()
        assert [(p["status"], p["reason"], p["note"]) for p in mine["items"]] == [
            ("rejected", "not_a_fit", "coupons only")
        ]

        # -- an order before the ban keeps its commission; one placed after pays nothing ----
        redirect = await svc.tracker.get(f"/r/{code_a}")
        assert redirect.status_code == 302
        visitor = harness.visitor_of(redirect)
        o1, o2 = f"o1-{u}", f"o2-{u}"
        await _post(svc, store, [placed(o1, visitor, "50.00", qty=1, ship="0.00"), completed(o1)])
        await eventually(
            lambda: harness.order_view(
                svc, settings, (store.store_id, o1), affiliate_id=a, payable="5.00"
            )
        )
        banned = await c.post(
            f"{s}/partners/{a}/ban",
            json={"reason": "fraud", "note": "stuffing"},
            headers=store.auth,
        )
        assert (banned.status_code, banned.json()["status"]) == (200, "banned"), banned.text
        refused_a = await link_answer(svc, key_a, store.store_id, 403)
        assert refused_a["error"]["status"] == "banned"
        # the earlier click (not suspicious) still wins o2, but a banned affiliate earns nothing
        await _post(svc, store, [placed(o2, visitor, "50.00", qty=1, ship="0.00"), completed(o2)])
        view = await eventually(
            lambda: harness.order_view(
                svc, settings, (store.store_id, o2), affiliate_id=a, status="completed"
            )
        )
        assert (view["attributed"], view["payable"], view["commission"]) == (True, "0.00", "0.00")
        assert await harness.order_view(svc, settings, (store.store_id, o1), payable="5.00")

        # a server click on the banned affiliate's link: recorded, marked suspicious
        click = await signed_post(
            svc.tracker,
            "/v1/clicks",
            store,
            {"event_id": f"ck-{u}", "code": code_a, "visitor_id": f"v-{u}", "occurred_at": _now()},
        )
        assert click.status_code == 202, click.text
        assert (click.json()["suspicious"], click.json()["suspicious_reason"]) == (True, "banned")
        reapply = await c.post(f"{s}/applications", json={}, headers=bearer(key_a))
        assert (reapply.status_code, reapply.json()["error"]["code"]) == (409, "partner_banned")

        # -- the history and the audit log --------------------------------------------------
        detail = (await c.get(f"{s}/partners/{a}", headers=store.auth)).json()
        assert [(h["action"], h["status_after"], h["actor"]) for h in detail["history"]] == [
            ("apply", "pending", f"affiliate:{a}"),
            ("approve", "approved", f"store:{store.store_id}"),
            ("ban", "banned", f"store:{store.store_id}"),
        ]
        assert (await c.get(f"{s}/partners/{n}", headers=store.auth)).status_code == 404
        audit = (
            await c.get(
                "/v1/audit", params={"limit": 1000, "kind": "partner.ban"}, headers=admin(settings)
            )
        ).json()["items"]
        assert [e["subject"] for e in audit if e["tenant"] == f"store:{store.store_id}"] == [
            f"store:{store.store_id}/partner/{a}"
        ]


async def test_a_ban_refuses_links_even_in_an_open_program_and_approval_reinstates(
    settings: Settings,
) -> None:
    u = harness.uid()
    async with harness.running(settings) as svc:
        c = svc.commission
        store = await harness.new_store(svc, settings, f"qs-{u}", rate="0.10")
        a = f"qa-{u}"
        key_a = await harness.new_affiliate(svc, settings, a)
        s = f"/v1/stores/{store.store_id}"
        # applying under open enrollment (the path): approved at once
        applied = await c.post(
            f"/v1/affiliate/programs/{store.store_id}/applications", json={}, headers=bearer(key_a)
        )
        assert (applied.status_code, applied.json()["status"]) == (201, "approved")
        assert applied.json()["reason"] == "open_enrollment"
        ban = await c.post(f"{s}/partners/{a}/ban", json={"reason": "fraud"}, headers=store.auth)
        assert ban.json()["status"] == "banned"
        again = await c.post(f"{s}/partners/{a}/ban", json={"reason": "fraud"}, headers=store.auth)
        assert again.json()["updated_at"] == ban.json()["updated_at"]  # nothing changed
        refused = await link_answer(svc, key_a, store.store_id, 403)
        assert {k: v for k, v in refused["error"].items() if k != "message"} == {
            "code": "not_approved",
            "store_id": store.store_id,
            "affiliate_id": a,
            "enrollment": "open",
            "status": "banned",
        }
        ops = (await c.get(f"{s}/operations", headers=store.auth)).json()
        assert [(o["kind"], o["key"]) for o in ops if o["kind"].startswith("partner")] == [
            ("partner_ban", a)
        ]
        back = await c.post(f"{s}/partners/{a}/approve", json={}, headers=store.auth)
        assert back.json()["status"] == "approved"
        await link_answer(svc, key_a, store.store_id, 201)
        ops = (await c.get(f"{s}/operations", headers=store.auth)).json()
        assert [o["kind"] for o in ops if o["kind"].startswith("partner")] == [
            "partner_ban",
            "partner_unban",
        ]
        # the spelling of the setting; the approved affiliate keeps its links
        approval = await c.put(
            f"{s}/enrollment", json={"enrollment": "approval"}, headers=store.auth
        )
        assert (approval.status_code, approval.json()["enrollment"]) == (200, "approval")
        both = await c.put(
            f"{s}/enrollment", json={"enrollment": "open", "mode": "open"}, headers=store.auth
        )
        assert both.status_code == 422
        await link_answer(svc, key_a, store.store_id, 201)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


async def _post(svc: harness.Services, store: harness.Store, events: list[dict[str, Any]]) -> None:
    resp = await signed_post(svc.tracker, "/v1/events", store, {"events": events})
    assert resp.status_code == 202, resp.text
    assert resp.json()["rejected"] == 0, resp.text
