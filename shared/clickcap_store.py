"""The click cap's table (``click_caps`` in a service's schema) and its one use: admit a
batch of new clicks under the cap (:mod:`shared.clickcap`), counting what it refuses.

One row per (UTC day, link, subject): clicks stored and clicks refused. The rows of a batch
are locked in key order (an upsert that changes nothing) before they are read, so two
workers admitting clicks of one address wait for each other instead of both passing the cap;
the caller's transaction commits the counts with the clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import BigInteger, Column, Date, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clickcap import Admission, CapKey, admit, cap_keys
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
        stored and refused clicks are recorded (flushed, the caller commits)."""
        keys = sorted({k for c in clicks for k in cap_keys(c)})
        if not keys:
            return Admission()
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
        admission = admit(clicks, stored, cap)
        changed = sorted(set(admission.stored) | set(admission.overflow))
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
                    "stored": [admission.stored[k] for k in changed],
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


def _arrays(keys: list[CapKey]) -> dict[str, list[object]]:
    return {
        "days": [k.day for k in keys],
        "links": [k.link_code for k in keys],
        "subjects": [k.subject for k in keys],
    }
