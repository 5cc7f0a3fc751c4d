"""All SQL of principals (stores, affiliates, finance users). Keys are stored hashed only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m


class PrincipalRepository:
    """All SQL of principals (stores, affiliates, finance users)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        kind: str,
        principal_id: str,
        name: str,
        key_hash: str,
        landing_url_template: str | None = None,
        secret_version: int | None = None,
    ) -> bool:
        """Insert; False when a principal of that kind and id already exists."""
        result = await self.session.execute(
            insert(m.principals)
            .values(
                kind=kind,
                principal_id=principal_id,
                name=name,
                key_hash=key_hash,
                landing_url_template=landing_url_template,
                secret_version=secret_version,
            )
            .on_conflict_do_nothing(index_elements=["kind", "principal_id"])
            .returning(m.principals.c.principal_id)
        )
        return result.first() is not None

    async def by_key_hash(self, key_hash: str) -> Any:
        rows = await self.session.execute(
            select(m.principals).where(m.principals.c.key_hash == key_hash)
        )
        return rows.first()

    async def get(self, kind: str, principal_id: str) -> Any:
        rows = await self.session.execute(
            select(m.principals).where(
                m.principals.c.kind == kind, m.principals.c.principal_id == principal_id
            )
        )
        return rows.first()

    async def set_key_hash(self, kind: str, principal_id: str, key_hash: str) -> Any:
        """Replace the principal's key hash (rotation); the updated row, or None if unknown."""
        result = await self.session.execute(
            m.principals.update()
            .where(m.principals.c.kind == kind, m.principals.c.principal_id == principal_id)
            .values(key_hash=key_hash)
            .returning(*m.principals.c)
        )
        return result.first()

    async def bump_secret_version(self, store_id: str, previous_until: datetime) -> int | None:
        """The store's next webhook secret version, its previous one accepted until
        ``previous_until``; None if there is no such store."""
        result = await self.session.execute(
            m.principals.update()
            .where(m.principals.c.kind == "store", m.principals.c.principal_id == store_id)
            .values(
                secret_version=m.principals.c.secret_version + 1,
                previous_secret_until=previous_until,
            )
            .returning(m.principals.c.secret_version)
        )
        version = result.scalar_one_or_none()
        return int(version) if version is not None else None

    async def next_directory_version(self, key: str) -> int:
        """The next version of the directory entries of ``key`` (1, 2, …), the counter's row
        locked until the transaction ends: a concurrent change of the same key waits, then
        reads this one's committed state and numbers its entry after it. Call it before
        reading what the entry will say."""
        table = m.directory_versions
        stmt = (
            insert(table)
            .values(key=key, version=1)
            .on_conflict_do_update(index_elements=["key"], set_={"version": table.c.version + 1})
            .returning(table.c.version)
        )
        return int((await self.session.execute(stmt)).scalar_one())
