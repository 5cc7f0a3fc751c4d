"""The worked examples (tests/scenarios/*.json) and their replay through the pure core."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.attribution.core import (
    DEFAULT_WINDOW,
    Click,
    CouponHistory,
    CouponVersion,
    Decision,
    OrderRef,
    coupon_for,
    decide,
)
from services.commission.core.commission import (
    LineItem,
    OrderCommission,
    OrderFacts,
    OrderStatus,
    Refund,
    RefundItem,
    compute_order,
)
from services.commission.core.program import OpKind, ProgramHistory, ProgramOp
from shared.coupons import CouponPolicy, coupon_key

#: the worked examples, kept in the repository beside this file (the suite reads nothing outside
#: the clone, so a clone with nothing beside it passes ``make test``)
SCENARIO_DIR = Path(__file__).resolve().parent

_PROGRAM_KINDS = {
    "program.join": OpKind.JOIN,
    "program.exit": OpKind.EXIT,
    "program.default": OpKind.DEFAULT_RATE,
    "program.category": OpKind.CATEGORY_RATE,
    "program.main": OpKind.MAIN_PRODUCT,
    "program.unmain": OpKind.UNMAIN_PRODUCT,
    "program.coupon_policy": OpKind.COUPON_POLICY,
}
#: a code of a store registered (``code``, ``affiliate_id``, ``valid_from``?, ``valid_to``?) or
#: deleted (``code``)
COUPON_KINDS = ("coupon.put", "coupon.delete")
#: figures an expectation may state or leave out (the first scenarios predate coupon codes)
OPTIONAL_FIGURES = ("rule", "coupon_code")


def scenario_files() -> list[Path]:
    files = sorted(SCENARIO_DIR.glob("*.json"))
    assert files, f"no scenarios found in {SCENARIO_DIR}"
    return files


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def program_op(event: dict[str, Any]) -> ProgramOp:
    rate = event.get("rate")
    return ProgramOp(
        kind=_PROGRAM_KINDS[event["kind"]],
        at=ts(event["at"]),
        key=event.get("category_id") or event.get("product_id"),
        rate=Decimal(rate) if rate is not None else None,
        policy=CouponPolicy(event["policy"]) if "policy" in event else None,
    )


def ts_or_none(value: str | None) -> datetime | None:
    return ts(value) if value is not None else None


def line_items(event: dict[str, Any]) -> tuple[LineItem, ...]:
    return tuple(
        LineItem(
            product_id=i["product_id"],
            category_id=i.get("category_id"),
            quantity=int(i["quantity"]),
            unit_price=Decimal(i["unit_price"]),
            shipping_fee=Decimal(i["shipping_fee"]),
        )
        for i in event["items"]
    )


@dataclass
class PureReplay:
    """The whole pipeline folded in memory: the reference the services must agree with."""

    programs: dict[str, ProgramHistory] = field(default_factory=dict)
    clicks: list[Click] = field(default_factory=list)
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    visitors: dict[str, str] = field(default_factory=dict)
    codes: dict[tuple[str, str], CouponHistory] = field(default_factory=dict)
    entered: dict[str, str | None] = field(default_factory=dict)  # order → code entered

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        at = ts(event["at"])
        if kind in _PROGRAM_KINDS:
            history = self.programs.get(event["store_id"], ProgramHistory())
            self.programs[event["store_id"]] = history.append(program_op(event))
        elif kind in COUPON_KINDS:
            code = coupon_key(event["code"])
            key = (event["store_id"], code)
            put = kind == "coupon.put"
            version = CouponVersion(
                at,
                event["affiliate_id"] if put else None,
                ts_or_none(event.get("valid_from")),
                ts_or_none(event.get("valid_to")),
            )
            codes = self.codes.get(key, CouponHistory(code)).with_version(version)
            assert codes is not None, f"two changes of {key} at {at}"
            self.codes[key] = codes
        elif kind == "click":
            self.clicks.append(
                Click(
                    click_id=event["click_id"],
                    store_id=event["store_id"],
                    visitor_id=event["visitor_id"],
                    affiliate_id=event["affiliate_id"],
                    occurred_at=at,
                    suspicious=bool(event.get("suspicious", False)),
                )
            )
        elif kind == "order_placed":
            self.visitors[event["order_id"]] = event["visitor_id"]
            self.entered[event["order_id"]] = event.get("coupon_code")
            self.orders[event["order_id"]] = OrderFacts(
                order_id=event["order_id"],
                store_id=event["store_id"],
                currency=event["currency"],
                placed_at=at,
                items=line_items(event),
            )
        elif kind in ("order_completed", "order_cancelled"):
            facts = self.orders[event["order_id"]]
            if facts.status is OrderStatus.PLACED:
                status = (
                    OrderStatus.COMPLETED if kind == "order_completed" else OrderStatus.CANCELLED
                )
                self.orders[event["order_id"]] = replace(facts, status=status)
        elif kind == "order_refunded":
            facts = self.orders[event["order_id"]]
            refund = Refund(
                event["refund_id"],
                at,
                tuple(RefundItem(i["product_id"], Decimal(i["amount"])) for i in event["items"]),
            )
            self.orders[event["order_id"]] = replace(facts, refunds=(*facts.refunds, refund))
        else:
            raise AssertionError(f"unknown scenario event kind {kind}")

    def decision(self, order_id: str) -> Decision:
        """Attribution's decision: the clicks, the code entered and the store's coupon policy
        in force at placement (the program's history, as attribution learns it)."""
        facts = self.orders[order_id]
        ref = OrderRef(
            order_id,
            facts.store_id,
            self.visitors[order_id],
            facts.placed_at,
            self.entered.get(order_id),
        )
        program = self.programs.get(facts.store_id, ProgramHistory())
        policy = program.state_at(facts.placed_at).coupon_policy
        return decide(ref, self.clicks, DEFAULT_WINDOW, policy, coupon_for(ref, self.codes))

    def result(self, order_id: str) -> OrderCommission:
        facts = self.orders[order_id]
        decision = self.decision(order_id)
        attributed = replace(
            facts,
            affiliate_id=decision.affiliate_id,
            click_id=decision.click.click_id if decision.click else None,
            click_at=decision.click.occurred_at if decision.click else None,
        )
        return compute_order(attributed, self.programs.get(facts.store_id, ProgramHistory()))


def as_expected(result: OrderCommission, decision: Decision) -> dict[str, Any]:
    """An order's figures in the scenarios' own JSON shape."""
    money = lambda d: f"{d:.2f}"  # noqa: E731 - scenarios use 2-digit currencies
    return {
        "order_id": result.order_id,
        "affiliate": result.affiliate_id,
        "click_id": decision.click.click_id if decision.click else None,
        "rule": decision.rule,
        "coupon_code": decision.coupon.code if decision.coupon else None,
        "chargeable": result.chargeable,
        "status": result.status.value,
        "estimated": money(result.estimated),
        "payable": money(result.payable),
        "items": [
            {
                "product_id": i.product_id,
                "base": money(i.base),
                "rate": str(i.rate),
                "commission": money(i.commission),
                "reversed": money(i.reversed),
                "net": money(i.net),
            }
            for i in result.items
        ],
    }
