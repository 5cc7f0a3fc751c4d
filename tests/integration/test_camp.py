"""The alliance camp end to end, through HTTP: stores join and set rates on the commission API,
upload their catalogs and post page views and an order to the tracker, a buyer follows an
affiliate link (the tracker seals the visitor cookie); then ``GET /v1/camp/products`` with that
cookie ranks by the documented score and personal boost, which this test computes on its own
(the formula written out again here, not the service's functions), pages cover every product
exactly once, and only stores in the program show. The scores themselves are not in the answer
(they would reveal the stores' commission rates and affiliate sales): the test compares the
order of the products, including ties broken by the higher rate, and each one's boost; and the
cursor is sealed (neither readable nor forgeable)."""

from __future__ import annotations

import base64
import hashlib
import math
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from services.commission.camp.service import CURSOR_PURPOSE
from services.commission.core.camp import CANDIDATES_PER_KEY
from shared.config import Settings
from shared.db import encode_cursor
from shared.sealed import Sealer
from shared.visitors import VISITOR_COOKIE, VisitorCookies
from tests.integration.harness import (
    Services,
    Store,
    eventually,
    new_affiliate,
    new_link,
    order_view,
    register_store,
    running,
    signed_post,
    uid,
)

pytestmark = pytest.mark.integration

D = Decimal

#: store → (joined, default rate, {category: rate}, {main product: rate})
PROGRAMS: dict[str, tuple[bool, str, dict[str, str], dict[str, str]]] = {
    "a": (True, "0.05", {"light": "0.09"}, {"a3": "0.05"}),
    "b": (True, "0.05", {}, {}),
    "c": (True, "0.08", {"toys": "0.15"}, {}),
    "d": (False, "0.06", {}, {}),  # never joins: none of its products may show
}
#: what a public camp item holds: no score, no rate
PUBLIC_FIELDS = {
    "store_id",
    "product_id",
    "title",
    "category_id",
    "price",
    "currency",
    "hot",
    "boost",
    "because",
}
#: store → [(product, title, category)]
CATALOG: dict[str, list[tuple[str, str, str | None]]] = {
    "a": [
        ("a1", "Desk lamp", "light"),
        ("a2", "Stoneware mug", "kitchen"),
        ("a3", "Floor lamp", "light"),
    ],
    "b": [
        ("b1", "Lamp oil", "kitchen"),
        ("b2", "Garden hose", "garden"),
        ("b3", "Tea kettle", "kitchen"),
        ("b4", "Gift card", None),
    ],
    "c": [
        ("c1", "Garden lamp", "garden"),
        ("c2", "Kitchen scale", "kitchen"),
        ("c3", "Toy lamp", "toys"),
    ],
    "d": [("d1", "Lamp of a store outside", "light"), ("d2", "Mug outside", "kitchen")],
}


def rate_of(store: str, product: str, category: str | None) -> Decimal:
    _, default, categories, mains = PROGRAMS[store]
    if product in mains:
        return D(mains[product])
    if category in categories:
        return D(categories[category])
    return D(default)


def base_score(store: str, product: str, category: str | None, affiliate_orders: int) -> Decimal:
    """docs/camp.md's composite: 30 if hot + 10 if main + 100 × rate + 10 × log10(1 + orders)."""
    hot = affiliate_orders > 0  # every store here has fewer than 20 products sold
    main = product in PROGRAMS[store][3]
    history = D(str(round(math.log10(1 + affiliate_orders), 4)))
    score = (
        (30 if hot else 0)
        + (10 if main else 0)
        + 100 * rate_of(store, product, category)
        + 10 * history
    )
    return D(score).quantize(D("0.0001"))


def expected(
    u: str,
    sold: dict[tuple[str, str], int],
    categories: dict[str, int],
    stores: dict[str, int],
    *,
    q: str | None = None,
    category_id: str | None = None,
    per_key: int = 40,
    extra: dict[str, list[tuple[str, str, str | None]]] | None = None,
) -> list[tuple[str, str, Decimal]]:
    """(store, product, boost) in the camp's order, computed here: the final score is the
    docs/camp.md's boost ``1 + 0.15 × k_category + 0.10 × k_store`` times the base score for the
    best ``per_key`` (by base score, then rate, then ids) of each of the visitor's categories
    and stores among the matches, the base score (boost 1) for the rest; ties to the higher
    rate, then the ids. ``extra``: more products of the stores than :data:`CATALOG`'s."""
    matches = []
    catalog = {s: CATALOG[s] + (extra or {}).get(s, []) for s in CATALOG}
    for s, products in catalog.items():
        if not PROGRAMS[s][0]:
            continue
        for p, title, category in products:
            if q and q.lower() not in title.lower():
                continue
            if category_id and category != category_id:
                continue
            base = base_score(s, p, category, sold.get((s, p), 0))
            matches.append((base, rate_of(s, p, category), s, p, category))
    by_merit = sorted(matches, key=lambda r: (-r[0], -r[1], r[2], r[3]))
    lifted: set[tuple[str, str]] = set()
    for c in categories:
        lifted |= set([(r[2], r[3]) for r in by_merit if r[4] == c][:per_key])
    for shop in stores:
        lifted |= set([(r[2], r[3]) for r in by_merit if r[2] == shop][:per_key])
    rows = []
    for base, rate, s, p, category in matches:
        boost = D(1)
        if (s, p) in lifted:
            k_cat = categories.get(category, 0) if category else 0
            boost = 1 + D("0.15") * k_cat + D("0.10") * stores.get(s, 0)
        rows.append((base * boost, rate, f"{s}-{u}", p, boost))
    rows.sort(key=lambda r: (-r[0], -r[1], r[2], r[3]))
    return [(store, p, boost) for _, _, store, p, boost in rows]


