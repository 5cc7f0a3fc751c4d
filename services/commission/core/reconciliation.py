"""Reconciliation rules, pure: per UTC day and currency, what was estimated at placement and
what became of it. For a day's placements, ``estimated_at_placement = day_orders_payable +
day_orders_cancelled + day_orders_open + day_orders_adjusted`` (what reason-coded adjustments
took off the estimate, or gave back); :attr:`DayFigures.unexplained` is what is not, and is
zero when the books agree."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from services.commission.core.commission import (
    OrderFacts,
    OrderStatus,
    before_lock,
    compute_order,
    locks_at,
)
from services.commission.core.ledger import TxnKind
from services.commission.core.program import ProgramHistory
from shared.money import ZERO
from shared.policy import ExitPolicy


@dataclass
class DayFigures:
    estimated_at_placement: Decimal = ZERO  # gross commission of chargeable orders placed
    became_payable: Decimal = ZERO  # commission posted that day (orders completed)
    cancelled: Decimal = ZERO  # gross commission of orders cancelled that day
    reversed: Decimal = ZERO  # reversals posted that day (positive)
    adjusted: Decimal = ZERO  # adjustment transactions posted that day (signed, as credited)
    day_orders_payable: Decimal = ZERO  # of the day's estimate: orders completed since
    day_orders_cancelled: Decimal = ZERO  # … cancelled since
    day_orders_open: Decimal = ZERO  # … still placed
    day_orders_adjusted: Decimal = ZERO  # … taken off by adjustments (positive: lowered)

    @property
    def unexplained(self) -> Decimal:
        """The day's estimate less what became of its orders: zero when the books agree."""
        return self.estimated_at_placement - (
            self.day_orders_payable
            + self.day_orders_cancelled
            + self.day_orders_open
            + self.day_orders_adjusted
        )


def utc_day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d")


@dataclass
class Reconciliation:
    """The figures of ``[start, end)``, fed order by order and posting sum by posting sum."""

    start: datetime
    end: datetime
    policy: ExitPolicy = ExitPolicy.PLACED_IN_PROGRAM
    days: dict[tuple[str, str], DayFigures] = field(default_factory=dict)

    def _day(self, day: str, currency: str) -> DayFigures:
        return self.days.setdefault((day, currency), DayFigures())

    def add_order(self, facts: OrderFacts, program: ProgramHistory) -> None:
        """An order placed, completed or cancelled in the range: its gross commission (as if
        still placed, no refunds, no adjustments) counts on its placement day, split by what
        became of it (of a completed or open order: its commission after its adjustments,
        and apart what the adjustments took off), and on its cancellation day if it was
        cancelled in the range."""
        as_placed = replace(facts, status=OrderStatus.PLACED, refunds=())
        gross = compute_order(as_placed, program, self.policy, adjustments=())
        if not gross.chargeable:
            return
        if self.start <= facts.placed_at < self.end:
            d = self._day(utc_day(facts.placed_at), facts.currency)
            d.estimated_at_placement += gross.commission
            if facts.status is OrderStatus.CANCELLED:
                d.day_orders_cancelled += gross.commission
            else:
                # the adjustments that count: those before the order's lock
                kept = compute_order(
                    as_placed,
                    program,
                    self.policy,
                    adjustments=before_lock(facts.adjustments, locks_at(facts, program)),
                ).commission
                d.day_orders_adjusted += gross.commission - kept
                if facts.status is OrderStatus.COMPLETED:
                    d.day_orders_payable += kept
                else:
                    d.day_orders_open += kept
        done = facts.status_at
        if facts.status is OrderStatus.CANCELLED and done and self.start <= done < self.end:
            self._day(utc_day(done), facts.currency).cancelled += gross.commission

    def add_postings(self, day: str, currency: str, kind: str, amount: Decimal) -> None:
        """What affiliates were credited on ``day`` by transactions of ``kind`` (signed)."""
        d = self._day(day, currency)
        if kind == TxnKind.COMMISSION:
            d.became_payable += amount
        elif kind == TxnKind.ADJUSTMENT:
            d.adjusted += amount
        else:
            d.reversed -= amount  # a reversal credits the affiliate a negative amount

    def rows(self) -> list[tuple[str, str, DayFigures]]:
        """(day, currency, figures) in day then currency order."""
        return [(day, c, f) for (day, c), f in sorted(self.days.items())]
