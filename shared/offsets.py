"""Consumer progress kept in PostgreSQL, in the same transaction as the effects.

Each service owns a ``consumer_offsets`` table in its schema. A consumer stores the next
offset to read per partition together with what it wrote, and seeks to it when a partition
is assigned: a crash at any point resumes exactly after the last committed batch.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession


def offsets_table(metadata: MetaData) -> Table:
    return Table(
        "consumer_offsets",
        metadata,
        Column("consumer", String(200), primary_key=True),
        Column("topic", String(250), primary_key=True),
        Column("partition", Integer, primary_key=True),
        Column("next_offset", BigInteger, nullable=False),
    )


class OffsetRepository:
    """All SQL of consumer progress. Never commits: the batch owner does."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def load(
        self, session: AsyncSession, consumer: str, partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        t = self.table
        rows = await session.execute(
            select(t.c.topic, t.c.partition, t.c.next_offset).where(
                t.c.consumer == consumer, t.c.topic.in_({tp[0] for tp in partitions})
            )
        )
        wanted = set(partitions)
        return {
            (r.topic, r.partition): r.next_offset for r in rows if (r.topic, r.partition) in wanted
        }

    async def save(
        self, session: AsyncSession, consumer: str, offsets: dict[tuple[str, int], int]
    ) -> None:
        if not offsets:
            return
        stmt = insert(self.table).values(
            [
                {"consumer": consumer, "topic": topic, "partition": part, "next_offset": off}
                for (topic, part), off in sorted(offsets.items())
            ]
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["consumer", "topic", "partition"],
                set_={"next_offset": stmt.excluded.next_offset},
            )
        )
