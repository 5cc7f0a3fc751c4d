"""All SQL of orders and the ledger. Methods flush; the transaction owner commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Table, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core.applied import AppliedKey, Source
from services.commission.core.commission import (
    Adjustment,
    AdjustmentAction,
    AdjustmentLine,
    AdjustmentReason,
    HeldPlacement,
    LineItem,
    OrderFacts,
    OrderKey,
    OrderStatus,
    Placement,
    Refund,
    RefundItem,
)
from services.commission.core.holds import Hold, HoldStatus
from services.commission.core.ledger import AFFILIATE_ACCOUNTS, LedgerTxn
from services.commission.core.program import DEFAULT_LOCK_DAYS, OpKind
from shared.db import lock_keys, pairs_in
from shared.metrics import LEDGER_POSTINGS, count_on_commit
from shared.money import from_minor, to_minor


def items_json(items: Iterable[LineItem]) -> list[dict[str, Any]]:
    return [
        {
            "product_id": i.product_id,
            "category_id": i.category_id,
            "title": i.title,
            "quantity": i.quantity,
            "unit_price": str(i.unit_price),
            "shipping_fee": str(i.shipping_fee),
        }
        for i in items
    ]


#: what the settlement rollup keeps of an order: (key, chargeable, sales, commission, reversed)
Summary = tuple[OrderKey, bool, int, int, int]


def _line_items(raw: list[dict[str, Any]]) -> tuple[LineItem, ...]:
    return tuple(
        LineItem(
            product_id=i["product_id"],
            category_id=i.get("category_id"),
            quantity=int(i["quantity"]),
            unit_price=Decimal(i["unit_price"]),
            shipping_fee=Decimal(i["shipping_fee"]),
            title=i.get("title", ""),
        )
        for i in raw
    )


def _of_orders(t: Table, keys: Iterable[OrderKey]) -> ColumnElement[bool]:
    """``(store_id, order_id) IN keys`` on a table keyed by order (an order number alone names
    nothing: two stores may use the same one)."""
    return pairs_in(t.c.store_id, t.c.order_id, keys)


def _refund(
    refund_id: str,
    occurred_at: datetime,
    items: list[dict[str, Any]],
    reported_at: datetime | None = None,
) -> Refund:
    return Refund(
        refund_id,
        occurred_at,
        tuple(RefundItem(i["product_id"], Decimal(i["amount"])) for i in items),
        reported_at,
    )


def adjustment_of(r: Any) -> Adjustment:
    """An ``adjustments`` row (or its JSON) as the core's adjustment."""
    row: dict[str, Any] = r if isinstance(r, dict) else dict(r._mapping)
    get = row.__getitem__
    at = get("at")
    return Adjustment(
        int(get("seq")),
        datetime.fromisoformat(at) if isinstance(at, str) else at,
        AdjustmentAction(get("action")),
        AdjustmentReason(get("reason")),
        tuple(AdjustmentLine(i["product_id"], Decimal(i["amount"])) for i in get("lines")),
        get("note"),
    )


def hold_of(r: Any) -> Hold:
    """A ``holds`` row as the core's hold."""
    return Hold(r.id, r.affiliate_id, r.store_id, HoldStatus(r.status), r.created_at)


#: an affiliate's month with a store in one currency: (store, affiliate, ``YYYY-MM``, currency)
MonthKey = tuple[str, str, str, str]


def _facts(o: Any, refunds: Iterable[Refund], adjustments: Iterable[Adjustment] = ()) -> OrderFacts:
    """The facts of an order row whose placement is known."""
    return OrderFacts(
        order_id=o.order_id,
        store_id=o.store_id,
        currency=o.currency,
        placed_at=o.placed_at,
        items=_line_items(o.items),
        status=OrderStatus(o.status),
        status_at=o.status_at,
        affiliate_id=o.affiliate_id,
        click_id=o.click_id,
        click_at=o.click_at,
        refunds=tuple(refunds),
        adjustments=tuple(sorted(adjustments, key=lambda a: a.seq)),
        new_buyer=bool(o.new_buyer),
        month_allowance=(
            None if o.month_allowance is None else from_minor(o.month_allowance, o.currency)
        ),
    )


#: ``# MANY_VALUES``: an INSERT of many rows with RETURNING is sent by SQLAlchemy as multi-row
#: ``VALUES`` statements of up to 1,000 rows ("insertmanyvalues"); without it, asyncpg executes
#: the statement once per row, and the per-day rollups' statement triggers (migration
#: a20d1c5e7f31) would fire once per row instead of once per page.


#: an order line's columns, each sent as one array (the parameter of the same name)
_LINE_COLUMNS: dict[str, str] = {
    "store_id": "text",
    "order_id": "text",
    "line_no": "smallint",
    "product_id": "text",
    "category_id": "text",
    "title": "text",
    "quantity": "integer",
    "currency": "text",
    "placed_at": "timestamptz",
    "affiliate_id": "text",
    "chargeable": "boolean",
    "status": "text",
    "sales_minor": "bigint",
    "commission_minor": "bigint",
    "reversed_minor": "bigint",
}
#: what a stored line may change (the rest is fixed by its order's placement)
_LINE_CHANGING = ("affiliate_id", "chargeable", "status", "commission_minor", "reversed_minor")
_UPSERT_LINES = f"""
INSERT INTO commission.order_lines ({", ".join(_LINE_COLUMNS)})
SELECT * FROM unnest({", ".join(f"CAST(:{c} AS {t}[])" for c, t in _LINE_COLUMNS.items())})
ON CONFLICT (store_id, order_id, line_no) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in _LINE_CHANGING)}
WHERE ({", ".join(f"order_lines.{c}" for c in _LINE_CHANGING)})
    IS DISTINCT FROM ({", ".join(f"excluded.{c}" for c in _LINE_CHANGING)})
"""


