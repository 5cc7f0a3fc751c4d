"""CSV exports streamed as they are read: every page of rows is read in one snapshot of the
database (a REPEATABLE READ, read-only transaction of its own, since the response outlives
the request's transaction) and written out before the next is read. Every cell is
neutralised against formula injection (:mod:`shared.csvsafe`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.csvsafe import csv_text


@asynccontextmanager
async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A read-only session whose every read sees the database as of its first one."""
    async with sessions() as session:
        # the first use of the session begins its transaction, at this isolation level
        await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
        try:
            yield session
        finally:
            await session.rollback()  # it wrote nothing


async def csv_chunks(
    fieldnames: Sequence[str], pages: AsyncIterator[Iterable[Mapping[str, Any]]]
) -> AsyncIterator[str]:
    """The header, then each page of rows as CSV text, as the pages come."""
    header = csv_text(fieldnames, [])
    yield header
    async for rows in pages:
        yield csv_text(fieldnames, rows)[len(header) :]
