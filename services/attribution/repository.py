"""All SQL of the attribution service. Methods flush; the batch owner commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.attribution import models as m
from services.attribution.core import Click as CoreClick
from services.attribution.core import CouponHistory, CouponVersion, Policies, Windows
from shared.clickcap_store import ClickCapStore
from shared.coupons import CouponPolicy
from shared.db import pairs_in
from shared.events import Click, OrderPlaced, encode

#: what each visitor and address may store per link per day, and the count of the rest
CAPS = ClickCapStore("attribution")

#: An order is named by its store and its number: two stores may use the same order number.
OrderKey = tuple[str, str]  # (store_id, order_id)


@dataclass(frozen=True, slots=True)
class StoredOrder:
    order_id: str
    store_id: str
    visitor_id: str
    placed_at: datetime
    order_event: dict[str, Any]
    revision: int
    click_id: str | None
    open_until: datetime | None
    affiliate_id: str | None = None
    #: the code that attributed the current decision (rule ``coupon``)
    coupon_code: str | None = None

    @property
    def key(self) -> OrderKey:
        return (self.store_id, self.order_id)

    @property
    def entered_code(self) -> str | None:
        """The coupon code the buyer entered, as sent."""
        code = self.order_event.get("coupon_code")
        return code if isinstance(code, str) else None


@dataclass(frozen=True, slots=True)
class ClickQuery:
    """What one order's decision reads: its window ``[start, end]`` on its store (the
    winner) and ``[since, until]`` on any store (the explanation's sample)."""

    key: OrderKey
    visitor_id: str
    start: datetime
    end: datetime
    since: datetime
    until: datetime

    @property
    def store_id(self) -> str:
        return self.key[0]


#: A decision to record: (store, order), revision, winning click id, affiliate, coupon code.
DecisionRow = tuple[OrderKey, int, str | None, str | None, str | None]


def _columns(items: Sequence[object], attributes: str) -> dict[str, list[Any]]:
    """``items`` as arrays (for ``unnest``), one per attribute named (space-separated), each
    the parameter of its name."""
    return {a: [getattr(i, a) for i in items] for a in attributes.split()}


class AttributionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_clicks(
        self, clicks: list[tuple[Click, bytes]], reach: timedelta, cap: int
    ) -> list[StoredOrder]:
        """Insert the clicks not yet known (idempotent by click id), at most ``cap`` per
        visitor (and per client address) per link per UTC day (:mod:`shared.clickcap`: the
        rest are counted in ``click_caps``, not stored), and return the decided orders the
        new ones fall in the window of: same store and visitor, placed within ``reach`` after
        the click.

        One statement for the cap and one for the clicks, each over the batch's columns as
        arrays (``unnest``): PostgreSQL reads them in binary, no text to parse."""
        unique = {c.click_id: c for c, _ in clicks}
        if not unique:
            return []
        known = set(
            (
                await self.session.execute(
                    text("SELECT click_id FROM attribution.clicks WHERE click_id = ANY(:ids)"),
                    {"ids": list(unique)},
                )
            ).scalars()
        )
        new = [c for i, c in unique.items() if i not in known]
        admitted = await CAPS.admit_all(self.session, new, cap)
        if not admitted:
            return []
        rows = await self.session.execute(
            text(
                """
                WITH new AS (
                    INSERT INTO attribution.clicks (click_id, store_id, visitor_id,
                        affiliate_id, occurred_at, received_at, suspicious, link_code,
                        product_id, sub_id)
                    SELECT * FROM unnest(CAST(:event_id AS text[]), CAST(:store_id AS text[]),
                        CAST(:visitor_id AS text[]), CAST(:affiliate_id AS text[]),
                        CAST(:occurred_at AS timestamptz[]), CAST(:received_at AS timestamptz[]),
                        CAST(:suspicious AS boolean[]), CAST(:link_code AS text[]),
                        CAST(:product_id AS text[]), CAST(:sub_id AS text[]))
                    ON CONFLICT (click_id, occurred_at) DO NOTHING
                    RETURNING store_id, visitor_id, occurred_at
                )
                SELECT DISTINCT ON (o.store_id, o.order_id) o.*
                FROM new c
                JOIN attribution.orders o
                  ON o.store_id = c.store_id AND o.visitor_id = c.visitor_id
                 AND o.placed_at >= c.occurred_at
                 AND o.placed_at <= c.occurred_at + CAST(:reach AS interval)
                WHERE o.revision >= 0  -- decided (a held order is decided when it is released)
                """
            ),
            {
                **_columns(
                    admitted,
                    "event_id store_id visitor_id affiliate_id occurred_at received_at "
                    "suspicious link_code product_id sub_id",
                ),
                "reach": reach,
            },
        )
        return [self._order(r) for r in rows]

    async def insert_statuses(self, statuses: Iterable[tuple[OrderKey, str, datetime]]) -> None:
        """Record each order's first terminal status (later ones are ignored)."""
        values = [
            {"store_id": store, "order_id": order, "status": s, "occurred_at": at}
            for (store, order), s, at in statuses
        ]
        if values:
            stmt = insert(m.order_status).on_conflict_do_nothing(
                index_elements=["store_id", "order_id"]
            )
            await self.session.execute(stmt, values)

    async def frozen(self, keys: Iterable[OrderKey]) -> set[OrderKey]:
        keys = set(keys)
        if not keys:
            return set()
        s = m.order_status
        rows = await self.session.execute(
            select(s.c.store_id, s.c.order_id).where(pairs_in(s.c.store_id, s.c.order_id, keys))
        )
        return {(r[0], r[1]) for r in rows}

    async def new_orders(
        self, orders: list[tuple[OrderPlaced, tuple[int, int] | None]], now: datetime
    ) -> set[OrderKey]:
        """Insert orders not yet known, undecided (revision -1), each with the hold it waits
        for ((clicks partition, offset) or None); returns the keys that were new. One statement
        over column arrays."""
        unique = list({(o.store_id, o.order_id): (o, hold) for o, hold in orders}.values())
        if not unique:
            return set()
        result = await self.session.execute(
            text(
                """
                INSERT INTO attribution.orders (order_id, store_id, visitor_id, placed_at,
                    order_event, revision, decided_at, hold_partition, hold_offset, held_since)
                SELECT o.id, o.store, o.visitor, o.at, CAST(o.event AS jsonb), -1,
                    CAST(:now AS timestamptz), o.part, o.off,
                    CASE WHEN o.part IS NULL THEN NULL ELSE CAST(:now AS timestamptz) END
                FROM unnest(CAST(:ids AS text[]), CAST(:stores AS text[]),
                    CAST(:visitors AS text[]), CAST(:ats AS timestamptz[]),
                    CAST(:events AS text[]), CAST(:parts AS integer[]),
                    CAST(:offs AS bigint[])) AS o(id, store, visitor, at, event, part, off)
                ON CONFLICT (store_id, order_id) DO NOTHING
                RETURNING store_id, order_id
                """
            ),
            {
                "ids": [o.order_id for o, _ in unique],
                "stores": [o.store_id for o, _ in unique],
                "visitors": [o.visitor_id for o, _ in unique],
                "ats": [o.occurred_at for o, _ in unique],
                "events": [encode(o).decode() for o, _ in unique],
                "parts": [hold[0] if hold else None for _, hold in unique],
                "offs": [hold[1] if hold else None for _, hold in unique],
                "now": now,
            },
        )
        return {(r[0], r[1]) for r in result}

    async def held_summary(self) -> tuple[dict[int, int], datetime | None]:
        """Of the held orders: the lowest offset waited for per clicks partition, and the
        oldest hold."""
        rows = await self.session.execute(
            text(
                """
                SELECT hold_partition, min(hold_offset) AS off, min(held_since) AS since
                FROM attribution.orders
                WHERE revision = -1 AND hold_partition IS NOT NULL
                GROUP BY hold_partition
                """
            )
        )
        lowest: dict[int, int] = {}
        oldest: datetime | None = None
        for r in rows:
            lowest[r.hold_partition] = r.off
            oldest = r.since if oldest is None else min(oldest, r.since)
        return lowest, oldest

    async def release_held(
        self, consumed: dict[int, int], held_before: datetime | None, limit: int
    ) -> list[StoredOrder]:
        """At most ``limit`` held orders whose clicks partition is read up to their offset
        (``consumed``: partition → next offset to read), or held since before ``held_before``;
        the first by hold offset, then the longest held. Rows another worker is deciding are
        skipped (it will publish them). Orders stay held until decided: the caller decides
        these before it asks for more."""
        found: dict[OrderKey, StoredOrder] = {}
        if consumed:
            rows = await self.session.execute(
                text(
                    """
                    SELECT o.* FROM attribution.orders o
                    JOIN unnest(CAST(:parts AS integer[]), CAST(:offs AS bigint[]))
                      AS p(part, off)
                      ON o.hold_partition = p.part AND o.hold_offset <= p.off
                    WHERE o.revision = -1
                    ORDER BY o.hold_partition, o.hold_offset
                    LIMIT :limit
                    FOR UPDATE OF o SKIP LOCKED
                    """
                ),
                {"parts": list(consumed), "offs": list(consumed.values()), "limit": limit},
            )
            found.update(((r.store_id, r.order_id), self._order(r)) for r in rows)
        if held_before is not None and len(found) < limit:
            rows = await self.session.execute(
                text(
                    """
                    SELECT o.* FROM attribution.orders o
                    WHERE o.revision = -1 AND o.held_since < CAST(:before AS timestamptz)
                    ORDER BY o.held_since
                    LIMIT :limit
                    FOR UPDATE SKIP LOCKED
                    """
                ),
                {"before": held_before, "limit": limit - len(found)},
            )
            found.update(((r.store_id, r.order_id), self._order(r)) for r in rows)
        return list(found.values())

    async def orders_by_key(self, keys: Iterable[OrderKey]) -> list[StoredOrder]:
        keys = set(keys)
        if not keys:
            return []
        o = m.orders
        rows = await self.session.execute(
            select(o).where(pairs_in(o.c.store_id, o.c.order_id, keys))
        )
        return [self._order(r) for r in rows]

    async def decision_clicks(
        self, wanted: list[ClickQuery], sample: int
    ) -> dict[OrderKey, list[CoreClick]]:
        """For each order asked for, what can decide and explain it and nothing more, latest
        first: its latest eligible click (its store, its visitor, not suspicious, in its
        window ``[start, end]``) and its visitor's ``sample`` latest clicks on any store in
        ``[since, until]``: at most ``sample + 1`` rows an order whatever the visitor clicked
        (the SQL form of :func:`~services.attribution.core.candidates`). Both reads walk an
        index backwards and stop: ``ix_clicks_decision`` (visitor, store, time, id; eligible
        clicks only) for the winner, ``ix_clicks_visitor_time_id`` for the sample."""
        if not wanted:
            return {}
        rows = await self.session.execute(
            text(
                """
                SELECT w.n, c.*  -- the columns of a core click, in its order
                FROM unnest(CAST(:store_id AS text[]), CAST(:visitor_id AS text[]),
                    CAST(:start AS timestamptz[]), CAST(:end AS timestamptz[]),
                    CAST(:since AS timestamptz[]), CAST(:until AS timestamptz[]))
                    WITH ORDINALITY AS w(store_id, visitor_id, start_at, end_at, since, until, n)
                CROSS JOIN LATERAL (
                    (SELECT e.click_id, e.store_id, e.visitor_id, e.affiliate_id, e.occurred_at,
                        e.suspicious, e.link_code, e.product_id, e.sub_id
                     FROM attribution.clicks e
                     WHERE e.visitor_id = w.visitor_id AND e.store_id = w.store_id
                       AND NOT e.suspicious
                       AND e.occurred_at >= w.start_at AND e.occurred_at <= w.end_at
                     ORDER BY e.occurred_at DESC, e.click_id DESC
                     LIMIT 1)
                    UNION
                    (SELECT s.click_id, s.store_id, s.visitor_id, s.affiliate_id, s.occurred_at,
                        s.suspicious, s.link_code, s.product_id, s.sub_id
                     FROM attribution.clicks s
                     WHERE s.visitor_id = w.visitor_id
                       AND s.occurred_at >= w.since AND s.occurred_at <= w.until
                     ORDER BY s.occurred_at DESC, s.click_id DESC
                     LIMIT :sample)
                ) c
                ORDER BY w.n, c.occurred_at DESC, c.click_id DESC
                """
            ),
            {
                **_columns(wanted, "store_id visitor_id start end since until"),
                "sample": sample,
            },
        )
        out: dict[OrderKey, list[CoreClick]] = {q.key: [] for q in wanted}
        lists = [out[q.key] for q in wanted]
        for n, *fields in rows:  # positional: a row's attributes by name cost more
            lists[n - 1].append(CoreClick(*fields))
        return out

    async def set_decisions(
        self,
        decisions: list[DecisionRow],
        at: datetime,
        grace: timedelta,
    ) -> None:
        """Record new decisions ((store, order), revision, winning click id, affiliate, coupon
        code): one statement. A first decision opens the order to late clicks until
        ``at + grace``."""
        if not decisions:
            return
        await self.session.execute(
            text(
                """
                UPDATE attribution.orders o
                SET revision = d.rev, click_id = d.click, affiliate_id = d.aff,
                    coupon_code = d.code, decided_at = CAST(:at AS timestamptz),
                    open_until = CASE WHEN o.revision < 0 THEN CAST(:open_until AS timestamptz)
                                      ELSE o.open_until END
                FROM unnest(CAST(:stores AS text[]), CAST(:ids AS text[]),
                    CAST(:revs AS integer[]), CAST(:clicks AS text[]), CAST(:affs AS text[]),
                    CAST(:codes AS text[]))
                    AS d(store, id, rev, click, aff, code)
                WHERE o.store_id = d.store AND o.order_id = d.id
                """
            ),
            {
                "stores": [d[0][0] for d in decisions],
                "ids": [d[0][1] for d in decisions],
                "revs": [d[1] for d in decisions],
                "clicks": [d[2] for d in decisions],
                "affs": [d[3] for d in decisions],
                "codes": [d[4] for d in decisions],
                "at": at,
                "open_until": at + grace,
            },
        )

    async def windows(self, store_ids: Iterable[str], default: timedelta) -> dict[str, Windows]:
        """Each store's window history (stores without one get just the default)."""
        ids = sorted(set(store_ids))
        out = {s: Windows(default) for s in ids}
        if not ids:
            return out
        w = m.store_windows
        rows = await self.session.execute(
            select(w).where(w.c.store_id.in_(ids)).order_by(w.c.store_id, w.c.effective_at)
        )
        changes: dict[str, list[tuple[datetime, timedelta | None]]] = {}
        for r in rows:
            days = timedelta(days=r.days) if r.days is not None else None
            changes.setdefault(r.store_id, []).append((r.effective_at, days))
        for store_id, history in changes.items():
            out[store_id] = Windows(default, tuple(history))
        return out

    async def directory_versions(self, keys: Iterable[str]) -> dict[str, int]:
        """The entry version held for each directory key asked for that has one."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        t = m.directory_versions
        rows = await self.session.execute(select(t.c.key, t.c.version).where(t.c.key.in_(wanted)))
        return {r.key: int(r.version) for r in rows}

    async def hold_directory_versions(self, held: dict[str, int]) -> None:
        """Record the versions now held (never lowering one: the higher of the two stays)."""
        if not held:
            return
        t = m.directory_versions
        stmt = insert(t).values([{"key": k, "version": v} for k, v in sorted(held.items())])
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"version": func.greatest(t.c.version, stmt.excluded.version)},
        )
        await self.session.execute(stmt)

    async def add_window(self, store_id: str, effective_at: datetime, days: int | None) -> None:
        stmt = insert(m.store_windows).on_conflict_do_nothing(
            index_elements=["store_id", "effective_at"]
        )
        await self.session.execute(
            stmt, {"store_id": store_id, "effective_at": effective_at, "days": days}
        )

    async def open_orders_of_store(
        self, store_id: str, placed_since: datetime, now: datetime, code: str | None = None
    ) -> list[StoredOrder]:
        """The store's orders placed at or after ``placed_since`` still open to re-decision
        (``code``: only those whose buyer entered that coupon code, any case)."""
        o = m.orders
        query = select(o).where(
            o.c.store_id == store_id,
            o.c.placed_at >= placed_since,
            o.c.open_until >= now,
        )
        if code is not None:
            query = query.where(func.upper(o.c.order_event["coupon_code"].astext) == code)
        rows = await self.session.execute(query)
        return [self._order(r) for r in rows]

    async def policies(self, store_ids: Iterable[str]) -> dict[str, Policies]:
        """Each store's coupon-policy history (stores without one: ``off`` throughout)."""
        ids = sorted(set(store_ids))
        out = {s: Policies() for s in ids}
        if not ids:
            return out
        p = m.store_coupon_policies
        rows = await self.session.execute(
            select(p).where(p.c.store_id.in_(ids)).order_by(p.c.store_id, p.c.effective_at)
        )
        changes: dict[str, list[tuple[datetime, CouponPolicy]]] = {}
        for r in rows:
            changes.setdefault(r.store_id, []).append((r.effective_at, CouponPolicy(r.policy)))
        for store_id, history in changes.items():
            out[store_id] = Policies(tuple(history))
        return out

    async def add_policy(self, store_id: str, effective_at: datetime, policy: str) -> None:
        stmt = insert(m.store_coupon_policies).on_conflict_do_nothing(
            index_elements=["store_id", "effective_at"]
        )
        await self.session.execute(
            stmt, {"store_id": store_id, "effective_at": effective_at, "policy": policy}
        )

    async def coupons(
        self, codes: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], CouponHistory]:
        """The registration history of each (store, code) asked for that has one."""
        pairs = set(codes)
        if not pairs:
            return {}
        c = m.coupons
        rows = await self.session.execute(
            select(c)
            .where(pairs_in(c.c.store_id, c.c.code, pairs))
            .order_by(c.c.store_id, c.c.code, c.c.effective_at)
        )
        versions: dict[tuple[str, str], list[CouponVersion]] = {}
        for r in rows:
            versions.setdefault((r.store_id, r.code), []).append(
                CouponVersion(r.effective_at, r.affiliate_id, r.valid_from, r.valid_to)
            )
        return {k: CouponHistory(k[1], tuple(v)) for k, v in versions.items()}

    async def add_coupon(self, store_id: str, code: str, version: CouponVersion) -> bool:
        """Record a registration; False when one is already recorded at its time."""
        stmt = (
            insert(m.coupons)
            .values(
                store_id=store_id,
                code=code,
                effective_at=version.effective_at,
                affiliate_id=version.affiliate_id,
                valid_from=version.valid_from,
                valid_to=version.valid_to,
            )
            .on_conflict_do_nothing(index_elements=["store_id", "code", "effective_at"])
            .returning(m.coupons.c.code)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def expire_clicks(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` clicks that happened before ``before``; returns how many."""
        result = await self.session.execute(
            text(
                """
                DELETE FROM attribution.clicks WHERE click_id IN (
                    SELECT click_id FROM attribution.clicks WHERE occurred_at < :before LIMIT :n
                )
                """
            ),
            {"before": before, "n": limit},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def forget_click_caps(self, before: date, limit: int) -> int:
        """Delete up to ``limit`` click-cap counts of days before ``before``."""
        return await CAPS.forget(self.session, before, limit)

    async def widest_window_days(self) -> int | None:
        """The longest window any store has set (None when none has)."""
        return await self.session.scalar(select(func.max(m.store_windows.c.days)))

    @staticmethod
    def _order(r: Any) -> StoredOrder:
        return StoredOrder(
            r.order_id,
            r.store_id,
            r.visitor_id,
            r.placed_at,
            r.order_event,
            r.revision,
            r.click_id,
            r.open_until,
            r.affiliate_id,
            r.coupon_code,
        )


class PrivacyRepository:
    """All SQL of a visitor's erasure in attribution's tables (docs/privacy.md)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def erase_visitor(self, visitor_id: str, pseudonym: str) -> dict[str, int]:
        """Delete the visitor's clicks and click-cap counts; put ``pseudonym`` for the id in
        its orders (their decisions, affiliates and amounts untouched) and in the decisions
        still in the outbox. Rows changed per table; flushed, never committed."""
        counts: dict[str, int] = {}
        statements = {
            "clicks": (
                "DELETE FROM attribution.clicks WHERE visitor_id = :visitor",
                {},
            ),
            "click_caps": (
                "DELETE FROM attribution.click_caps WHERE subject = :subject",
                {"subject": f"visitor:{visitor_id}"},
            ),
            "orders": (
                "UPDATE attribution.orders SET visitor_id = CAST(:alias AS text), "
                "order_event = jsonb_set(order_event, '{visitor_id}', "
                "to_jsonb(CAST(:alias AS text))) "
                "WHERE visitor_id = :visitor",
                {"alias": pseudonym},
            ),
            # an id is an identifier (no quote, no backslash): its JSON string is exactly
            # '"<id>"' in the payload's UTF-8, replaced whole
            "outbox": (
                "UPDATE attribution.outbox SET payload = convert_to(replace("
                "convert_from(payload, 'UTF8'), :old, :new), 'UTF8') "
                "WHERE position(convert_to(:old, 'UTF8') IN payload) > 0",
                {"old": f'"{visitor_id}"', "new": f'"{pseudonym}"'},
            ),
        }
        for name, (sql, params) in statements.items():
            result = await self.session.execute(text(sql), {"visitor": visitor_id, **params})
            counts[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
        return counts
