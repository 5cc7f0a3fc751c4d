"""Request and response models of the program routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from services.commission.core.incentives import (
    Caps,
    IncentiveSetting,
    NewBuyerSetting,
    Tier,
    TierSetting,
    incentives_json,
)
from services.commission.core.program import Coupon, ProgramState
from shared.coupons import CouponPolicy
from shared.events import DecimalStr, PrincipalId, UtcDatetime
from shared.partners import Enrollment
from shared.privacy import Consent


class JoinRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"default_rate": "0.06"}]}
    )

    default_rate: DecimalStr | None = None


class RateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate": "0.08"}]})

    rate: DecimalStr


class WindowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"days": 10}]})

    days: int = Field(description="the attribution window in days, 1 to 30")


class LockPeriodRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"days": 60}]})

    days: int = Field(
        description="days after an order completes when its commission locks, 0 to 365 "
        "(the setting in force when the order was placed decides)"
    )


class CouponPolicyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"policy": "coupon_wins"}]}
    )

    policy: CouponPolicy = Field(
        description="off: clicks only (the default); coupon_wins: a valid code attributes the "
        "order to its owner whatever the clicks; click_wins: a valid code counts only when no "
        "click is eligible. The policy in force when an order is placed decides it."
    )


class EnrollmentRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"mode": "approval"}]}
    )

    mode: Enrollment = Field(
        validation_alias=AliasChoices("mode", "enrollment"),
        description="open (the default): every affiliate may promote the store but those it "
        "banned; approval: only the affiliates it approved (docs/partners.md). Also read as "
        "`enrollment` (issue 22's spelling).",
    )


class ConsentRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"consent": "required"}]}
    )

    consent: Consent = Field(
        description="not_required: the visitor cookie is set unless the buyer objects "
        "(Sec-GPC: 1, or the storefront declares consent=false); required: only when the "
        "storefront declares consent=true. Without the cookie the visitor id rides on the "
        "landing URL only (docs/privacy.md)."
    )


class CouponRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "affiliate_id": "anna-podcast",
                    "valid_from": "2026-12-01T00:00:00Z",
                    "valid_to": "2027-01-01T00:00:00Z",
                },
                {"affiliate_id": "anna-podcast"},
            ]
        },
    )

    affiliate_id: PrincipalId = Field(description="the affiliate the code attributes orders to")
    valid_from: UtcDatetime | None = Field(
        None, description="orders placed from then on (included); none: from now"
    )
    valid_to: UtcDatetime | None = Field(
        None, description="orders placed before then (excluded); none: until deleted"
    )


class CouponView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "code": "ANNA10",
                    "affiliate_id": "anna-podcast",
                    "valid_from": "2026-12-01T00:00:00Z",
                    "valid_to": "2027-01-01T00:00:00Z",
                }
            ]
        }
    )

    code: str = Field(description="as stored: upper case (codes match case-insensitively)")
    affiliate_id: str
    valid_from: datetime | None
    valid_to: datetime | None

    @classmethod
    def of(cls, c: Coupon) -> CouponView:
        return cls(
            code=c.code, affiliate_id=c.affiliate_id, valid_from=c.valid_from, valid_to=c.valid_to
        )


class NewBuyerRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"extra_rate": "0.02"}]}
    )

    extra_rate: DecimalStr = Field(
        description="percentage points added to each line's rate of an order the storefront "
        "marks as the buyer's first (order_placed.new_buyer), 0 to 0.9; 0 turns it off"
    )

    def setting(self) -> IncentiveSetting:
        return NewBuyerSetting(self.extra_rate)


class TierView(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: DecimalStr = Field(
        alias="from",
        description="the threshold: the affiliate's qualifying sales with the store in a "
        "calendar month (UTC), in the table's currency",
    )
    extra_rate: DecimalStr = Field(description="paid on all the month's qualifying sales")


class TiersRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "currency": "USD",
                    "tiers": [
                        {"from": "1000.00", "extra_rate": "0.02"},
                        {"from": "10000.00", "extra_rate": "0.04"},
                    ],
                }
            ]
        },
    )

    currency: str = Field(max_length=8, description="ISO 4217 code of the table")
    tiers: list[TierView] = Field(
        max_length=100,
        description="thresholds strictly increasing (at most 20; empty: no tiers in this "
        "currency any more). A threshold counts sales amounts (price × quantity − shipping, "
        "less refunds) of the affiliate's completed orders with the store in the month: "
        "never items, never orders. The highest tier reached pays its extra rate × all of "
        "those sales, once, after the month has settled.",
    )

    def setting(self) -> IncentiveSetting:
        return TierSetting(self.currency, tuple(Tier(t.start, t.extra_rate) for t in self.tiers))


#: a cap per currency (ISO 4217 code → amount)
CapTable = Annotated[dict[Annotated[str, Field(max_length=8)], DecimalStr], Field(max_length=200)]


class CapsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"per_order": {"USD": "5.00"}, "per_affiliate_month": {"USD": "1000.00"}}]
        },
    )

    per_order: CapTable = Field(
        default_factory=dict, description="the most commission one order pays, per currency"
    )
    per_affiliate_month: CapTable = Field(
        default_factory=dict,
        description="the most one affiliate earns with the store per calendar month of "
        "completion (UTC), tier bonuses included, per currency",
    )

    def setting(self) -> IncentiveSetting:
        return Caps(dict(self.per_order), dict(self.per_affiliate_month))


class IncentivesView(BaseModel):
    new_buyer: dict[str, str] = Field(description='{"extra_rate": …} of the new-buyer bonus')
    tiers: dict[str, list[dict[str, str]]] = Field(
        description='per currency, [{"from", "extra_rate"}, …]'
    )
    caps: dict[str, dict[str, str]] = Field(
        description='{"per_order": {currency: amount}, "per_affiliate_month": {…}}'
    )


class MainProductRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate": "0.12"}]})

    rate: DecimalStr | None = None


class ProgramResponse(BaseModel):
    store_id: str
    state: str  # joined | exited | never_joined
    joined_at: datetime | None
    exited_at: datetime | None
    exit_allowed_at: datetime | None
    rejoin_allowed_at: datetime | None
    default_rate: str
    category_rates: dict[str, str]
    main_products: dict[str, str | None]
    attribution_window_days: int = Field(
        description="the window in force: the program's own, else the deployment's default"
    )
    attribution_window_is_default: bool
    coupon_policy: CouponPolicy = Field(description="the coupon policy in force")
    consent: Consent = Field(
        Consent.NOT_REQUIRED, description="whether the visitor cookie needs consent"
    )
    lock_days: int = Field(
        description="the lock period in force: orders placed now lock this many days after "
        "they complete"
    )
    enrollment: Enrollment = Field(
        Enrollment.OPEN, description="who may promote the store: open or approval"
    )
    incentives: IncentivesView | None = Field(
        None, description="the new-buyer bonus, performance tiers and caps in force"
    )

    @classmethod
    def of(cls, store_id: str, s: ProgramState, default_window: int) -> ProgramResponse:
        return cls(
            store_id=store_id,
            state="joined" if s.joined else ("exited" if s.exited_at else "never_joined"),
            joined_at=s.joined_at if s.joined else None,
            exited_at=s.exited_at,
            exit_allowed_at=s.exit_allowed_at,
            rejoin_allowed_at=s.rejoin_allowed_at,
            default_rate=str(s.default_rate),
            category_rates={k: str(v) for k, v in s.category_rates.items()},
            main_products={
                k: (str(v) if v is not None else None) for k, v in s.main_products.items()
            },
            attribution_window_days=s.window_days or default_window,
            attribution_window_is_default=s.window_days is None,
            coupon_policy=s.coupon_policy,
            consent=s.consent,
            lock_days=s.lock_days,
            enrollment=s.enrollment,
            incentives=IncentivesView(**incentives_json(s.incentives)),
        )


class OperationView(BaseModel):
    id: int
    kind: str
    at: datetime
    key: str | None  # category or product id
    rate: str | None
    days: int | None  # attribution window
    policy: str | None = None  # coupon policy
    affiliate_id: str | None = None  # a coupon code's owner (``key``: the code)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    incentive: dict[str, Any] | None = None  # an incentive's new setting (as stored)
    actor: str
    before: dict[str, object]
    after: dict[str, object]

    @classmethod
    def of(cls, r: Any) -> OperationView:
        """A row of the operation record."""
        return cls(
            id=r.id,
            kind=r.kind,
            at=r.at,
            key=r.key,
            rate=str(r.rate.normalize()) if r.rate is not None else None,
            days=r.days,
            policy=r.policy,
            affiliate_id=r.affiliate_id,
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            incentive=r.incentive,
            actor=r.actor,
            before=r.before,
            after=r.after,
        )


class MainProductView(BaseModel):
    product_id: str
    rate: str | None  # its own rate; None: the category or default rate applies
    effective_rate: str  # the rate an order placed now would get (without a category)
