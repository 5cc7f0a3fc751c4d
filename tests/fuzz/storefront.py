"""Hypothesis strategies for what a storefront (or someone with its webhook secret) may post:
``POST /v1/events`` batches and ``POST /v1/clicks`` server clicks, mostly well formed and
sprinkled with hostile values — numbers beyond 64 bits and floats for amounts, times whose
offset leaves the representable range, ids too long or with odd characters, NUL, deep
nesting, wrong types, oversized batches. A good share is valid, so that it is accepted and
travels on to the consumers: the pipeline must stay healthy after it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import strategies as st

#: JSON numbers and strings no field of an event accepts as an amount, a count or a time
HOSTILE_NUMBERS: list[Any] = [
    10**30,
    -(10**30),
    2**63,
    2**64 + 1,
    -1,
    0,
    1e308,
    -0.0,
    0.1,
    True,
]
HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "é",
    "😀",
    "٣",
    "１２",
    "\u202e",
    "a" * 65,
    "a" * 129,
    "a" * 600,
    "{product_id}",
    "../../etc/passwd",
    "<script>",
    "=cmd|' /C calc'!A0",
]
HOSTILE_TIMES = [
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-02-30T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-01-01",
    "now",
    "1e999999",
]
HOSTILE_MONEY = ["1e999999", "NaN", "Infinity", "-0", "-1", "0.001", "1000000001", "١٢", "1_0"]


def hostile() -> st.SearchStrategy[Any]:
    """Any JSON value that is wrong for any field."""
    leaf = st.one_of(
        st.sampled_from(HOSTILE_NUMBERS + HOSTILE_STRINGS + HOSTILE_TIMES + HOSTILE_MONEY),
        st.none(),
        st.integers(),
        st.text(max_size=80),
    )
    return st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )


def sometimes(valid: st.SearchStrategy[Any], dirty: bool) -> st.SearchStrategy[Any]:
    """``valid`` in a clean event; in a dirty one, now and then a hostile value."""
    return st.one_of(valid, valid, valid, hostile()) if dirty else valid


def idents() -> st.SearchStrategy[str]:
    return st.from_regex(r"[A-Za-z0-9._:@\-]{1,64}", fullmatch=True)


def derived_ids(store_id: str, orders: list[str]) -> st.SearchStrategy[str]:
    """Ids shaped like every key Alliance derives (docs/security.md: idempotency
    namespaces), for a store to send as its own: a decision's ``<store>:<order>:<n>``, a
    processed event's ``<store>/<event>``, a server click's ``s2s:<store>:<event>``, ledger
    keys (``commission:…``, ``reversal:…/…``, ``payout:…:USD``), a webhook's cause
    (``attribution:<store>:<order>:<n>``) and id (``evt_…``), directory keys (``store:…``,
    ``coupon:<store>:<CODE>``) and outbox row ids. The ones with ``/`` are refused at the
    edge; the others are valid event ids that must reach no other namespace."""
    order = st.sampled_from(orders) | idents() if orders else idents()
    n = st.integers(min_value=0, max_value=3)
    ident = st.from_regex(r"[A-Za-z0-9._\-]{1,16}", fullmatch=True)
    return st.one_of(
        st.builds(lambda o, r: f"{store_id}:{o}:{r}", order, n),
        st.builds(lambda e: f"{store_id}/{e}", ident),
        st.builds(lambda e: f"s2s:{store_id}:{e}", ident),
        st.builds(lambda o: f"commission:{store_id}:{o}", order),
        st.builds(lambda o, e: f"reversal:{store_id}:{o}/{e}", order, ident),
        st.builds(lambda e: f"payout:{e}:USD", ident),
        st.builds(lambda o, r: f"attribution:{store_id}:{o}:{r}", order, n),
        st.builds(lambda e: f"evt_{e}", st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
        st.just(f"store:{store_id}"),
        st.just(f"coupon:{store_id}:SAVE10"),
        st.integers(min_value=1, max_value=10**6).map(str),
    ).filter(lambda i: len(i) <= 64)


def event_ids(store_id: str | None, orders: list[str]) -> st.SearchStrategy[str]:
    """An event id a storefront chooses: any ident, or (knowing the store) one shaped like a
    derived key."""
    if store_id is None:
        return idents()
    return st.one_of(idents(), derived_ids(store_id, orders))


def titles(size: int) -> st.SearchStrategy[str]:
    """Any text PostgreSQL can hold: emoji, right-to-left marks, quotes, formula starters."""
    return st.text(
        st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=size
    )


def times(now: datetime, dirty: bool) -> st.SearchStrategy[Any]:
    """Event times in the accepted window (the last 30 days, up to five minutes ahead) with
    odd offsets; in a dirty event also just outside it, or hostile."""
    early, late = (-40 * 86400, 600) if dirty else (-29 * 86400, 60)
    offsets = st.integers(min_value=early, max_value=late).map(lambda s: timedelta(seconds=s))
    zones = st.sampled_from(["Z", "+00:00", "+14:00", "-12:00", "+05:45"])

    def stamp(delta: timedelta, zone: str) -> str:
        when = now + delta
        if zone == "Z":
            return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        sign = 1 if zone[0] == "+" else -1
        shift = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
        return (when + shift).replace(tzinfo=None).isoformat() + zone

    return sometimes(st.builds(stamp, offsets, zones), dirty)


def money(dirty: bool) -> st.SearchStrategy[Any]:
    valid = st.decimals(min_value=0, max_value=10_000, places=2).map(str)
    return st.one_of(valid, valid, st.sampled_from(HOSTILE_MONEY), hostile()) if dirty else valid


def currencies(dirty: bool) -> st.SearchStrategy[Any]:
    """Currencies with cents (the amounts have two decimals); in a dirty event also yen
    (no minor unit), unknown codes and hostile values."""
    valid = st.sampled_from(["USD", "EUR", "KWD"])
    return sometimes(valid | st.sampled_from(["JPY", "XXX", "usd", ""]), dirty)


def items(products: list[str], dirty: bool) -> st.SearchStrategy[Any]:
    item = st.fixed_dictionaries(
        {
            "product_id": sometimes(st.sampled_from(products), dirty),
            "category_id": sometimes(st.just("c1"), dirty),
            "title": sometimes(titles(40), dirty),
            "quantity": sometimes(st.integers(min_value=1, max_value=5), dirty),
            "unit_price": money(dirty),
            "shipping_fee": money(dirty),
        },
        optional={"extra": hostile()} if dirty else {},
    )
    lists = st.lists(item, min_size=1, max_size=4)
    return st.one_of(lists, st.lists(item, max_size=0), hostile()) if dirty else lists


def storefront_events(
    now: datetime,
    orders: list[str],
    products: list[str],
    visitors: list[str],
    dirty: bool,
    store_id: str | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """One storefront event of any type on the given orders, products and visitors (so that
    events meet each other: placements, completions and refunds of one order) or on new ones.
    A clean event is valid; a dirty one has hostile fields, or no valid type at all. Knowing
    the posting store (``store_id``), event ids are also shaped like derived keys."""
    ids = event_ids(store_id, orders)
    common = {"event_id": sometimes(ids, dirty), "occurred_at": times(now, dirty)}
    order = sometimes(st.sampled_from(orders) | idents(), dirty)
    visitor = sometimes(st.sampled_from(visitors) | idents(), dirty)
    refunds = st.lists(
        st.fixed_dictionaries(
            {"product_id": sometimes(st.sampled_from(products), dirty), "amount": money(dirty)}
        ),
        min_size=1,
        max_size=3,
    )
    kinds = {
        "order_placed": {
            "order_id": order,
            "visitor_id": visitor,
            "currency": currencies(dirty),
            "items": items(products, dirty),
        },
        "order_completed": {"order_id": order},
        "order_cancelled": {"order_id": order},
        "order_refunded": {
            "order_id": order,
            "refund_id": sometimes(ids, dirty),
            "currency": currencies(dirty),
            "items": sometimes(refunds, dirty),
        },
        "page_view": {
            "visitor_id": visitor,
            "product_id": sometimes(st.sampled_from(products), dirty),
        },
        "product_upserted": {
            "product_id": sometimes(st.sampled_from(products) | idents(), dirty),
            "category_id": sometimes(st.just("c1"), dirty),
            "title": sometimes(titles(60), dirty),
            "price": money(dirty),
            "currency": currencies(dirty),
        },
    }
    extra = {"store_id": hostile(), "received_at": hostile(), "x": hostile()}
    typed = [
        st.fixed_dictionaries(
            {"type": st.just(kind), **common, **fields}, optional=extra if dirty else {}
        )
        for kind, fields in kinds.items()
    ]
    if dirty:
        typed.append(st.fixed_dictionaries({"type": hostile(), **common}))
    return st.one_of(*typed)


def batches(
    now: datetime,
    orders: list[str],
    products: list[str],
    visitors: list[str],
    store_id: str | None = None,
) -> st.SearchStrategy[Any]:
    """A request body (before serialisation): ``{"events": [...]}`` with up to 8 events,
    clean and dirty ones mixed, some entries not even objects; or a body of the wrong shape."""
    clean = storefront_events(now, orders, products, visitors, dirty=False, store_id=store_id)
    dirty = storefront_events(now, orders, products, visitors, dirty=True, store_id=store_id)
    entry = st.one_of(clean, clean, dirty, dirty, hostile())
    body = st.fixed_dictionaries(
        {"events": st.lists(entry, min_size=1, max_size=8)}, optional={"x": hostile()}
    )
    return st.one_of(body, body, body, body, hostile())


def server_clicks(
    now: datetime, codes: list[str], visitors: list[str], store_id: str | None = None
) -> st.SearchStrategy[Any]:
    """A ``POST /v1/clicks`` body: a real link code (of this store or another) or a forged
    one, and the click's fields; clean or dirty."""

    def click(dirty: bool) -> st.SearchStrategy[Any]:
        return st.fixed_dictionaries(
            {
                "event_id": sometimes(event_ids(store_id, []), dirty),
                "code": sometimes(st.sampled_from(codes), dirty),
                "visitor_id": sometimes(st.sampled_from(visitors) | idents(), dirty),
                "occurred_at": times(now, dirty),
            },
            optional={
                "ip": sometimes(st.sampled_from(["203.0.113.7", "::1", "2001:db8::1"]), dirty),
                "user_agent": sometimes(titles(3000), dirty),
            }
            | ({"extra": hostile()} if dirty else {}),
        )

    return st.one_of(click(False), click(True), hostile())
