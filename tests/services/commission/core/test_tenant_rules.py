"""Pure rules of the boundaries between tenants: orders named by their store, ledger keys
that two stores can never share, what an explanation shows to whom, and when a completion
starts counting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.commission import (
    LineItem,
    OrderFacts,
    OrderStatus,
    Refund,
    RefundItem,
    visible_clicks,
)
from services.commission.core.ledger import commission_key, ledger_delta, reversal_key
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from services.commission.orders.service import effective_at
from shared.events import OrderCancelled, OrderCompleted

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
PROGRAM = ProgramHistory((ProgramOp(OpKind.JOIN, T - timedelta(days=30), rate=Decimal("0.1")),))

#: store ids hold no ":" (PrincipalId); order and refund ids may
store_ids = st.from_regex(r"[A-Za-z0-9._@-]{1,8}", fullmatch=True)
order_ids = st.from_regex(r"[A-Za-z0-9._:@-]{1,8}", fullmatch=True)


def completed_order(store_id: str, order_id: str, refunds: tuple[Refund, ...] = ()) -> OrderFacts:
    return OrderFacts(
        order_id=order_id,
        store_id=store_id,
        currency="USD",
        placed_at=T,
        items=(LineItem("p1", None, 1, Decimal("100.00"), Decimal(0)),),
        status=OrderStatus.COMPLETED,
        status_at=T + timedelta(days=1),
        affiliate_id="aff",
        refunds=refunds,
    )


class TestLedgerKeysNameTheStore:
    @given(store_ids, order_ids, store_ids, order_ids)
    def test_two_orders_never_share_a_commission_key(
        self, s1: str, o1: str, s2: str, o2: str
    ) -> None:
        if (s1, o1) != (s2, o2):
            assert commission_key(s1, o1) != commission_key(s2, o2)

    @given(store_ids, order_ids, order_ids, store_ids, order_ids, order_ids)
    def test_two_refunds_never_share_a_reversal_key(
        self, s1: str, o1: str, r1: str, s2: str, o2: str, r2: str
    ) -> None:
        if (s1, o1, r1) != (s2, o2, r2):
            assert reversal_key(s1, o1, r1) != reversal_key(s2, o2, r2)

    def test_two_stores_may_use_the_same_order_number(self) -> None:
        a = ledger_delta(completed_order("store-a", "1001"), PROGRAM, {})
        b = ledger_delta(completed_order("store-b", "1001"), PROGRAM, {})
        assert [t.key for t in a] == ["commission:store-a:1001"]
        assert [t.key for t in b] == ["commission:store-b:1001"]
        # what store A posted does not count as posted for store B
        posted_a = {t.key: t.amount for t in a}
        assert ledger_delta(completed_order("store-b", "1001"), PROGRAM, posted_a) == b

    def test_an_orders_reversals_are_found_by_its_own_prefix_only(self) -> None:
        refund = Refund("r1", T + timedelta(days=2), (RefundItem("p1", Decimal("50.00")),))
        x = completed_order("s", "1", (refund,))
        # order "1:r1" of the same store must not read as order "1"'s reversals
        other = reversal_key("s", "1:r1", "r2")
        posted = {commission_key("s", "1"): Decimal("10.00"), other: Decimal("-3.00")}
        owed = ledger_delta(x, PROGRAM, posted)
        assert [(t.key, t.amount) for t in owed] == [("reversal:s:1/r1", Decimal("-5.00"))]


CONSIDERED = [
    {"click_id": "c-own", "affiliate_id": "a1", "store_id": "s1", "verdict": "won"},
    {"click_id": "c-rival", "affiliate_id": "a2", "store_id": "s1", "verdict": "earlier"},
    {"click_id": "c-else", "affiliate_id": "a3", "store_id": "s2", "verdict": "other_store"},
    {"click_id": "c-mine-else", "affiliate_id": "a1", "store_id": "s2", "verdict": "other_store"},
]


class TestWhoSeesWhatOfAnExplanation:
    def test_finance_and_admin_see_everything(self) -> None:
        for kind in ("finance", "admin"):
            assert visible_clicks(CONSIDERED, kind, "x", "s1") == CONSIDERED

    def test_a_store_sees_its_own_clicks_and_only_the_existence_of_others(self) -> None:
        shown = visible_clicks(CONSIDERED, "store", "s1", "s1")
        assert shown[:2] == CONSIDERED[:2]
        for c in shown[2:]:
            assert (c["store_id"], c["affiliate_id"], c["click_id"]) == (None, None, None)
            assert c["verdict"] == "other_store"

    def test_an_affiliate_sees_its_own_clicks_and_others_unnamed(self) -> None:
        shown = visible_clicks(CONSIDERED, "affiliate", "a1", "s1")
        assert shown[0] == CONSIDERED[0]
        assert shown[3] == CONSIDERED[3]  # its own click on another store, in full
        assert (shown[1]["affiliate_id"], shown[1]["click_id"]) == (None, None)
        assert shown[1]["store_id"] == "s1"  # the order's store, which it knows
        assert (shown[2]["store_id"], shown[2]["affiliate_id"], shown[2]["click_id"]) == (
            None,
            None,
            None,
        )

    def test_redaction_never_changes_the_input(self) -> None:
        before = [dict(c) for c in CONSIDERED]
        visible_clicks(CONSIDERED, "store", "s2", "s1")
        assert before == CONSIDERED


class TestHoldingPeriodRunsFromArrival:
    def test_a_backdated_completion_counts_from_its_arrival(self) -> None:
        e = OrderCompleted(
            event_id="e",
            occurred_at=T,
            received_at=T + timedelta(days=20),
            store_id="s",
            order_id="o",
        )
        assert effective_at(e) == T + timedelta(days=20)

    def test_a_completion_received_after_its_time_counts_from_its_time_if_later(self) -> None:
        e = OrderCompleted(
            event_id="e",
            occurred_at=T,
            received_at=T - timedelta(seconds=1),
            store_id="s",
            order_id="o",
        )
        assert effective_at(e) == T

    def test_a_cancellation_counts_from_its_event_time(self) -> None:
        e = OrderCancelled(
            event_id="e",
            occurred_at=T,
            received_at=T + timedelta(days=3),
            store_id="s",
            order_id="o",
        )
        assert effective_at(e) == T