#: the facts of the orders (``:stores``, ``:ids``) whose placement is known, each with its
#: refunds as three arrays in refund id order (their items as JSON text)
_ORDER_FACTS = """
SELECT o.store_id, o.order_id, o.currency, o.placed_at, o.items, o.new_buyer, o.status,
    o.month_allowance, o.status_at, o.affiliate_id, o.click_id, o.click_at, r.refund_ids,
    r.refund_ats, r.refund_items, r.refund_reported
FROM unnest(CAST(:stores AS text[]), CAST(:ids AS text[])) AS k(store_id, order_id)
JOIN commission.orders o ON o.store_id = k.store_id AND o.order_id = k.order_id
LEFT JOIN LATERAL (
    SELECT array_agg(f.refund_id ORDER BY f.refund_id) AS refund_ids,
        array_agg(f.occurred_at ORDER BY f.refund_id) AS refund_ats,
        array_agg(CAST(f.items AS text) ORDER BY f.refund_id) AS refund_items,
        array_agg(f.reported_at ORDER BY f.refund_id) AS refund_reported
    FROM commission.refunds f
    WHERE f.store_id = o.store_id AND f.order_id = o.order_id
) AS r ON true
WHERE o.placed_at IS NOT NULL
"""


def _explanation(expl: Any) -> str | None:
    """A decision's explanation as JSON text (given as such, or as what encodes to it)."""
    return expl if expl is None or isinstance(expl, str) else orjson.dumps(expl).decode()


#: the orders' rows (:meth:`OrderRepository.ensure_orders`): a new row with its placement and
#: decision, a held row without placement given its placement; ``xmax = 0``: inserted now
_ENSURE_ORDERS = """
INSERT INTO commission.orders (store_id, order_id, currency, placed_at, items, new_buyer,
    attribution_revision, affiliate_id, click_id, click_at, sub_id, attribution)
SELECT store_id, order_id, currency, placed_at, CAST(items AS jsonb), coalesce(nb, false),
    coalesce(rev, -1), aff, click, click_at, sub, CAST(expl AS jsonb)
FROM unnest(CAST(:stores AS text[]), CAST(:ids AS text[]), CAST(:currencies AS text[]),
    CAST(:placed AS timestamptz[]), CAST(:items AS text[]), CAST(:new_buyers AS boolean[]),
    CAST(:revs AS integer[]), CAST(:affs AS text[]), CAST(:clicks AS text[]),
    CAST(:click_ats AS timestamptz[]), CAST(:subs AS text[]), CAST(:expls AS text[]))
    AS p(store_id, order_id, currency, placed_at, items, nb, rev, aff, click, click_at, sub,
        expl)
ON CONFLICT (store_id, order_id) DO UPDATE SET
    currency = excluded.currency, placed_at = excluded.placed_at, items = excluded.items,
    new_buyer = excluded.new_buyer
WHERE orders.placed_at IS NULL AND excluded.placed_at IS NOT NULL
RETURNING store_id, order_id, xmax = 0 AS inserted
"""


