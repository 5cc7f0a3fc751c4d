"""Request and response models of the audit log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntryView(BaseModel):
    """One change: who (role and principal id), when (UTC), from where (client address,
    user agent, request id), what (``kind``, ``subject``, whose data: ``tenant``) and the
    subject's state ``before`` and ``after`` (JSON, secrets shown as ``[redacted]``)."""

    id: int = Field(description="the entry's position in the log (the keyset cursor)")
    at: datetime
    actor_role: str = Field(examples=["store"])
    actor_id: str
    client_address: str | None
    user_agent: str | None
    request_id: str | None
    kind: str = Field(examples=["program.update"])
    subject: str = Field(examples=["store:s1/program"])
    tenant: str | None = Field(examples=["store:s1"])
    before: Any = Field(description="the subject before the change (null: it was created)")
    after: Any = Field(description="the subject after the change (null: it was deleted)")
    changed: list[str] = Field(description="the top-level fields that changed")

    @classmethod
    def of(cls, row: Any) -> AuditEntryView:
        return cls(
            id=row.id,
            at=row.at,
            actor_role=row.actor_role,
            actor_id=row.actor_id,
            client_address=row.client_address,
            user_agent=row.user_agent,
            request_id=row.request_id,
            kind=row.kind,
            subject=row.subject,
            tenant=row.tenant,
            before=row.before,
            after=row.after,
            changed=list(row.changed),
        )

    def csv_row(self) -> dict[str, Any]:
        """The entry as a CSV row: ``before``, ``after`` and ``changed`` as compact JSON."""
        row = self.model_dump(mode="json")
        for name in ("before", "after", "changed"):
            row[name] = json.dumps(row[name], sort_keys=True, separators=(",", ":"))
        return row


class AuditPage(BaseModel):
    items: list[AuditEntryView]
    next_cursor: int | None = Field(description="pass back as `cursor` for the next page")
