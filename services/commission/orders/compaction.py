"""The scheduled compaction of the settlement and statement rollups (``settlement_days``,
``settlement_hours``, ``statement_days``).

Their triggers append a row per key and writing statement (no row is updated by every event
of a store: issue 20), so a key's rows grow with the batches that touched it until they are
folded. The commission service folds them every ``ALLIANCE_ROLLUP_COMPACT_INTERVAL_S``: the
rows of the keys that have a fresh (not yet folded) row, found through a partial index of the
fresh rows, in batches of a transaction each, in key order (a batch seeks past the keys the
run folded, never re-reading their dead index entries). Contract:

- sums unchanged in every snapshot, beside any number of writers (see
  :meth:`~services.commission.orders.repository.LedgerRepository.fold_rollup`);
- one replica at a time: each batch takes a transaction-scoped advisory try-lock, and a
  replica that finds it held leaves the round to the holder (two folding at once would
  still be correct, only wasted work);
- idempotent: a round with nothing fresh reads the partial indexes' (empty) tails only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commission.orders.repository import ROLLUPS, LedgerRepository
from shared.db import try_lock_key

log = logging.getLogger(__name__)

#: the advisory lock every replica's compaction takes (namespace, key)
LOCK = ("rollup-compaction", "all")
#: keys folded per transaction
BATCH = 5000


def _never() -> bool:
    return False


@dataclass
class RollupCompactor:
    """Folds the rollups' fresh rows (see the module)."""

    sessions: async_sessionmaker[AsyncSession]
    batch: int = BATCH

    async def run_once(self, stopping: Callable[[], bool] = _never) -> int | None:
        """Fold every key that has a fresh row, ``batch`` keys per transaction, until none is
        left (or ``stopping()``); returns the rows removed, or None when another replica
        holds the compaction's lock (it folds them)."""
        began, removed = time.monotonic(), 0
        for rollup in ROLLUPS:
            keys, last = self.batch, None
            while keys == self.batch and not stopping():
                async with self.sessions() as session, session.begin():
                    if not await try_lock_key(session, *LOCK):
                        return None
                    repo = LedgerRepository(session)
                    keys, n, last = await repo.fold_rollup(rollup, self.batch, last)
                removed += n
        if removed:
            log.info(
                "rollup compaction: %d rows folded away in %.1f s",
                removed,
                time.monotonic() - began,
            )
        return removed