async def camp(
    client: httpx.AsyncClient, cookie: str | None, limit: int, **params: str
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Every page of the camp, ``limit`` at a time: the items and each page's
    ``personalised``."""
    headers = {"Cookie": f"{VISITOR_COOKIE}={cookie}"} if cookie else {}
    items: list[dict[str, Any]] = []
    personal: list[bool] = []
    cursor = None
    while True:
        resp = await client.get(
            "/v1/camp/products",
            params={**params, "limit": str(limit)} | ({"cursor": cursor} if cursor else {}),
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["cache-control"] == "private, no-store"
        body = resp.json()
        for item in body["items"]:
            assert set(item) == PUBLIC_FIELDS, item  # nothing that reveals a rate or sales
        items += body["items"]
        personal.append(body["personalised"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, personal


def ranked(items: list[dict[str, Any]]) -> list[tuple[str, str, Decimal]]:
    """(store, product, boost) in the answer's order: what :func:`expected` computes."""
    return [(i["store_id"], i["product_id"], D(i["boost"])) for i in items]


def ids_of(rows: list[tuple[str, str, Decimal]]) -> list[tuple[str, str]]:
    return [(s, p) for s, p, _ in rows]


async def set_up(svc: Services, settings: Settings, u: str) -> dict[str, Store]:
    stores = {}
    for s, (joined, default, categories, mains) in PROGRAMS.items():
        store = await register_store(svc, settings, f"{s}-{u}")
        stores[s] = store
        if joined:
            path = f"/v1/stores/{store.store_id}"
            resp = await svc.commission.post(
                f"{path}/program/join", json={"default_rate": default}, headers=store.auth
            )
            assert resp.status_code == 200, resp.text
            for category, rate in categories.items():
                resp = await svc.commission.put(
                    f"{path}/rates/categories/{category}", json={"rate": rate}, headers=store.auth
                )
                assert resp.status_code == 200, resp.text
            for product, rate in mains.items():
                resp = await svc.commission.put(
                    f"{path}/main-products/{product}", json={"rate": rate}, headers=store.auth
                )
                assert resp.status_code == 200, resp.text
        events = [
            {
                "event_id": f"cat-{p}",
                "type": "product_upserted",
                "occurred_at": now(),
                "product_id": p,
                "category_id": category,
                "title": title,
                "price": "10.00",
                "currency": "USD",
            }
            for p, title, category in CATALOG[s]
        ]

        async def posted(
            store: Store = store, events: list[dict[str, Any]] = events
        ) -> bool | None:
            resp = await signed_post(svc.tracker, "/v1/events", store, {"events": events})
            if resp.status_code == 401:
                return None  # the tracker has not seen the store yet
            assert resp.status_code == 202, resp.text
            return True

        await eventually(posted)
    return stores


def now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


async def test_the_camp_ranks_by_score_and_the_visitor_s_history(settings: Settings) -> None:
    u = uid()
    async with running(settings) as svc:
        stores = await set_up(svc, settings, u)
        a, b, c = stores["a"], stores["b"], stores["c"]
        every = sum(len(v) for s, v in CATALOG.items() if PROGRAMS[s][0])

        async def catalog_in() -> list[dict[str, Any]] | None:
            items, _ = await camp(svc.commission, None, 50)
            return items if len(items) == every else None

        await eventually(catalog_in)

        # a buyer follows an affiliate's link to a2 (the tracker seals the visitor cookie),
        # views c1 and b's home page, and buys a2 (attributed to the click: a2 turns hot)
        key = await new_affiliate(svc, settings, f"aff-{u}")
        link = await new_link(svc, key, a.store_id, "a2")
        redirect = await svc.tracker.get(f"/r/{link['code']}")
        assert redirect.status_code == 302, redirect.text
        cookie = redirect.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        visitor = VisitorCookies(settings.secret_key).open(cookie)
        assert visitor is not None
        for store, event in (
            (c, {"type": "page_view", "product_id": "c1"}),
            (b, {"type": "page_view"}),
        ):
            payload = {
                "events": [
                    {
                        "event_id": f"pv-{store.store_id}",
                        "occurred_at": now(),
                        "visitor_id": visitor,
                    }
                    | event
                ]
            }
            resp = await signed_post(svc.tracker, "/v1/events", store, payload)
            assert resp.status_code == 202, resp.text
        order = {
            "event_id": "o1-placed",
            "type": "order_placed",
            "occurred_at": now(),
            "order_id": "o1",
            "visitor_id": visitor,
            "currency": "USD",
            "items": [{"product_id": "a2", "quantity": 1, "unit_price": "10.00"}],
        }
        resp = await signed_post(svc.tracker, "/v1/events", a, {"events": [order]})
        assert resp.status_code == 202, resp.text
        decided = await eventually(
            lambda: order_view(svc, settings, (a.store_id, "o1"), attribution_decided=True),
            timeout_s=60,
        )
        assert decided["affiliate_id"] == f"aff-{u}"
        await svc.apps["commission"].state.products.run_once()  # a2's sales: hot, 1 order

        sold = {("a", "a2"): 1}
        # bought in kitchen at a (the order line's category from the catalog), viewed garden
        # at c, viewed b (no product: the store only)
        cats, shops = {"kitchen": 3, "garden": 1}, {"a": 3, "b": 1, "c": 1}
        want_personal = expected(u, sold, cats, shops)
        want_plain = expected(u, sold, {}, {})
        assert ids_of(want_personal) != ids_of(want_plain)  # the history changes the order

        async def personalised() -> list[dict[str, Any]] | None:
            items, flags = await camp(svc.commission, cookie, 50)
            return items if ranked(items) == want_personal and all(flags) else None

        await eventually(personalised, timeout_s=60)

        # pages of 2 (personalised and plain) cover every product exactly once, in order
        items, flags = await camp(svc.commission, cookie, 2)
        assert ranked(items) == want_personal
        assert all(flags)
        assert len(flags) == math.ceil(every / 2) + (every % 2 == 0)
        items, flags = await camp(svc.commission, None, 2)
        assert ranked(items) == want_plain
        assert not any(flags)
        assert {i["store_id"] for i in items} == {a.store_id, b.store_id, c.store_id}

        # the reasons and the multiplier shown
        mug = next(
            i for i in (await camp(svc.commission, cookie, 50))[0] if i["product_id"] == "a2"
        )
        assert mug["because"] == ["category", "store"]
        assert D(mug["boost"]) == D("1.75")
        assert mug["hot"] is True

        # at an equal score the higher rate first: c3 (toys 15 %) before a3 (main, 5 % + 10),
        # in what the camp answers (the full order above holds it too)
        plain = [p for _, p, _ in want_plain]
        assert base_score("c", "c3", "toys", 0) == base_score("a", "a3", "light", 0)
        assert plain.index("c3") < plain.index("a3")
        answered = [i["product_id"] for i in (await camp(svc.commission, None, 50))[0]]
        assert answered.index("c3") < answered.index("a3")

        # keyword and category, with and without the history
        for params in (
            {"q": "LAMP"},
            {"category_id": "kitchen"},
            {"q": "lamp", "category_id": "garden"},
        ):
            for who, cats_, shops_ in ((cookie, cats, shops), (None, {}, {})):
                items, _ = await camp(svc.commission, who, 2, **params)
                want = expected(
                    u, sold, cats_, shops_, q=params.get("q"), category_id=params.get("category_id")
                )
                assert ranked(items) == want, params

        # the boost lifts the best per_key of each of the visitor's categories and stores:
        # with one each, pages of 2 still cover every product once, in that order
        camp_service = svc.apps["commission"].state.camp
        camp_service.per_key = 1
        try:
            for q in (None, "lamp"):
                items, _ = await camp(svc.commission, cookie, 2, **({"q": q} if q else {}))
                want = expected(u, sold, cats, shops, per_key=1, q=q)
                assert ranked(items) == want, q
            assert ids_of(want) != ids_of(expected(u, sold, cats, shops, q="lamp"))  # the cap tells
        finally:
            camp_service.per_key = CANDIDATES_PER_KEY

        # a forged or foreign cookie is no visitor: the plain ranking, not an error
        forged = f"{visitor}.{'A' * 22}"
        other = VisitorCookies("another-deployment-secret-key-of-32ch").seal(visitor)
        for bad in (forged, other, visitor, "garbage", "x" * 5000, f"{visitor}.{'~' * 22}"):
            items, flags = await camp(svc.commission, bad, 50)
            assert ranked(items) == want_plain
            assert not any(flags)

        # a visitor the tracker minted but with no history: the plain ranking
        fresh = VisitorCookies(settings.secret_key).seal(f"v-new-{u}")
        items, flags = await camp(svc.commission, fresh, 50)
        assert ranked(items) == want_plain
        assert not any(flags)


async def test_the_camp_refuses_bad_parameters_with_machine_readable_errors(
    settings: Settings,
) -> None:
    u = uid()
    async with running(settings) as svc:
        await set_up(svc, settings, u)

        async def two_pages() -> str | None:
            resp = await svc.commission.get("/v1/camp/products", params={"limit": "2"})
            cursor: str | None = resp.json()["next_cursor"]
            return cursor

        cursor = await eventually(two_pages)
        # the cursor is sealed: what it holds (the last row's score and rate, its ids) does not
        # show, and nothing but the service makes one. The same plaintext sealed with the
        # service's key is a page (so what the others lack is the key, not the format).
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        # (strings long enough that random ciphertext cannot hold them by chance: a lone
        # quote or "0.0" would be in one cursor of a few hundred)
        for hidden in (b"2026-11", b"-" + u.encode()):
            assert hidden not in raw
        fingerprint = hashlib.sha256(b"\x00").hexdigest()[:16]  # no q, no category
        values = [now(), "999.0000", "0.9900", f"a-{u}", "a1", fingerprint]
        plaintext = orjson.dumps(values)
        ours = Sealer(settings.secret_key, CURSOR_PURPOSE).seal(plaintext)
        resp = await svc.commission.get("/v1/camp/products", params={"cursor": ours, "limit": "2"})
        assert resp.status_code == 200, resp.text
        foreign = Sealer("another-deployment-secret-key-of-32ch", CURSOR_PURPOSE).seal(plaintext)
        other_purpose = Sealer(settings.secret_key, "another-purpose").seal(plaintext)
        unsealed = encode_cursor(values)  # what the cursors were: base64 JSON anyone writes
        flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
        # sealed with the key but not what the service seals (defence in depth): refused too
        sealer = Sealer(settings.secret_key, CURSOR_PURPOSE)
        odd = (
            [
                sealer.seal(orjson.dumps(v))
                for v in (
                    values[:5],
                    [*values, "x"],
                    [values[0], "1e999999", *values[2:]],
                    [values[0], "NaN", *values[2:]],
                    [values[0], "-1", *values[2:]],
                    [values[0], values[1], "99999999999999999999", *values[3:]],
                    ["9999-12-31T23:59:59+00:00", *values[1:]],  # from the future
                    ["2026-11-28T10:00:00", *values[1:]],  # no time zone
                    [*values[:3], "\x00", *values[4:]],
                    [*values[:3], "", *values[4:]],
                    [*values[:3], "s" * 129, *values[4:]],
                    [1, 2, 3, 4, 5, 6],
                    {"a": 1},
                )
            ]
            + [sealer.seal(b"not json"), sealer.seal(b"")]
        )
        for bad in odd:
            resp = await svc.commission.get("/v1/camp/products", params={"cursor": bad})
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.json()["error"]["code"] == "bad_cursor", resp.text
        for params, code in (
            ({"cursor": foreign}, "bad_cursor"),
            ({"cursor": other_purpose}, "bad_cursor"),
            ({"cursor": unsealed}, "bad_cursor"),
            ({"cursor": flipped}, "bad_cursor"),
            ({"cursor": cursor[:-3]}, "bad_cursor"),
            ({"limit": "0"}, "invalid_request"),
            ({"limit": "101"}, "invalid_request"),
            ({"q": ""}, "invalid_request"),
            ({"q": "x" * 101}, "invalid_request"),
            ({"category_id": "not an id"}, "invalid_request"),
            ({"cursor": "not-a-cursor"}, "bad_cursor"),
            ({"cursor": "W10"}, "bad_cursor"),  # an empty list
            ({"cursor": cursor, "q": "lamp"}, "bad_cursor"),  # another query's cursor
            ({"cursor": cursor, "category_id": "light"}, "bad_cursor"),
        ):
            resp = await svc.commission.get("/v1/camp/products", params=params)
            assert resp.status_code == 422, (params, resp.text)
            assert resp.json()["error"]["code"] == code, (params, resp.text)
        # the same cursor with its own query is a page
        resp = await svc.commission.get(
            "/v1/camp/products", params={"cursor": cursor, "limit": "2"}
        )
        assert resp.status_code == 200, resp.text
