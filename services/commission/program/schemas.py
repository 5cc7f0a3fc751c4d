"""Request and response models of the program routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

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
        "landing URL only (README, Privacy)."
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
            actor=r.actor,
            before=r.before,
            after=r.after,
        )


class MainProductView(BaseModel):
    product_id: str
    rate: str | None  # its own rate; None: the category or default rate applies
    effective_rate: str  # the rate an order placed now would get (without a category)