class OrderRepository:
    """Orders' facts, their computed rollups and the events applied."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_events(self, events: list[tuple[AppliedKey, str]]) -> set[AppliedKey]:
        """Record (key, topic) pairs; returns the keys seen for the first time."""
        if not events:
            return set()
        # three array parameters, in key order (two workers never deadlock): one plan
        # whatever the batch's size, where a multi-row VALUES is compiled anew per batch
        claimed = sorted(dict(events).items())
        rows = await self.session.execute(
            text(
                """
                INSERT INTO commission.processed_events (source, event_id, topic)
                SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:ids AS text[]),
                    CAST(:topics AS text[]))
                ON CONFLICT (source, event_id) DO NOTHING
                RETURNING source, event_id
                """
            ),
            {
                "sources": [k.source.value for k, _ in claimed],
                "ids": [k.key for k, _ in claimed],
                "topics": [topic for _, topic in claimed],
            },
        )
        return {AppliedKey(Source(source), key) for source, key in rows}

    async def ensure_orders(
        self,
        keys: Iterable[OrderKey],
        placed: list[dict[str, Any]] | None = None,
        decided: Mapping[OrderKey, dict[str, Any]] | None = None,
    ) -> dict[OrderKey, bool]:
        """A row for every (store, order), so that facts arriving before placement have one;
        with the placement facts ``placed`` (order_id, store_id, currency, placed_at, items)
        stored as :meth:`upsert_placed_many` does (the first stored wins; of several in
        ``placed``, the last). A row inserted now also takes its order's decision from
        ``decided`` (rows as :meth:`set_attribution_many` takes them): on a new row, with no
        decision held and nothing posted, that method would apply it. One statement, in key
        order (two workers never deadlock). Returns the orders whose row this wrote, each
        with whether it inserted it: this transaction holds their lock already (see
        :meth:`lock_orders`)."""
        placements = {(r["store_id"], r["order_id"]): r for r in placed or []}
        decisions = decided or {}
        ordered = sorted(set(keys) | set(placements))
        if not ordered:
            return {}
        rows = [placements.get(k) for k in ordered]
        chosen = [decisions.get(k) for k in ordered]
        written = await self.session.execute(
            text(_ENSURE_ORDERS),
            {
                "stores": [k[0] for k in ordered],
                "ids": [k[1] for k in ordered],
                "currencies": [None if r is None else r["currency"] for r in rows],
                "placed": [None if r is None else r["placed_at"] for r in rows],
                "items": [None if r is None else orjson.dumps(r["items"]).decode() for r in rows],
                "new_buyers": [None if r is None else r.get("new_buyer", False) for r in rows],
                "revs": [None if d is None else d["b_rev"] for d in chosen],
                "affs": [None if d is None else d["b_aff"] for d in chosen],
                "clicks": [None if d is None else d["b_click"] for d in chosen],
                "click_ats": [None if d is None else d["b_click_at"] for d in chosen],
                "subs": [None if d is None else d["b_sub"] for d in chosen],
                "expls": [None if d is None else _explanation(d["b_expl"]) for d in chosen],
            },
        )
        return {(store, oid): bool(inserted) for store, oid, inserted in written}

    async def lock_month_rooms(self, keys: Iterable[MonthKey]) -> dict[MonthKey, int]:
        """The rooms (store, affiliate, month, currency) of the per-affiliate-month cap, each
        created if new and row-locked in key order (two transactions never deadlock, and the
        second reads what the first took), with what they hold taken (minor units)."""
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        mr = m.month_rooms
        cols = ("store_id", "affiliate_id", "month", "currency")
        await self.session.execute(
            insert(mr)
            .values([dict(zip(cols, k, strict=True)) for k in ordered])
            .on_conflict_do_nothing()
        )
        rows = await self.session.execute(
            select(mr.c.store_id, mr.c.affiliate_id, mr.c.month, mr.c.currency, mr.c.used_minor)
            .where(tuple_(*(mr.c[c] for c in cols)).in_(ordered))
            .order_by(*(mr.c[c] for c in cols))
            .with_for_update()
        )
        return {(r[0], r[1], r[2], r[3]): int(r[4]) for r in rows}

    async def take_month_rooms(
        self, used: Mapping[MonthKey, int], allowances: Mapping[OrderKey, int]
    ) -> None:
        """What the rooms (locked by :meth:`lock_month_rooms`) hold taken now, and what each
        order completing now was left (minor units)."""
        mr, o = m.month_rooms, m.orders
        if used:
            await self.session.execute(
                update(mr)
                .where(
                    (mr.c.store_id == bindparam("k_store"))
                    & (mr.c.affiliate_id == bindparam("k_aff"))
                    & (mr.c.month == bindparam("k_month"))
                    & (mr.c.currency == bindparam("k_cur"))
                )
                .values(used_minor=bindparam("k_used")),
                [
                    {"k_store": k[0], "k_aff": k[1], "k_month": k[2], "k_cur": k[3], "k_used": v}
                    for k, v in sorted(used.items())
                ],
            )
        if allowances:
            await self.session.execute(
                update(o)
                .where(
                    (o.c.store_id == bindparam("k_store")) & (o.c.order_id == bindparam("k_oid"))
                )
                .values(month_allowance=bindparam("k_allow")),
                [
                    {"k_store": k[0], "k_oid": k[1], "k_allow": v}
                    for k, v in sorted(allowances.items())
                ],
            )

    async def lock_orders(self, keys: Iterable[OrderKey]) -> None:
        """Row locks on the orders (rows must exist: see ensure_orders), in key order."""
        keys = set(keys)
        if keys:
            o = m.orders
            await self.session.execute(
                select(o.c.order_id)
                .where(_of_orders(o, keys))
                .order_by(o.c.store_id, o.c.order_id)
                .with_for_update()
            )

    async def upsert_placed_many(self, rows: list[dict[str, Any]]) -> None:
        """Placement facts (order_id, store_id, currency, placed_at, items); the first wins."""
        unique = list({(r["store_id"], r["order_id"]): r for r in rows}.values())
        if not unique:
            return
        stmt = insert(m.orders)
        stmt = stmt.on_conflict_do_update(
            index_elements=["store_id", "order_id"],
            set_={
                "currency": stmt.excluded.currency,
                "placed_at": stmt.excluded.placed_at,
                "items": stmt.excluded["items"],
                "new_buyer": stmt.excluded.new_buyer,
            },
            where=m.orders.c.placed_at.is_(None),
        )
        await self.session.execute(stmt.returning(m.orders.c.order_id), unique)  # MANY_VALUES

    async def held_placements(self, keys: Iterable[OrderKey]) -> dict[OrderKey, HeldPlacement]:
        """What is held of each order (rows must exist: see ensure_orders): its placement, the
        revision of its decision, whether anything is posted for it."""
        keys = set(keys)
        if not keys:
            return {}
        o, t = m.orders, m.ledger_transactions
        posted = (
            select(t.c.id)
            .where(t.c.store_id == o.c.store_id, t.c.order_id == o.c.order_id)
            .exists()
        )
        rows = await self.session.execute(
            select(
                o.c.store_id,
                o.c.order_id,
                o.c.currency,
                o.c.placed_at,
                o.c["items"],
                o.c.new_buyer,
                o.c.attribution_revision,
                posted.label("posted"),
            ).where(_of_orders(o, keys))
        )
        return {
            (r.store_id, r.order_id): HeldPlacement(
                None
                if r.placed_at is None
                else Placement(r.currency, r.placed_at, _line_items(r.items), r.new_buyer),
                r.attribution_revision,
                bool(r.posted),
            )
            for r in rows
        }

    async def replace_placements(self, rows: list[tuple[OrderKey, Placement]]) -> None:
        """Rewrite the orders' placements and drop their stored lines (the reconciliation
        writes the lines of the new placement). Rows must be locked: see lock_orders."""
        if not rows:
            return
        o, lines = m.orders, m.order_lines
        await self.session.execute(
            update(o)
            .where(o.c.store_id == bindparam("b_store"), o.c.order_id == bindparam("b_oid"))
            .values(
                currency=bindparam("b_currency"),
                placed_at=bindparam("b_placed"),
                items=bindparam("b_items", type_=JSONB),
                new_buyer=bindparam("b_new_buyer"),
            ),
            [
                {
                    "b_store": store,
                    "b_oid": oid,
                    "b_currency": p.currency,
                    "b_placed": p.placed_at,
                    "b_items": items_json(p.items),
                    "b_new_buyer": p.new_buyer,
                }
                for (store, oid), p in rows
            ],
            execution_options={"synchronize_session": False},
        )
        await self.session.execute(
            lines.delete().where(_of_orders(lines, [key for key, _ in rows]))
        )

    async def set_terminal_many(self, rows: list[tuple[OrderKey, OrderStatus, datetime]]) -> None:
        """First terminal status of each order wins (rows must exist: see ensure_orders); the
        first of an order's rows here is its first. One statement joining the orders by their
        key (the settlement rollup's trigger fires once for the lot): a statement per row,
        planned once as a generic plan, could pick the index on (store, status) and scan every
        placed order of the store for each row."""
        first: dict[OrderKey, tuple[OrderStatus, datetime]] = {}
        for key, status, at in rows:
            first.setdefault(key, (status, at))  # the first of the batch, as one by one
        if not first:
            return
        await self.session.execute(
            text(
                """
                UPDATE commission.orders o SET status = s.status, status_at = s.at
                FROM unnest(CAST(:stores AS text[]), CAST(:ids AS text[]),
                    CAST(:statuses AS text[]), CAST(:ats AS timestamptz[]))
                    AS s(store, id, status, at)
                WHERE o.store_id = s.store AND o.order_id = s.id AND o.status = 'placed'
                """
            ),
            {
                "stores": [k[0] for k in first],
                "ids": [k[1] for k in first],
                "statuses": [st.value for st, _ in first.values()],
                "ats": [at for _, at in first.values()],
            },
        )

    async def set_attribution_many(self, rows: list[dict[str, Any]]) -> None:
        """Apply decisions newer than the one held, while nothing is posted for the order.
        Rows: b_store, b_oid, b_rev, b_aff, b_click, b_click_at, b_sub, b_expl (the explanation,
        as JSON text or as what encodes to it). One statement
        (the settlement rollup's trigger fires once for the lot); of one order's rows the
        first of the highest revision applies, as they would one by one."""
        newest: dict[OrderKey, dict[str, Any]] = {}
        for r in rows:
            key = (r["b_store"], r["b_oid"])
            if key not in newest or r["b_rev"] > newest[key]["b_rev"]:
                newest[key] = r
        if not newest:
            return
        chosen = list(newest.values())
        await self.session.execute(
            text(
                """
                UPDATE commission.orders o
                SET attribution_revision = d.rev, affiliate_id = d.aff, click_id = d.click,
                    click_at = d.click_at, sub_id = d.sub, attribution = CAST(d.expl AS jsonb)
                FROM unnest(CAST(:stores AS text[]), CAST(:ids AS text[]),
                    CAST(:revs AS integer[]), CAST(:affs AS text[]), CAST(:clicks AS text[]),
                    CAST(:click_ats AS timestamptz[]), CAST(:subs AS text[]),
                    CAST(:expls AS text[]))
                    AS d(store, id, rev, aff, click, click_at, sub, expl)
                WHERE o.store_id = d.store AND o.order_id = d.id
                  AND o.attribution_revision < d.rev
                  AND NOT EXISTS (
                      SELECT 1 FROM commission.ledger_transactions t
                      WHERE t.store_id = o.store_id AND t.order_id = o.order_id)
                """
            ),
            {
                "stores": [r["b_store"] for r in chosen],
                "ids": [r["b_oid"] for r in chosen],
                "revs": [r["b_rev"] for r in chosen],
                "affs": [r["b_aff"] for r in chosen],
                "clicks": [r["b_click"] for r in chosen],
                "click_ats": [r["b_click_at"] for r in chosen],
                "subs": [r["b_sub"] for r in chosen],
                "expls": [_explanation(r["b_expl"]) for r in chosen],
            },
        )

    async def revisions(self, keys: Iterable[OrderKey]) -> dict[OrderKey, int]:
        keys = set(keys)
        if not keys:
            return {}
        o = m.orders
        rows = await self.session.execute(
            select(o.c.store_id, o.c.order_id, o.c.attribution_revision).where(_of_orders(o, keys))
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def decisions(self, keys: Iterable[OrderKey]) -> dict[OrderKey, tuple[int, str | None]]:
        """Each order's applied attribution revision and the ``sub_id`` of its winning link."""
        keys = set(keys)
        if not keys:
            return {}
        o = m.orders
        rows = await self.session.execute(
            select(o.c.store_id, o.c.order_id, o.c.attribution_revision, o.c.sub_id).where(
                _of_orders(o, keys)
            )
        )
        return {(r[0], r[1]): (int(r[2]), r[3]) for r in rows}

    async def add_refunds_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            stmt = insert(m.refunds).on_conflict_do_nothing()
            await self.session.execute(stmt, rows)

    async def completed_between(
        self, store_id: str, affiliate_id: str, start: datetime, end: datetime, limit: int
    ) -> list[OrderKey]:
        """The store's orders attributed to the affiliate and completed in [start, end) (at
        most ``limit``, by completion): a month's tier standing."""
        o = m.orders
        rows = await self.session.execute(
            select(o.c.store_id, o.c.order_id)
            .where(
                o.c.store_id == store_id,
                o.c.affiliate_id == affiliate_id,
                o.c.status == "completed",
                o.c.status_at >= start,
                o.c.status_at < end,
            )
            .order_by(o.c.status_at, o.c.order_id)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    async def order_facts(self, keys: Iterable[OrderKey]) -> dict[OrderKey, OrderFacts]:
        """Facts of the orders whose placement is known (others cannot be computed yet). One
        statement (each order's refunds as arrays), only the columns the facts hold."""
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        rows = await self.session.execute(
            text(_ORDER_FACTS),
            {"stores": [k[0] for k in ordered], "ids": [k[1] for k in ordered]},
        )
        adjustments = await self.adjustments(ordered)
        return {
            (o.store_id, o.order_id): _facts(
                o,
                [
                    _refund(i, at, orjson.loads(items), reported)
                    for i, at, items, reported in zip(
                        o.refund_ids or (),
                        o.refund_ats or (),
                        o.refund_items or (),
                        o.refund_reported or (),
                        strict=True,
                    )
                ],
                adjustments.get((o.store_id, o.order_id), ()),
            )
            for o in rows
        }

    async def adjustments(self, keys: Iterable[OrderKey]) -> dict[OrderKey, list[Adjustment]]:
        """The orders' adjustments, by order, in the order accepted."""
        rows = await self.adjustment_rows(keys)
        return {k: [adjustment_of(r) for r in v] for k, v in rows.items()}

    async def adjustment_rows(self, keys: Iterable[OrderKey]) -> dict[OrderKey, list[Any]]:
        """The orders' adjustment rows (with their notes and actors), in the order accepted."""
        keys = set(keys)
        if not keys:
            return {}
        a = m.adjustments
        out: dict[OrderKey, list[Any]] = {}
        rows = await self.session.execute(
            select(a).where(_of_orders(a, keys)).order_by(a.c.store_id, a.c.order_id, a.c.seq)
        )
        for r in rows:
            out.setdefault((r.store_id, r.order_id), []).append(r)
        return out

    async def unannounced_locks(self, now: datetime, limit: int) -> list[OrderKey]:
        """Up to ``limit`` completed, attributed, chargeable orders locked at ``now`` (the lock
        period in force at placement: the last ``lock_period`` operation of the store at or
        before it, else the default) whose lock was not announced yet, oldest completion
        first. The core confirms each (``locks_at``) before it is announced."""
        rows = await self.session.execute(
            text(
                """
                SELECT o.store_id, o.order_id
                FROM commission.orders AS o
                CROSS JOIN LATERAL (
                    SELECT coalesce((
                        SELECT p.days FROM commission.program_ops AS p
                        WHERE p.store_id = o.store_id AND p.kind = :kind
                          AND p.at <= o.placed_at
                        ORDER BY p.at DESC, p.id DESC LIMIT 1), :default_days) AS days
                ) AS lp
                WHERE o.status = 'completed' AND o.affiliate_id IS NOT NULL AND o.chargeable
                  AND o.status_at + make_interval(days => lp.days) <= :now
                  AND NOT EXISTS (
                      SELECT 1 FROM commission.lock_notices AS n
                      WHERE n.store_id = o.store_id AND n.order_id = o.order_id)
                ORDER BY o.status_at, o.store_id, o.order_id
                LIMIT :limit
                """
            ),
            {
                "kind": OpKind.LOCK_PERIOD.value,
                "default_days": DEFAULT_LOCK_DAYS,
                "now": now,
                "limit": limit,
            },
        )
        return [(r[0], r[1]) for r in rows]

    async def mark_announced(self, rows: list[tuple[OrderKey, datetime]], at: datetime) -> None:
        """Record that these orders' locks (key, locks_at) were announced."""
        if rows:
            await self.session.execute(
                insert(m.lock_notices).on_conflict_do_nothing(),
                [
                    {"store_id": s, "order_id": o, "locks_at": lock, "announced_at": at}
                    for (s, o), lock in rows
                ],
            )

    async def holds(self, affiliate_ids: Iterable[str], *, active: bool = True) -> list[Hold]:
        """The affiliates' holds (only the active ones unless ``active`` is False)."""
        ids = sorted(set(affiliate_ids))
        if not ids:
            return []
        h = m.holds
        query = select(h).where(h.c.affiliate_id.in_(ids))
        if active:
            query = query.where(h.c.status == HoldStatus.ACTIVE.value)
        return [hold_of(r) for r in await self.session.execute(query.order_by(h.c.id))]

    async def lock_adjustments(self, store_id: str) -> None:
        """Serialise the store's adjustments until commit (their Idempotency-Keys are the
        store's: two requests with one key never both insert)."""
        await lock_keys(self.session, "adjustment", [store_id])

    async def adjustment_by_key(self, store_id: str, idempotency_key: str) -> Any:
        """The store's adjustment accepted with this Idempotency-Key, if any."""
        a = m.adjustments
        return (
            await self.session.execute(
                select(a).where(a.c.store_id == store_id, a.c.idempotency_key == idempotency_key)
            )
        ).first()

    async def add_adjustment(
        self,
        store_id: str,
        order_id: str,
        adjustment: Adjustment,
        idempotency_key: str,
        actor: str,
    ) -> Any:
        """Append an accepted adjustment (the order's row must be locked: see lock_orders)."""
        a = m.adjustments
        row = await self.session.execute(
            insert(a)
            .values(
                store_id=store_id,
                order_id=order_id,
                seq=adjustment.seq,
                idempotency_key=idempotency_key,
                at=adjustment.at,
                action=adjustment.action.value,
                reason=adjustment.reason.value,
                note=adjustment.note,
                lines=[
                    {"product_id": x.product_id, "amount": str(x.amount)} for x in adjustment.lines
                ],
                actor=actor,
            )
            .returning(a)
        )
        return row.one()

    async def set_summaries(self, rows: list[Summary]) -> None:
        """Store orders' computed commission: ((store, order), chargeable, sales, commission,
        reversed), amounts in minor units. One statement; a summary that did not change is not
        rewritten (a completion changes none: no new row version, no rollup work)."""
        if not rows:
            return
        await self.session.execute(
            text(
                """
                UPDATE commission.orders o
                SET chargeable = s.chargeable, sales_minor = s.sales,
                    commission_minor = s.commission, reversed_minor = s.reversed
                FROM unnest(CAST(:stores AS text[]), CAST(:ids AS text[]),
                    CAST(:chargeable AS boolean[]), CAST(:sales AS bigint[]),
                    CAST(:commission AS bigint[]), CAST(:reversed AS bigint[]))
                    AS s(store, id, chargeable, sales, commission, reversed)
                WHERE o.store_id = s.store AND o.order_id = s.id
                  AND (o.chargeable, o.sales_minor, o.commission_minor, o.reversed_minor)
                      IS DISTINCT FROM (s.chargeable, s.sales, s.commission, s.reversed)
                """
            ),
            {
                "stores": [r[0][0] for r in rows],
                "ids": [r[0][1] for r in rows],
                "chargeable": [r[1] for r in rows],
                "sales": [r[2] for r in rows],
                "commission": [r[3] for r in rows],
                "reversed": [r[4] for r in rows],
            },
        )

    async def set_lines(self, rows: list[dict[str, Any]]) -> None:
        """Upsert order lines (in key order: two workers never deadlock); a line that did not
        change is not rewritten. One statement over array parameters (``unnest``)."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: (r["store_id"], r["order_id"], r["line_no"]))
        await self.session.execute(
            text(_UPSERT_LINES), {c: [r[c] for r in rows] for c in _LINE_COLUMNS}
        )

    async def summaries(self, keys: Iterable[OrderKey]) -> dict[OrderKey, Summary]:
        """The stored summaries of the orders (as :meth:`set_summaries` takes them)."""
        o = m.orders
        rows = await self.session.execute(
            select(
                o.c.store_id,
                o.c.order_id,
                o.c.chargeable,
                o.c.sales_minor,
                o.c.commission_minor,
                o.c.reversed_minor,
            ).where(_of_orders(o, keys), o.c.chargeable.is_not(None))
        )
        return {
            (r.store_id, r.order_id): (
                (r.store_id, r.order_id),
                r.chargeable,
                r.sales_minor,
                r.commission_minor,
                r.reversed_minor,
            )
            for r in rows
        }

    async def unsummarised(self, limit: int) -> list[OrderKey]:
        """Placed orders whose commission or order lines have not been computed yet (stored
        before the settlement rollup or the reports' order lines existed)."""
        o, lines = m.orders, m.order_lines
        no_lines = (
            ~select(lines.c.order_id)
            .where(lines.c.store_id == o.c.store_id, lines.c.order_id == o.c.order_id)
            .exists()
        )
        rows = await self.session.execute(
            select(o.c.store_id, o.c.order_id)
            .where(o.c.placed_at.is_not(None), o.c.chargeable.is_(None) | no_lines)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    async def order_row(self, store_id: str, order_id: str) -> Any:
        o = m.orders
        return (
            await self.session.execute(
                select(o).where(o.c.store_id == store_id, o.c.order_id == order_id)
            )
        ).first()

    async def order_with_facts(
        self, store_id: str, order_id: str
    ) -> tuple[Any, OrderFacts | None] | None:
        """The order's row and its facts (None until its placement is known), read by one
        statement: one snapshot, so that a consumer's commit cannot fall between the two
        (a view never shows, say, no affiliate beside a payable commission). None: no row."""
        o, r, a = m.orders, m.refunds, m.adjustments
        mine = (r.c.store_id == o.c.store_id) & (r.c.order_id == o.c.order_id)

        def refunds_of(column: Any, *, jsonb: bool = False) -> Any:
            """The column of the order's refunds, as an array in refund id order."""
            ordered = aggregate_order_by(column, r.c.refund_id)
            agg = func.jsonb_agg(ordered, type_=JSONB) if jsonb else func.array_agg(ordered)
            return select(agg).where(mine).scalar_subquery()

        row = (
            await self.session.execute(
                select(
                    o,
                    refunds_of(r.c.refund_id).label("refund_ids"),
                    refunds_of(r.c.occurred_at).label("refund_ats"),
                    refunds_of(r.c["items"], jsonb=True).label("refund_items"),
                    refunds_of(r.c.reported_at).label("refund_reported"),
                    select(
                        func.jsonb_agg(
                            aggregate_order_by(func.to_jsonb(a.table_valued()), a.c.seq),
                            type_=JSONB,
                        )
                    )
                    .where(a.c.store_id == o.c.store_id, a.c.order_id == o.c.order_id)
                    .scalar_subquery()
                    .label("adjustments"),
                ).where(o.c.store_id == store_id, o.c.order_id == order_id)
            )
        ).first()
        if row is None:
            return None
        if row.placed_at is None:
            return row, None
        refunds = [
            _refund(i, at, items, reported)
            for i, at, items, reported in zip(
                row.refund_ids or [],
                row.refund_ats or [],
                row.refund_items or [],
                row.refund_reported or [],
                strict=True,
            )
        ]
        return row, _facts(row, refunds, [adjustment_of(x) for x in row.adjustments or []])

    async def order_ids(
        self,
        *,
        store_id: str | None = None,
        affiliate_id: str | None = None,
        placed_from: datetime | None = None,
        placed_to: datetime | None = None,
    ) -> list[OrderKey]:
        """Keys of placed orders, optionally of one store or affiliate, placed in [from, to)."""
        o = m.orders
        query = select(o.c.store_id, o.c.order_id).where(o.c.placed_at.is_not(None))
        if store_id is not None:
            query = query.where(o.c.store_id == store_id)
        if affiliate_id is not None:
            query = query.where(o.c.affiliate_id == affiliate_id)
        if placed_from is not None:
            query = query.where(o.c.placed_at >= placed_from)
        if placed_to is not None:
            query = query.where(o.c.placed_at < placed_to)
        return [(r[0], r[1]) for r in await self.session.execute(query)]

    async def affiliate_order_ids(
        self,
        affiliate_id: str,
        *,
        start: datetime,
        end: datetime,
        status: str | None,
        after: OrderKey | None,
        limit: int,
    ) -> list[OrderKey]:
        """The affiliate's orders placed in [start, end), by (store, order) after ``after``."""
        o = m.orders
        query = select(o.c.store_id, o.c.order_id).where(
            o.c.affiliate_id == affiliate_id,
            o.c.placed_at >= start,
            o.c.placed_at < end,
        )
        if after is not None:
            query = query.where(tuple_(o.c.store_id, o.c.order_id) > tuple_(*after))
        if status is not None:
            query = query.where(o.c.status == status)
        rows = await self.session.execute(query.order_by(o.c.store_id, o.c.order_id).limit(limit))
        return [(r[0], r[1]) for r in rows]


#: what each order contributes to a settlement (``settlement_days``, ``settlement_hours``):
#: chargeable orders, completed (on the day and hour of ``status_at``) or still placed (of
#: ``placed_at``), to their store's and their affiliate's keys. The migrations' trigger writes
#: the same.
_SETTLEMENT_CONTRIBUTIONS = """
    SELECT s.subject, s.subject_id, o.currency, o.status = 'completed' AS done,
        (CASE WHEN o.status = 'completed' THEN o.status_at ELSE o.placed_at END
            AT TIME ZONE 'UTC')::date AS day,
        date_trunc('hour', CASE WHEN o.status = 'completed' THEN o.status_at ELSE o.placed_at END,
            'UTC') AS hour,
        1 AS orders, coalesce(o.sales_minor, 0) AS sales,
        coalesce(o.commission_minor, 0) AS commission,
        coalesce(o.reversed_minor, 0) AS reversed
    FROM commission.orders AS o
    CROSS JOIN LATERAL (VALUES ('store', o.store_id), ('affiliate', o.affiliate_id))
        AS s(subject, subject_id)
    WHERE o.chargeable AND s.subject_id IS NOT NULL
      AND ((o.status = 'completed' AND o.status_at IS NOT NULL)
           OR (o.status = 'placed' AND o.placed_at IS NOT NULL))
"""
_STALE_SETTLEMENT_DAYS = f"""
SELECT subject, subject_id, currency, day, done
FROM (
    SELECT subject, subject_id, currency, done, day, orders, sales, commission, reversed
    FROM ({_SETTLEMENT_CONTRIBUTIONS}) AS want
    UNION ALL
    SELECT subject, subject_id, currency, done, day, -orders, -sales_minor, -commission_minor,
        -reversed_minor
    FROM commission.settlement_days
) AS diff
GROUP BY subject, subject_id, currency, day, done
HAVING sum(orders) <> 0 OR sum(sales) <> 0 OR sum(commission) <> 0 OR sum(reversed) <> 0
ORDER BY subject, subject_id, currency, day, done
"""
_STALE_STATEMENT_DAYS = """
SELECT account, currency, kind, day
FROM (
    SELECT p.account, p.currency, t.kind, (t.occurred_at AT TIME ZONE 'UTC')::date AS day,
        1 AS postings, p.amount_minor
    FROM commission.ledger_postings AS p
    JOIN commission.ledger_transactions AS t ON t.id = p.txn_id
    WHERE p.account LIKE 'store:%'
    UNION ALL
    SELECT account, currency, kind, day, -postings, -amount_minor
    FROM commission.statement_days
) AS diff
GROUP BY account, currency, kind, day
HAVING sum(postings) <> 0 OR sum(amount_minor) <> 0
ORDER BY account, currency, kind, day
"""
_STALE_SETTLEMENT_HOURS = f"""
SELECT subject, subject_id, currency, hour, done
FROM (
    SELECT subject, subject_id, currency, done, hour, orders, sales, commission, reversed
    FROM ({_SETTLEMENT_CONTRIBUTIONS}) AS want
    UNION ALL
    SELECT subject, subject_id, currency, done, hour, -orders, -sales_minor, -commission_minor,
        -reversed_minor
    FROM commission.settlement_hours
) AS diff
GROUP BY subject, subject_id, currency, hour, done
HAVING sum(orders) <> 0 OR sum(sales) <> 0 OR sum(commission) <> 0 OR sum(reversed) <> 0
ORDER BY subject, subject_id, currency, hour, done
"""


@dataclass(frozen=True, slots=True)
class Rollup:
    """A rollup table as the compaction sees it: the columns a fold groups by (its ``key``,
    which the fresh rows' partial index holds, then the rest) and the columns it sums."""

    table: str
    key: tuple[str, ...]
    rest: tuple[str, ...]
    sums: tuple[str, ...]

    def fold_sql(self, after: bool) -> str:
        """One batch: up to ``:batch`` keys that have a fresh row (after the key ``:k0``,
        ``:k1``… when ``after``: a run goes through the keys in order, never re-reading the
        ones it folded); every row of those keys deleted (those in this statement's snapshot
        only) and their sums inserted as one folded row per group (none for a group summing
        to nothing). Returns (keys, rows deleted, rows inserted, the last key's columns)."""
        key, group = ", ".join(self.key), ", ".join((*self.key, *self.rest))
        join = " AND ".join(f"r.{c} = k.{c}" for c in self.key)
        nonzero = " OR ".join(f"sum({c}) <> 0" for c in self.sums)
        since = ""
        if after:
            since = f"AND ({key}) > ({', '.join(f':k{n}' for n in range(len(self.key)))})"
        last = ", ".join(f"{c} DESC" for c in self.key)
        return f"""
WITH keys AS MATERIALIZED (
    SELECT DISTINCT {key} FROM commission.{self.table} WHERE NOT folded {since}
    ORDER BY {key} LIMIT :batch
), gone AS (
    -- by row address, each key's rows found through the key's index (a join of the keys
    -- with the table was planned as a scan of the whole table per batch; OFFSET 0 keeps
    -- the lateral subquery a per-key index scan)
    DELETE FROM commission.{self.table} AS r WHERE r.ctid = ANY(ARRAY(
        SELECT x.ctid FROM keys AS k
        CROSS JOIN LATERAL (
            SELECT r.ctid FROM commission.{self.table} AS r WHERE {join} OFFSET 0
        ) AS x
    ))
    RETURNING r.*
), folded AS (
    INSERT INTO commission.{self.table} ({group}, {", ".join(self.sums)}, folded)
    SELECT {group}, {", ".join(f"sum({c})" for c in self.sums)}, true
    FROM gone
    GROUP BY {group}
    HAVING {nonzero}
    RETURNING 1
)
SELECT (SELECT count(*) FROM keys), (SELECT count(*) FROM gone), (SELECT count(*) FROM folded),
    last.*
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT {key} FROM keys ORDER BY {last} LIMIT 1) AS last ON true
"""


_SETTLEMENT_SUMS = ("orders", "sales_minor", "commission_minor", "reversed_minor")
#: the rollups a compaction folds
ROLLUPS = (
    Rollup(
        "settlement_days", ("subject", "subject_id", "day"), ("currency", "done"), _SETTLEMENT_SUMS
    ),
    Rollup(
        "settlement_hours",
        ("subject", "subject_id", "hour"),
        ("currency", "done"),
        _SETTLEMENT_SUMS,
    ),
    Rollup(
        "statement_days", ("account", "day"), ("currency", "kind"), ("postings", "amount_minor")
    ),
)


#: new transactions (a key already posted: none, and no postings), then their postings; ids
#: follow the entries' order. ``DISTINCT ON``: a key twice in one call is posted once, as its
#: first entry, as one insert after another would.
_POST_NEW = """
WITH entries AS (
    SELECT DISTINCT ON (e.key) e.*
    FROM unnest(CAST(:keys AS text[]), CAST(:kinds AS text[]), CAST(:orders AS text[]),
        CAST(:stores AS text[]), CAST(:affiliates AS text[]), CAST(:currencies AS text[]),
        CAST(:reasons AS text[]))
        WITH ORDINALITY AS e(key, kind, order_id, store_id, affiliate_id, currency, reason, n)
    ORDER BY e.key, e.n
), txns AS (
    INSERT INTO commission.ledger_transactions
        (key, kind, order_id, store_id, affiliate_id, currency, occurred_at, reason)
    SELECT key, kind, order_id, store_id, affiliate_id, currency, CAST(:at AS timestamptz),
        reason
    FROM entries ORDER BY n
    ON CONFLICT (key) DO NOTHING
    RETURNING id, key, currency
), postings AS (
    INSERT INTO commission.ledger_postings (txn_id, account, currency, amount_minor)
    SELECT t.id, p.account, coalesce(p.currency, t.currency), p.amount
    FROM unnest(CAST(:p_entries AS bigint[]), CAST(:p_accounts AS text[]),
        CAST(:p_currencies AS text[]), CAST(:p_amounts AS numeric[]))
        WITH ORDINALITY AS p(entry, account, currency, amount, n)
    JOIN entries e ON e.n = p.entry
    JOIN txns t ON t.key = e.key
    ORDER BY p.n
)
SELECT key FROM txns
"""


class LedgerRepository:
    """The ledger's postings: written once per idempotency key, never updated."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def posted(self, keys: Iterable[OrderKey]) -> dict[OrderKey, dict[str, Decimal]]:
        """Per order: idempotency key → amount credited to the affiliate."""
        keys = set(keys)
        out: dict[OrderKey, dict[str, Decimal]] = {k: {} for k in keys}
        if not keys:
            return out
        t, p = m.ledger_transactions, m.ledger_postings
        rows = await self.session.execute(
            select(
                t.c.store_id,
                t.c.order_id,
                t.c.key,
                t.c.currency,
                func.sum(p.c.amount_minor).label("minor"),
            )
            .join(p, p.c.txn_id == t.c.id)
            .where(_of_orders(t, keys), p.c.account.like(AFFILIATE_ACCOUNTS))
            .group_by(t.c.store_id, t.c.order_id, t.c.key, t.c.currency)
        )
        for r in rows:
            out[(r.store_id, r.order_id)][r.key] = from_minor(int(r.minor), r.currency)
        return out

    async def post(
        self, txns: list[LedgerTxn], store_id: str | None, affiliate_id: str | None, at: datetime
    ) -> int:
        """Insert transactions whose key is new; returns how many were posted."""
        return await self.post_many([(t, store_id, affiliate_id) for t in txns], at)

    async def post_many(
        self, entries: Sequence[tuple[LedgerTxn, str | None, str | None]], at: datetime
    ) -> int:
        """Insert (transaction, store, affiliate) entries whose key is new, two statements for
        the lot; returns how many were posted. A key already posted changes nothing."""
        return len(await self.post_new(entries, at))

    async def post_new(
        self, entries: Sequence[tuple[LedgerTxn, str | None, str | None]], at: datetime
    ) -> set[str]:
        """:meth:`post_many`, returning the keys posted now (those new). One statement over
        array parameters: the transactions whose key is new, in the entries' order, and their
        postings, in the same order (the statement rollup's trigger fires once)."""
        if not entries:
            return set()
        postings = [(n, txn, p) for n, (txn, _, _) in enumerate(entries, 1) for p in txn.postings]
        rows = await self.session.execute(
            text(_POST_NEW),
            {
                "keys": [txn.key for txn, _, _ in entries],
                "kinds": [txn.kind.value for txn, _, _ in entries],
                "orders": [txn.order_id for txn, _, _ in entries],
                "stores": [store_id for _, store_id, _ in entries],
                "affiliates": [affiliate_id for _, _, affiliate_id in entries],
                "currencies": [txn.currency for txn, _, _ in entries],
                "reasons": [txn.reason for txn, _, _ in entries],
                "at": at,
                "p_entries": [n for n, _, _ in postings],
                "p_accounts": [p.account for _, _, p in postings],
                "p_currencies": [p.currency for _, _, p in postings],
                "p_amounts": [
                    Decimal(to_minor(p.amount, p.currency or txn.currency))
                    for _, txn, p in postings
                ],
            },
        )
        posted = {key for (key,) in rows}
        first: dict[str, LedgerTxn] = {}
        for txn, _, _ in entries:
            first.setdefault(txn.key, txn)
        count_on_commit(self.session, LEDGER_POSTINGS, sum(len(first[k].postings) for k in posted))
        return posted

    async def account_balances(self) -> dict[tuple[str, str], int]:
        """Per (account, currency): the sum of its postings, in minor units."""
        p = m.ledger_postings
        rows = await self.session.execute(
            select(p.c.account, p.c.currency, func.sum(p.c.amount_minor)).group_by(
                p.c.account, p.c.currency
            )
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def unbalanced_transactions(self) -> list[Any]:
        """(transaction id, currency, sum) of every transaction whose postings in a currency do
        not sum to zero (a payout's conversion legs balance per currency, not across)."""
        p = m.ledger_postings
        rows = await self.session.execute(
            select(p.c.txn_id, p.c.currency, func.sum(p.c.amount_minor))
            .group_by(p.c.txn_id, p.c.currency)
            .having(func.sum(p.c.amount_minor) != 0)
        )
        return list(rows)

    async def stale_rollups(self) -> list[str]:
        """The keys of the rollups (``settlement_days``, ``settlement_hours``,
        ``statement_days``) whose sum
        is not what the orders and the postings sum to now (full scans: the ledger's check)."""
        rows = await self.session.execute(text(_STALE_SETTLEMENT_DAYS))
        out = [
            f"settlement_days {r.subject}:{r.subject_id} {r.currency} {r.day} "
            f"{'done' if r.done else 'open'}"
            for r in rows
        ]
        rows = await self.session.execute(text(_STALE_STATEMENT_DAYS))
        out += [f"statement_days {r.account} {r.currency} {r.kind} {r.day}" for r in rows]
        rows = await self.session.execute(text(_STALE_SETTLEMENT_HOURS))
        out += [
            f"settlement_hours {r.subject}:{r.subject_id} {r.currency} {r.hour.isoformat()} "
            f"{'done' if r.done else 'open'}"
            for r in rows
        ]
        return out

    async def fold_rollup(
        self, rollup: Rollup, batch: int, after: tuple[Any, ...] | None = None
    ) -> tuple[int, int, tuple[Any, ...] | None]:
        """Fold the rows of up to ``batch`` keys of ``rollup`` that have a fresh row (those
        after the key ``after``, in key order) into one folded row per group; returns (keys
        folded, rows removed, the last key folded). Safe beside writers and beside another
        fold: only rows in this statement's snapshot are deleted (a row a concurrent fold
        deleted first is skipped), and their sums are inserted in the same statement, so
        every snapshot sums to the same. Idempotent: a key with no fresh row is never read."""
        params: dict[str, Any] = {"batch": batch}
        params |= {f"k{n}": v for n, v in enumerate(after or ())}
        result = await self.session.execute(text(rollup.fold_sql(after is not None)), params)
        keys, deleted, inserted, *last = result.one()
        return int(keys), int(deleted) - int(inserted), tuple(last) if keys else None

    async def fresh_rollup_rows(self) -> int:
        """How many rollup rows no compaction has folded yet (the partial indexes' rows)."""
        counts = " + ".join(
            f"(SELECT count(*) FROM commission.{r.table} WHERE NOT folded)" for r in ROLLUPS
        )
        return int((await self.session.execute(text(f"SELECT {counts}"))).scalar_one())
