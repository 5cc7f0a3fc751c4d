"""Database plumbing shared by the services: engines, sessions, metadata conventions."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    MetaData,
    Numeric,
    String,
    TypeDecorator,
    bindparam,
    event,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata(schema: str) -> MetaData:
    """Metadata of one service: its own Postgres schema, the project's naming convention."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def pairs_in(
    first: ColumnElement[str], second: ColumnElement[str], pairs: Iterable[tuple[str, str]]
) -> ColumnElement[bool]:
    """``(first, second) IN pairs`` with the pairs as two array parameters (``unnest``): one
    plan and two parameters whatever the number of pairs, where a row-value ``IN`` list would
    send two parameters a pair."""
    ordered = sorted(set(pairs))
    table = (
        func.unnest(
            bindparam("pairs_a", [p[0] for p in ordered], type_=ARRAY(String), unique=True),
            bindparam("pairs_b", [p[1] for p in ordered], type_=ARRAY(String), unique=True),
        )
        .table_valued("a", "b")
        .render_derived()
    )
    return tuple_(first, second).in_(select(table.c.a, table.c.b))


#: digits of a stored sum of money: 10^38 minor units, beyond any sum of the orders the edge
#: allows (each at most 10^16 minor units, so 10^22 of them) — a signed 64-bit integer holds
#: only 922 maximal orders
MINOR_SUM_DIGITS = 38


class MinorSum(TypeDecorator[int]):
    """Integer minor units stored as ``NUMERIC(38, 0)``, read back as a Python ``int``: the
    type of every stored amount that is (or may become) a sum over orders — ledger postings
    (a payout posts an affiliate's whole balance) — and, being the column's type, of the SQL
    ``sum()`` over it. A ``bigint`` would overflow past 9.2 × 10^18."""

    impl = Numeric(MINOR_SUM_DIGITS, 0, asdecimal=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=5,
        pool_pre_ping=True,
        json_serializer=lambda v: orjson.dumps(v).decode(),
        json_deserializer=orjson.loads,
    )


#: ``Session.info`` key: the statement timeout (milliseconds) of the session's transactions
STATEMENT_TIMEOUT_MS = "statement_timeout_ms"


class BoundedSession(Session):
    """A session whose every transaction begins with ``SET LOCAL statement_timeout`` (its
    ``info[STATEMENT_TIMEOUT_MS]``): what an API request's transaction is."""


@event.listens_for(BoundedSession, "after_begin")
def _statement_timeout(session: Session, _: SessionTransaction, connection: Connection) -> None:
    # on the connection's first use, so a request refused before any query costs no round trip
    ms = int(session.info[STATEMENT_TIMEOUT_MS])
    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")


def make_sessions(
    engine: AsyncEngine, statement_timeout_s: float | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions of ``engine``; with ``statement_timeout_s``, each transaction's statements are
    cancelled past it (SQLSTATE 57014, answered ``503 statement_timeout`` by
    :func:`shared.http.install_error_handlers`): the API's sessions, never the consumers'."""
    if statement_timeout_s is None:
        return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=BoundedSession,
        info={STATEMENT_TIMEOUT_MS: max(1, round(statement_timeout_s * 1000))},
    )


@asynccontextmanager
async def scratch_sessions(
    url: str, pool_size: int = 1
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions of an engine of its own, disposed on the way out: a command's or a tool's
    short use of the database (the services keep one engine for their life)."""
    engine = make_engine(url, pool_size=pool_size)
    try:
        yield make_sessions(engine)
    finally:
        await engine.dispose()


async def ping(engine: AsyncEngine) -> None:
    """Raises unless the database answers a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def lock_key(namespace: str, key: str) -> int:
    """A stable signed 64-bit advisory-lock key for (namespace, key)."""
    digest = hashlib.blake2b(f"{namespace}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_keys(
    session: AsyncSession, namespace: str, keys: Iterable[str], *, shared: bool = False
) -> None:
    """Hold a transaction-scoped advisory lock on every key until commit or rollback.

    Taken in ascending key order, so two transactions that share keys wait for each other and
    never deadlock; every statement after this one sees what the other committed. Each key
    takes a slot of PostgreSQL's shared lock table (``max_locks_per_transaction`` × connections),
    so lock a few coarse keys (partitions, buckets), not every row of a batch. ``shared``
    locks wait only for exclusive holders of the same key."""
    ordered = sorted({lock_key(namespace, k) for k in keys})
    if ordered:
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await session.execute(
            text(f"SELECT count({fn}(k)) FROM unnest(CAST(:keys AS bigint[])) k"),
            {"keys": ordered},
        )


async def try_lock_key(session: AsyncSession, namespace: str, key: str) -> bool:
    """Take the transaction-scoped advisory lock of (namespace, key) if no one holds it;
    returns whether it is now held (until commit or rollback). Never waits: what one holder
    at a time should do (e.g. one replica's periodic maintenance) is skipped by the others."""
    result = await session.execute(
        text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock_key(namespace, key)}
    )
    return bool(result.scalar_one())


def like_pattern(text: str) -> str:
    """A case-insensitive ``LIKE`` pattern finding ``text`` anywhere (compare it with
    ``lower(column)``); the wildcards ``%`` and ``_`` in ``text`` match only themselves."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def encode_cursor(values: list[str]) -> str:
    """An opaque keyset cursor of a page's last row (URL-safe)."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The values :func:`encode_cursor` was given; ``ValueError`` if ``cursor`` is not one
    with ``size`` values."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except Exception as exc:
        raise ValueError("not a cursor") from exc
    if not isinstance(values, list) or len(values) != size:
        raise ValueError("not a cursor")
    strings = [str(v) for v in values]
    if any("\x00" in v for v in strings):
        raise ValueError("not a cursor")  # no column holds a NUL (PostgreSQL refuses it)
    return strings
