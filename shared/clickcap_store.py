"""The click cap's table (``click_caps`` in a service's schema) and its one use: admit a
batch of new clicks under the cap (:mod:`shared.clickcap`), counting what it refuses.

One row per (UTC day, link, subject): clicks stored and clicks refused. The rows of a batch
are locked in key order (an upsert that changes nothing) before they are read, so two
workers admitting clicks of one address wait for each other instead of both passing the cap;
the caller's transaction commits the counts with the clicks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

from sqlalchemy import BigInteger, Column, Date, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clickcap import MAX_ADDRESS, Admission, CapKey, admit, cap_keys
from shared.events import Click
from shared.privacy import truncate_address


def click_caps_table(metadata: MetaData) -> Table:
    return Table(
        "click_caps",
        metadata,
        Column("day", Date, primary_key=True),
        Column("link_code", String(512), primary_key=True),
        #: ``visitor:<id>`` or ``address:<ip>``
        Column("subject", String(200), primary_key=True),
        Column("stored", BigInteger, nullable=False, server_default="0"),
        #: clicks of this key not stored individually (past the cap), each counted once
        Column("overflow", BigInteger, nullable=False, server_default="0"),
    )


@dataclass(frozen=True)
class ClickCapStore:
    """``schema``: the service's schema, whose ``click_caps`` table this is."""

    schema: str

    async def admit(self, session: AsyncSession, clicks: list[Click], cap: int) -> Admission:
        """Of ``clicks`` (not stored before), those to store under ``cap``; the counts of
        stored and refused clicks are recorded (flushed, the caller commits).

        One statement when no key reaches the cap (the usual case): each key's count is
        added where that keeps it within the cap, every key's row locked in key order. When
        a key would pass the cap, its row is left as it was (locked), and the batch is
        admitted click by click (:func:`~shared.clickcap.admit`) from the counts as they
        were, what the first statement added being taken back: the same result either way."""
        keyed = [(c, cap_keys(c)) for c in clicks]
        added = Counter(k for _, keys in keyed for k in keys)
        if not added:
            return Admission()
        keys = sorted(added, key=_order)
        if max(added.values()) <= cap:
            within = await session.execute(
                text(
                    f"""
                    INSERT INTO {self.schema}.click_caps AS t (day, link_code, subject, stored)
                    SELECT * FROM unnest(CAST(:days AS date[]), CAST(:links AS text[]),
                        CAST(:subjects AS text[]), CAST(:stored AS bigint[]))
                    ON CONFLICT (day, link_code, subject) DO UPDATE
                        SET stored = t.stored + excluded.stored
                        WHERE t.stored + excluded.stored <= :cap
                    RETURNING t.day, t.link_code, t.subject
                    """
                ),
                {**_arrays(keys), "stored": [added[k] for k in keys], "cap": cap},
            )
            done = {CapKey(r.day, r.link_code, r.subject) for r in within}
            if len(done) == len(keys):
                ordered = sorted(keyed, key=lambda ck: (ck[0].occurred_at, ck[0].click_id))
                return Admission([c for c, _ in ordered], added, Counter())
            added = Counter({k: n for k, n in added.items() if k in done})
        else:
            added = Counter()  # nothing added yet: lock the rows as they are
        return await self._admit_one_by_one(session, clicks, keys, added, cap)

    async def admit_all(self, session: AsyncSession, clicks: list[Click], cap: int) -> list[Click]:
        """:meth:`admit` with the keys made and counted by PostgreSQL from the clicks' columns
        (one statement, no per-click work here while no key passes the cap). Returns the
        clicks to store: all of them, in their order, when no key passes the cap; else
        :meth:`admit`'s, in time order."""
        if not clicks:
            return []
        ips = [c.ip for c in clicks]
        if any(ip and "\x00" in ip for ip in ips):  # text cannot hold it: the Python way
            return (await self.admit(session, clicks, cap)).admitted
        rows = (
            await session.execute(
                text(
                    f"""
                    WITH r AS (
                        SELECT CAST(r.at AT TIME ZONE 'UTC' AS date) AS day, r.link_code,
                            r.visitor_id, r.ip
                        FROM unnest(CAST(:ats AS timestamptz[]), CAST(:links AS text[]),
                            CAST(:visitors AS text[]), CAST(:ips AS text[]))
                            AS r(at, link_code, visitor_id, ip)
                    ), k AS (
                        SELECT day, link_code, subject, count(*) AS n FROM (
                            SELECT day, link_code, 'visitor:' || visitor_id AS subject FROM r
                            UNION ALL
                            SELECT day, link_code, 'address:' || left(ip, :address) FROM r
                            WHERE ip <> ''
                        ) x GROUP BY day, link_code, subject
                    ), up AS (
                        INSERT INTO {self.schema}.click_caps AS t (day, link_code, subject, stored)
                        SELECT day, link_code, subject, n FROM k WHERE n <= :cap
                        ORDER BY day, link_code COLLATE "C", subject COLLATE "C"
                        ON CONFLICT (day, link_code, subject) DO UPDATE
                            SET stored = t.stored + excluded.stored
                            WHERE t.stored + excluded.stored <= :cap
                        RETURNING t.day, t.link_code, t.subject
                    ), within AS (
                        SELECT (SELECT count(*) FROM k) = (SELECT count(*) FROM up) AS yes
                    )
                    SELECT true AS within, NULL AS day, NULL AS link_code, NULL AS subject
                    WHERE (SELECT yes FROM within)
                    UNION ALL
                    SELECT false, u.day, u.link_code, u.subject FROM up u
                    WHERE NOT (SELECT yes FROM within)
                    """
                ),
                {
                    "ats": [c.occurred_at for c in clicks],
                    "links": [c.link_code for c in clicks],
                    "visitors": [c.visitor_id for c in clicks],
                    "ips": ips,
                    "cap": cap,
                    "address": MAX_ADDRESS,
                },
            )
        ).all()
        if rows and rows[0].within:
            return clicks
        # a key passes the cap: click by click, what the statement added taken back
        done = {CapKey(r.day, r.link_code, r.subject) for r in rows}
        added = Counter(k for c in clicks for k in cap_keys(c) if k in done)
        keys = sorted({k for c in clicks for k in cap_keys(c)}, key=_order)
        return (await self._admit_one_by_one(session, clicks, keys, added, cap)).admitted

    async def _admit_one_by_one(
        self,
        session: AsyncSession,
        clicks: list[Click],
        keys: list[CapKey],
        added: Counter[CapKey],
        cap: int,
    ) -> Admission:
        """:func:`~shared.clickcap.admit` over the rows' counts, each row locked (in key
        order), less ``added`` (what this transaction added to it already); the counts are
        then set to what it decided."""
        locked = await session.execute(
            text(
                f"""
                INSERT INTO {self.schema}.click_caps AS t (day, link_code, subject)
                SELECT * FROM unnest(CAST(:days AS date[]), CAST(:links AS text[]),
                    CAST(:subjects AS text[]))
                ON CONFLICT (day, link_code, subject) DO UPDATE SET stored = t.stored
                RETURNING t.day, t.link_code, t.subject, t.stored
                """
            ),
            _arrays(keys),
        )
        stored = {CapKey(r.day, r.link_code, r.subject): int(r.stored) for r in locked}
        before = {k: n - added[k] for k, n in stored.items()}
        admission = admit(clicks, before, cap)
        changed = sorted(
            {
                k
                for k in (*admission.stored, *admission.overflow, *added)
                if admission.stored[k] != added[k] or admission.overflow[k]
            },
            key=_order,
        )
        if changed:
            await session.execute(
                text(
                    f"""
                    UPDATE {self.schema}.click_caps t
                    SET stored = t.stored + d.stored, overflow = t.overflow + d.overflow
                    FROM unnest(CAST(:days AS date[]), CAST(:links AS text[]),
                        CAST(:subjects AS text[]), CAST(:stored AS bigint[]),
                        CAST(:overflow AS bigint[]))
                        AS d(day, link_code, subject, stored, overflow)
                    WHERE t.day = d.day AND t.link_code = d.link_code
                      AND t.subject = d.subject
                    """
                ),
                {
                    **_arrays(changed),
                    "stored": [admission.stored[k] - added[k] for k in changed],
                    "overflow": [admission.overflow[k] for k in changed],
                },
            )
        return admission

    async def forget(self, session: AsyncSession, before: date, limit: int) -> int:
        """Delete up to ``limit`` rows of days before ``before``; returns how many."""
        result = await session.execute(
            text(
                f"""
                DELETE FROM {self.schema}.click_caps WHERE (day, link_code, subject) IN (
                    SELECT day, link_code, subject FROM {self.schema}.click_caps
                    WHERE day < :before LIMIT :n)
                """
            ),
            {"before": before, "n": limit},
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def truncate_addresses(self, session: AsyncSession, before: date, limit: int) -> int:
        """Cut the addresses of up to ``limit`` rows of days before ``before`` to their network
        (:func:`shared.privacy.truncate_address`), the counts of rows that become one summed;
        returns how many rows were cut. Rows a click batch holds are skipped (next pass)."""
        rows = list(
            await session.execute(
                text(
                    f"""
                    SELECT day, link_code, subject, stored, overflow
                    FROM {self.schema}.click_caps
                    WHERE day < :before AND subject LIKE 'address:%'
                      AND strpos(subject, '/') = 0 AND subject <> 'address:unknown'
                    LIMIT :n FOR UPDATE SKIP LOCKED
                    """
                ),
                {"before": before, "n": limit},
            )
        )
        if not rows:
            return 0
        merged: dict[CapKey, list[int]] = {}
        for r in rows:
            cut = f"address:{truncate_address(r.subject.removeprefix('address:'))}"
            counts = merged.setdefault(CapKey(r.day, r.link_code, cut), [0, 0])
            counts[0] += int(r.stored)
            counts[1] += int(r.overflow)
        old = [CapKey(r.day, r.link_code, r.subject) for r in rows]
        await session.execute(
            text(
                f"""
                DELETE FROM {self.schema}.click_caps t
                USING unnest(CAST(:days AS date[]), CAST(:links AS text[]),
                    CAST(:subjects AS text[])) AS d(day, link_code, subject)
                WHERE t.day = d.day AND t.link_code = d.link_code AND t.subject = d.subject
                """
            ),
            _arrays(old),
        )
        keys = sorted(merged)
        await session.execute(
            text(
                f"""
                INSERT INTO {self.schema}.click_caps AS t
                    (day, link_code, subject, stored, overflow)
                SELECT * FROM unnest(CAST(:days AS date[]), CAST(:links AS text[]),
                    CAST(:subjects AS text[]), CAST(:stored AS bigint[]),
                    CAST(:overflow AS bigint[]))
                ON CONFLICT (day, link_code, subject) DO UPDATE
                SET stored = t.stored + excluded.stored, overflow = t.overflow + excluded.overflow
                """
            ),
            {
                **_arrays(keys),
                "stored": [merged[k][0] for k in keys],
                "overflow": [merged[k][1] for k in keys],
            },
        )
        return len(rows)


def _order(key: CapKey) -> tuple[date, str, str]:
    """The order rows are locked in (every worker the same: no deadlock)."""
    return (key.day, key.link_code, key.subject)


def _arrays(keys: list[CapKey]) -> dict[str, list[object]]:
    return {
        "days": [k.day for k in keys],
        "links": [k.link_code for k in keys],
        "subjects": [k.subject for k in keys],
    }
