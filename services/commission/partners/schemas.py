"""Request and response bodies of partner approval."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.commission.core.partners import PartnerReason
from shared.partners import PartnerStatus


class ApplicationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"message": "I review garden tools"}]}
    )

    message: str | None = Field(None, max_length=1000, description="for the store to read")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "low_quality_traffic", "note": "bot clicks"}]},
    )

    reason: PartnerReason | None = Field(
        None, description="why (required to reject or ban: else 422 `reason_required`)"
    )
    note: str | None = Field(None, max_length=1000, description="for the affiliate to read")


class PartnerView(BaseModel):
    store_id: str
    affiliate_id: str
    status: PartnerStatus
    message: str | None = Field(description="the application's message")
    reason: str | None = Field(description="the last decision's reason code")
    note: str | None = Field(description="the last decision's note")
    applied_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: Any) -> PartnerView:
        return cls(
            store_id=r.store_id,
            affiliate_id=r.affiliate_id,
            status=PartnerStatus(r.status),
            message=r.message,
            reason=r.reason,
            note=r.note,
            applied_at=r.applied_at,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class PartnerPage(BaseModel):
    items: list[PartnerView]
    next_cursor: str | None = Field(
        description="pass it back as `cursor` for the next page (null: the last page)"
    )


class PartnerEventView(BaseModel):
    id: int
    action: str
    status_before: PartnerStatus | None
    status_after: PartnerStatus
    reason: str | None
    note: str | None
    message: str | None
    actor: str
    at: datetime

    @classmethod
    def of(cls, r: Any) -> PartnerEventView:
        return cls(
            id=r.id,
            action=r.action,
            status_before=PartnerStatus(r.status_before) if r.status_before else None,
            status_after=PartnerStatus(r.status_after),
            reason=r.reason,
            note=r.note,
            message=r.message,
            actor=r.actor,
            at=r.at,
        )


class PartnerDetail(PartnerView):
    history: list[PartnerEventView] = Field(description="every change, oldest first")
