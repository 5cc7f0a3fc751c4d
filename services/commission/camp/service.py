"""The alliance camp: the program's products for buyers, ranked by the product channel's
score times the visitor's personal boost (:mod:`services.commission.core.camp`).

The visitor is the tracker's sealed ``alliance_vid`` cookie, opened with the same key
(:class:`shared.visitors.VisitorCookies`); a missing, malformed or forged cookie is no
visitor (the plain ranking), never an error. Their interests are the reports consumer's
``visitor_interests``.

Pages are keyset pages over ``(final score, rate, store id, product id)``. The cursor also
holds ``as_of``, the time of the first page: the visitor's history is read as of then on
every page, so a store or category they meet for the first time while paging does not move
products between pages (an interest they *renew* while paging has its last time moved past
``as_of`` and leaves the later pages' profile: docs/camp.md, "Pages"); and a fingerprint of the
query (``q``, ``category_id``), so a cursor used with another query is refused (422
``bad_cursor``) instead of answering a page of something else.

The cursor is sealed (:mod:`shared.sealed`, AES-GCM under a key derived from the secret key):
the last row's score and commission rate are the store's business with its affiliates, not
the public's, and a cursor nobody can forge is one whose numbers need no trust. One that does
not open is refused as any other bad cursor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.camp.repository import CampRepository
from services.commission.core.camp import (
    CANDIDATES_PER_KEY,
    HISTORY,
    MAX_INTERESTS,
    NO_PROFILE,
    W_CATEGORY,
    W_STORE,
    Interest,
    Kind,
    Profile,
    check_keyword,
    multiplier,
    profile,
)
from services.commission.errors import BadCursor
from shared.clock import Clock
from shared.db import like_pattern
from shared.sealed import Sealer
from shared.visitors import VisitorCookies

#: the most interest rows one request reads (the most recent): with MAX_INTERESTS per kind
#: of key, what bounds a request whatever the visitor did
MAX_INTEREST_ROWS: Final = 2_000
#: how long the category list is kept before it is counted again
CATEGORIES_TTL: Final = timedelta(seconds=60)
MAX_CATEGORIES: Final = 200
#: a cursor's numbers: every score and rate fits NUMERIC(12, 4) × the largest boost
_CURSOR_BOUND: Final = Decimal(10) ** 12
_FUTURE_SKEW: Final = timedelta(minutes=5)
#: what the cursors are sealed for (their key is derived from the secret key with it)
CURSOR_PURPOSE: Final = "camp-cursor"


@dataclass(frozen=True, slots=True)
class CampRow:
    row: Any  # store_id, product_id, title, category_id, price_minor, currency, rate, hot, base,
    # k_category, k_store, final

    @property
    def boost(self) -> Decimal:
        return multiplier(int(self.row.k_category), int(self.row.k_store))


@dataclass(frozen=True, slots=True)
class CampResult:
    rows: list[CampRow]
    next_cursor: str | None
    personalised: bool


def _fingerprint(q: str | None, category_id: str | None) -> str:
    return hashlib.sha256(f"{q or ''}\x00{category_id or ''}".encode()).hexdigest()[:16]


def _number(value: str) -> Decimal:
    number = Decimal(value)
    if not number.is_finite() or not 0 <= number < _CURSOR_BOUND:
        raise ValueError("out of range")
    return number


@dataclass
class CampService:
    clock: Clock
    cookies: VisitorCookies
    #: seals the cursors (:data:`CURSOR_PURPOSE`)
    cursors: Sealer
    #: how many products of each of a visitor's categories and stores the boost lifts
    per_key: int = CANDIDATES_PER_KEY
    _categories: tuple[datetime, list[Any]] | None = field(default=None, init=False)

    def visitor(self, cookie: str | None) -> str | None:
        """The visitor a cookie carries, or None (absent, malformed or forged)."""
        return self.cookies.open(cookie)

    def _cursor(
        self, cursor: str, q: str | None, category_id: str | None, now: datetime
    ) -> tuple[datetime, tuple[Decimal, Decimal, str, str]]:
        try:
            at, final, rate, store, product, fp = self._open(cursor)
            as_of = datetime.fromisoformat(at)
            if as_of.tzinfo is None or as_of > now + _FUTURE_SKEW:
                raise ValueError("not a time this API gave")
            if fp != _fingerprint(q, category_id):
                raise BadCursor("the cursor belongs to another query (q, category_id)")
            if not store or not product or len(store) > 128 or len(product) > 128:
                raise ValueError("not an id")
            return as_of.astimezone(UTC), (_number(final), _number(rate), store, product)
        except (ValueError, ArithmeticError):
            raise BadCursor("cursor is not one this list gave") from None

    def _seal(self, values: list[str]) -> str:
        return self.cursors.seal(orjson.dumps(values))

    def _open(self, cursor: str) -> list[str]:
        """The six values :meth:`_seal` was given; ``ValueError`` if the cursor does not open
        (not sealed here: changed, made up, another deployment's) or is not six strings."""
        plaintext = self.cursors.open(cursor)
        if plaintext is None:
            raise ValueError("not a cursor this list gave")
        values = orjson.loads(plaintext)
        if not isinstance(values, list) or len(values) != 6:
            raise ValueError("not a cursor")
        if not all(isinstance(v, str) and "\x00" not in v for v in values):
            raise ValueError("not a cursor")  # no column holds a NUL (PostgreSQL refuses it)
        return values

    async def profile_of(
        self, session: AsyncSession, visitor_id: str | None, as_of: datetime
    ) -> Profile:
        """The visitor's interests as of ``as_of`` (none without a visitor)."""
        if visitor_id is None:
            return NO_PROFILE
        rows = await CampRepository(session).interests_of(
            visitor_id, as_of - HISTORY, as_of, MAX_INTEREST_ROWS
        )
        return profile(
            (Interest(r.store_id, r.category_id or None, Kind(r.kind), r.last_at) for r in rows),
            as_of,
            MAX_INTERESTS,
        )

    async def products(
        self,
        session: AsyncSession,
        visitor_id: str | None,
        *,
        q: str | None,
        category_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> CampResult:
        """One page of the camp for ``visitor_id`` (None: the plain ranking). A keyword
        without a run of 3 letters or digits is refused before any query (422
        ``query_too_short``): no index can serve it."""
        if q is not None:
            check_keyword(q)
        now = self.clock.now()
        as_of, after = self._cursor(cursor, q, category_id, now) if cursor else (now, None)
        await CampRepository(session).plan_each_query()
        p = await self.profile_of(session, visitor_id, as_of)
        rows = await CampRepository(session).page(
            p,
            (W_CATEGORY, W_STORE),
            after,
            keyword=like_pattern(q) if q else None,
            category_id=category_id,
            limit=limit,
            per_key=self.per_key,
        )
        next_cursor = None
        if len(rows) == limit:
            last = rows[-1]
            next_cursor = self._seal(
                [
                    as_of.isoformat(),
                    str(last.final),
                    str(last.rate),
                    last.store_id,
                    last.product_id,
                    _fingerprint(q, category_id),
                ]
            )
        return CampResult([CampRow(r) for r in rows], next_cursor, not p.empty)

    async def categories(self, session: AsyncSession) -> list[Any]:
        """The categories of the program's products, the largest first (counted at most once
        a minute per process: the page asks for them on every load)."""
        now = self.clock.now()
        if self._categories is None or now - self._categories[0] > CATEGORIES_TTL:
            rows = await CampRepository(session).categories(MAX_CATEGORIES)
            self._categories = (now, rows)
        return self._categories[1]
