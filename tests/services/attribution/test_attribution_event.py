"""The attribution event written as JSON directly equals the pydantic model built field by
field (the consumers validate it with that model)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.attribution.core import Click, Coupon, OrderRef, explain
from services.attribution.repository import StoredOrder
from services.attribution.service import attribution_json
from shared.coupons import CouponPolicy
from shared.events import Attribution, ConsideredClick, OrderItem, OrderPlaced, encode

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def model(
    order: OrderPlaced,
    clicks: list[Click],
    revision: int,
    now: datetime,
    policy: CouponPolicy = CouponPolicy.OFF,
    coupon: Coupon | None = None,
) -> Attribution:
    ref = OrderRef(order.order_id, order.store_id, order.visitor_id, order.occurred_at)
    decision, verdicts = explain(ref, clicks, policy=policy, coupon=coupon)
    c = decision.click
    return Attribution(
        event_id=f"{order.store_id}:{order.order_id}:{revision}",
        type="attribution" if revision == 0 else "attribution_changed",
        occurred_at=now,
        revision=revision,
        order_id=order.order_id,
        store_id=order.store_id,
        visitor_id=order.visitor_id,
        placed_at=order.occurred_at,
        rule=decision.rule,
        affiliate_id=decision.coupon.affiliate_id
        if decision.coupon
        else (c.affiliate_id if c else None),
        coupon_code=decision.coupon.code if decision.coupon else None,
        click_id=c.click_id if c else None,
        click_at=c.occurred_at if c else None,
        link_code=c.link_code if c else None,
        sub_id=c.sub_id if c else None,
        link_product_id=c.product_id if c else None,
        window_start=decision.window_start,
        window_end=decision.window_end,
        order=order,
        considered=[
            ConsideredClick(
                click_id=k.click_id,
                affiliate_id=k.affiliate_id,
                store_id=k.store_id,
                occurred_at=k.occurred_at,
                suspicious=k.suspicious,
                verdict=v.value,
            )
            for k, v in verdicts[:100]
        ],
    )


clicks = st.lists(
    st.builds(
        Click,
        click_id=st.from_regex(r"c[0-9]{1,4}", fullmatch=True),
        store_id=st.sampled_from(["s1", "s2"]),
        visitor_id=st.just("v1"),
        affiliate_id=st.sampled_from(["a1", "a2"]),
        occurred_at=st.integers(-40 * 86_400, 86_400).map(lambda s: T + timedelta(seconds=s)),
        suspicious=st.booleans(),
        link_code=st.just("k1.x.y"),
        product_id=st.one_of(st.none(), st.just("p1")),
        sub_id=st.one_of(st.none(), st.just("blog-1")),
    ),
    max_size=120,
)


@given(
    clicks,
    st.integers(0, 3),
    st.integers(0, 999_999),
    st.sampled_from(list(CouponPolicy)),
    st.one_of(st.none(), st.just(Coupon("ANNA10", "a3"))),
)
def test_the_direct_json_equals_the_model(
    cs: list[Click], revision: int, micros: int, policy: CouponPolicy, coupon: Coupon | None
) -> None:
    order = OrderPlaced(
        event_id="o1-p",
        occurred_at=T,
        store_id="s1",
        order_id="o1",
        visitor_id="v1",
        currency="USD",
        items=[OrderItem(product_id="p1", quantity=2, unit_price=Decimal("10.50"))],
        coupon_code="anna10" if coupon else None,
    )
    now = T + timedelta(minutes=5, microseconds=micros)
    stored = StoredOrder("o1", "s1", "v1", T, orjson.loads(encode(order)), revision - 1, None, None)
    ref = OrderRef("o1", "s1", "v1", T)
    decision, verdicts = explain(ref, cs, policy=policy, coupon=coupon)
    fast = attribution_json(stored, decision, revision, now, verdicts)
    assert Attribution.model_validate_json(fast) == model(order, cs, revision, now, policy, coupon)
