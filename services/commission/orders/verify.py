"""`alliance ledger verify`: the ledger's invariants, checked against the database.

1. every transaction's postings sum to zero;
2. each account's balance equals the sum of its postings, and the ledger as a whole sums to
   zero per currency (a balance is never stored apart: this recomputes it from the postings);
3. replaying the facts posts nothing new: for every order, the pure core finds nothing left
   to post, so a replay of any topic from any offset cannot add a posting;
4. every order's stored summary (what settlements sum) is what the pure core computes from
   its facts;
5. the rollups (``settlement_days``, ``settlement_hours``, ``statement_days``) sum, key by
   key, to what the orders and the store accounts' postings sum to, folded or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core.commission import OrderKey, compute_order
from services.commission.core.ledger import ledger_delta
from services.commission.orders.repository import LedgerRepository, OrderRepository
from services.commission.orders.service import summary
from services.commission.program.service import ProgramService
from shared.policy import ExitPolicy


@dataclass
class Verification:
    transactions_unbalanced: list[int] = field(default_factory=list)
    currencies_unbalanced: dict[str, int] = field(default_factory=dict)
    orders_checked: int = 0
    #: (store, order) → ledger keys not posted
    orders_owing: dict[OrderKey, list[str]] = field(default_factory=dict)
    summaries_stale: list[OrderKey] = field(default_factory=list)
    #: the rollups' keys that do not agree with the orders or the postings
    rollups_stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.transactions_unbalanced
            or self.currencies_unbalanced
            or self.orders_owing
            or self.summaries_stale
            or self.rollups_stale
        )


async def verify(
    session: AsyncSession, policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM
) -> Verification:
    repo, ledger, programs_of = (
        OrderRepository(session),
        LedgerRepository(session),
        ProgramService(),
    )
    out = Verification()
    out.transactions_unbalanced = [int(r[0]) for r in await ledger.unbalanced_transactions()]
    totals: dict[str, int] = {}
    for (_, currency), minor in (await ledger.account_balances()).items():
        totals[currency] = totals.get(currency, 0) + minor
    out.currencies_unbalanced = {c: v for c, v in totals.items() if v != 0}
    out.rollups_stale = await ledger.stale_rollups()
    ids = await repo.order_ids()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        facts = await repo.order_facts(chunk)
        programs = await programs_of.histories(session, {f.store_id for f in facts.values()})
        posted = await ledger.posted(facts)
        stored = await repo.summaries(facts)
        for key, f in facts.items():
            out.orders_checked += 1
            owing = ledger_delta(f, programs[f.store_id], posted[key], policy)
            if owing:
                out.orders_owing[key] = [t.key for t in owing]
            if stored.get(key) != summary(f, compute_order(f, programs[f.store_id], policy)):
                out.summaries_stale.append(key)
    return out
