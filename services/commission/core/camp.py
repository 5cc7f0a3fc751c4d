"""The alliance camp's ranking, pure: the product channel's composite score times a personal
boost from the visitor's own history. No I/O, no clock: ``as_of`` is a parameter.

The ranking of ``GET /v1/camp/products`` (higher first; at an equal final score the higher
commission rate, then store id, then product id)::

    final = base × (1 + W_CATEGORY × k_category + W_STORE × k_store)

- ``base`` is :func:`~services.commission.core.reports.product_score`: 30 if hot + 10 if a
  main product + 100 × rate + 10 × log10(1 + affiliate orders in 90 days), refreshed by the
  product channel;
- ``k_category`` is the strength of the visitor's strongest interaction, in the last
  :data:`HISTORY` before ``as_of``, with any product of the product's category (in any store),
  ``k_store`` the same with the product's store: a purchase (an ``order_placed`` line) 3, a
  click on an affiliate link (not suspicious) 2, a page view 1, nothing 0
  (:data:`KIND_STRENGTH`);
- ``W_CATEGORY`` = 0.15 and ``W_STORE`` = 0.10: a category the visitor bought from lifts a
  product by 45 %, a store they bought from by 30 %, both by 75 % (the most there is);
  a category only viewed by 15 %.

Without a (valid) visitor or without history every ``k`` is 0 and ``final = base``: the plain
ranking. The boost multiplies, so it reorders products of comparable merit and never lifts a
product the program ranks nowhere (a base of 0 stays 0). The multiplier has two decimals and
the base four, so ``final`` is exact at six: no rounding, ties are real ties.

What one request weighs is bounded: the visitor's :data:`MAX_INTERESTS` strongest (then most
recent) categories and as many stores, so a bot that viewed every store costs no more than
anyone else; and the boost lifts the :data:`CANDIDATES_PER_KEY` best products (by base score)
of each of them among those the query matches, the rest ranking at their base score (the
repository finds them by index; which products are lifted depends on the query and the
history, never on the page, so keyset pages stay exact).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.commission.core.errors import QueryTooShort


class Kind(StrEnum):
    """How a visitor met a store or category."""

    VIEW = "view"  # a storefront page view
    CLICK = "click"  # an affiliate click, not suspicious
    ORDER = "order"  # a line of an order they placed


#: how strongly each kind of interaction says "interested": purchase > click > view
KIND_STRENGTH: Final[Mapping[Kind, int]] = {Kind.VIEW: 1, Kind.CLICK: 2, Kind.ORDER: 3}
#: the boost per unit of strength in the product's category, and in its store
W_CATEGORY: Final = Decimal("0.15")
W_STORE: Final = Decimal("0.10")
#: how far back a visitor's history counts
HISTORY: Final = timedelta(days=90)
#: the most categories, and the most stores, of one visitor that one request weighs
MAX_INTERESTS: Final = 12
#: the boost lifts the best this many products (by base score) of each of the visitor's
#: categories and stores among those a query matches; the rest keep their base score
CANDIDATES_PER_KEY: Final = 40


@dataclass(frozen=True, slots=True)
class Interest:
    """The last time a visitor met ``store_id`` (and ``category_id``, when the product they
    met had one) in a way of ``kind``."""

    store_id: str
    category_id: str | None
    kind: Kind
    last_at: datetime


@dataclass(frozen=True, slots=True)
class Profile:
    """A visitor's interests as the ranking weighs them: strength per category and per
    store (absent: 0)."""

    categories: Mapping[str, int]
    stores: Mapping[str, int]

    @property
    def empty(self) -> bool:
        return not self.categories and not self.stores


NO_PROFILE: Final = Profile({}, {})

#: the shortest run of letters or digits a keyword must hold: the title's trigram index
#: serves a ``LIKE '%q%'`` only for a run of 3 (a shorter one would scan every product)
MIN_KEYWORD_RUN: Final = 3
_KEYWORD_RUN: Final = re.compile(rf"[^\W_]{{{MIN_KEYWORD_RUN},}}")


def check_keyword(q: str) -> str:
    """``q`` if it holds a run of :data:`MIN_KEYWORD_RUN` letters or digits (any script),
    else :class:`QueryTooShort` (``422 query_too_short``)."""
    if _KEYWORD_RUN.search(q) is None:
        raise QueryTooShort(min_run=MIN_KEYWORD_RUN)
    return q


def _strongest(met: dict[str, tuple[int, datetime]], limit: int) -> dict[str, int]:
    ranked = sorted(met.items(), key=lambda kv: (-kv[1][0], -kv[1][1].timestamp(), kv[0]))
    return {key: strength for key, (strength, _) in ranked[:limit]}


def profile(interests: Iterable[Interest], as_of: datetime, limit: int = MAX_INTERESTS) -> Profile:
    """The visitor's profile at ``as_of``: per category and per store, the strength of the
    strongest kind met in ``[as_of - HISTORY, as_of]`` (both ends included); at most ``limit``
    of each, the strongest first, then the most recently met (any kind), then by id."""
    since = as_of - HISTORY
    categories: dict[str, tuple[int, datetime]] = {}
    stores: dict[str, tuple[int, datetime]] = {}
    for i in interests:
        if not since <= i.last_at <= as_of:
            continue
        strength = KIND_STRENGTH[i.kind]
        keyed = [(stores, i.store_id)] + ([(categories, i.category_id)] if i.category_id else [])
        for table, key in keyed:
            was = table.get(key)
            table[key] = (
                (max(was[0], strength), max(was[1], i.last_at)) if was else (strength, i.last_at)
            )
    return Profile(_strongest(categories, limit), _strongest(stores, limit))


def multiplier(k_category: int, k_store: int) -> Decimal:
    """``1 + W_CATEGORY × k_category + W_STORE × k_store``."""
    return 1 + W_CATEGORY * k_category + W_STORE * k_store


def camp_score(base: Decimal, category_id: str | None, store_id: str, p: Profile) -> Decimal:
    """The final score of a product of ``store_id`` in ``category_id`` for the visitor of
    ``p`` (``base`` is its product-channel score)."""
    k_category = p.categories.get(category_id, 0) if category_id else 0
    return base * multiplier(k_category, p.stores.get(store_id, 0))


def sort_key(final: Decimal, rate: Decimal, store_id: str, product_id: str) -> tuple[object, ...]:
    """The camp's order as a key for ``sorted``: final score, then rate, both descending,
    then store and product id ascending (a total order: the keyset of the pages)."""
    return (-final, -rate, store_id, product_id)
