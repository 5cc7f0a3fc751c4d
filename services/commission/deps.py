"""What every route of the commission service depends on: the request's transaction, the
caller (bearer keys) and what it may see, the services, and the shared parameter types."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Final

from fastapi import Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.admin.service import AdminService
from services.commission.audit.service import AuditService, AuditTrail
from services.commission.camp.service import CampService
from services.commission.channel.service import ChannelService
from services.commission.core.audit import Actor, Origin, Role
from services.commission.errors import EmptyTimeRange, Forbidden, Unauthorized
from services.commission.finance.service import FinanceService
from services.commission.orders.service import OrderService
from services.commission.partners.service import PartnerService
from services.commission.program.service import ProgramService
from services.commission.reports.service import ReportService
from services.commission.webhooks.service import WEBHOOKS_DUE
from shared.events import Ident, IsoDatetime, PrincipalId
from shared.http import Bearer, bearer_token, request_id
from shared.secrets import PrincipalKind

# -- parameters: what an id, a time or a row number may be, checked before any query ---------

#: the largest value of a BIGINT column (payout and posting ids): a larger number names nothing
MAX_BIGINT: Final = 2**63 - 1
#: a store, affiliate or finance user id in a path (the shape they are created with)
PrincipalIdPath = Annotated[PrincipalId, Path()]
StoreIdPath = Annotated[PrincipalId, Path(description="the store's id")]
#: an order, product or category id in a path (the identifier budget of the events)
OrderIdPath = Annotated[Ident, Path(description="the store's order number")]
IdentPath = Annotated[Ident, Path()]
RowIdPath = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
#: times of a range: ISO 8601 with an offset, never a bare number, representable in UTC,
#: years 1000 to 8999 (else 422), ``from`` before ``to`` (else 422 ``empty_range``)
_RANGE = (
    "ISO 8601 date-time with an offset (`Z` or `±hh:mm`), years 1000 to 8999 (else 422 "
    "`datetime_out_of_range`); a bare number such as `0` is refused (422 `datetime_not_iso`); "
    "`from` must be before `to` (else 422 `empty_range`)"
)
TimeFrom = Annotated[
    IsoDatetime | None,
    Query(alias="from", description=f"from this time (included; default 1970-01-01). {_RANGE}"),
]
TimeTo = Annotated[
    IsoDatetime | None,
    Query(alias="to", description=f"to this time (excluded; default now). {_RANGE}"),
]
#: the UTC days a report may cover (a range of days must be computable in both directions)
FIRST_DAY: Final = date(1970, 1, 1)
LAST_DAY: Final = date(9998, 12, 31)


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``[from, to)``, by default from 1970 to now (both are UTC: :data:`TimeFrom`)."""
    end = end or datetime.now(UTC)
    start = start or datetime(1970, 1, 1, tzinfo=UTC)
    if start >= end:
        raise EmptyTimeRange()
    return start, end


# -- the transaction ---------------------------------------------------------------------------


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: commit on success, roll back on error."""
    async with request.app.state.sessions() as session, session.begin():
        yield session
    # committed: let the outbox relay publish what this request wrote (directory entries)
    relay = getattr(request.app.state, "relay", None)
    if relay is not None:
        relay.poke()
    # and the webhook worker the deliveries it made due (a payout, a redelivery, an enable)
    worker = getattr(request.app.state, "webhook_worker", None)
    if worker is not None and session.info.get(WEBHOOKS_DUE):
        worker.poke()


#: ``scope="function"``: the transaction commits when the route returns, *before* the response
#: is sent (FastAPI's default runs a yield dependency's exit after sending). A client that got
#: ``201`` for a new key may use it at once, and a commit that fails is an error answer, never a
#: success answered for something that was then rolled back.
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


# -- the caller --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind | str  # "admin" for the admin token
    id: str

    @property
    def actor(self) -> str:
        """How the operation record names the caller."""
        return f"{self.kind}:{self.id}"

    def may_see_store(self, store_id: str) -> bool:
        return self.kind in ("finance", "admin") or (self.kind == "store" and self.id == store_id)

    def may_see_affiliate(self, affiliate_id: str | None) -> bool:
        return self.kind in ("finance", "admin") or (
            self.kind == "affiliate" and affiliate_id is not None and self.id == affiliate_id
        )

    def may_change_store(self, store_id: str) -> bool:
        """Program changes: the store itself or the admin, never finance or another store."""
        return self.kind == "admin" or (self.kind == "store" and self.id == store_id)

    def require_store(self, store_id: str) -> None:
        """Reads of a store's data: the store, finance or the admin."""
        if not self.may_see_store(store_id):
            raise Forbidden()

    def require_store_owner(self, store_id: str) -> None:
        """Changes of a store's program: the store's own key or the admin token."""
        if not self.may_change_store(store_id):
            raise Forbidden("only the store's own key or the admin token may change its program")

    def require(self, *kinds: str) -> None:
        if self.kind not in kinds and self.kind != "admin":
            named = [k for k in kinds if k != "admin"]
            raise Forbidden(
                f"this needs a {' or '.join(named)} key or the admin token"
                if named
                else "this needs the admin token"
            )


async def get_admin(request: Request) -> AdminService:
    admin: AdminService = request.app.state.admin
    return admin


Admin = Annotated[AdminService, Depends(get_admin)]


async def authenticate(request: Request, session: AsyncSession) -> Principal:
    """The principal of the request's bearer key (or the admin token), else 401."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized()
    # constant time: how much of the token matched must not show in the response time
    if hmac.compare_digest(token.encode(), request.app.state.settings.admin_token.encode()):
        return Principal("admin", "admin")
    admin: AdminService = request.app.state.admin
    found = await admin.principal_of_key(session, token)
    if found is None:
        raise Unauthorized("unknown API key")
    return Principal(*found)


async def current_principal(request: Request, session: Session, _: Bearer) -> Principal:
    return await authenticate(request, session)


Caller = Annotated[Principal, Depends(current_principal)]


# -- the services (built once by the app) -------------------------------------------------------


async def get_programs(request: Request) -> ProgramService:
    programs: ProgramService = request.app.state.programs
    return programs


async def get_orders(request: Request) -> OrderService:
    orders: OrderService = request.app.state.orders
    return orders


async def get_finance(request: Request) -> FinanceService:
    finance: FinanceService = request.app.state.finance
    return finance


async def get_reports(request: Request) -> ReportService:
    reports: ReportService = request.app.state.reports
    return reports


async def get_partners(request: Request) -> PartnerService:
    partners: PartnerService = request.app.state.partners
    return partners


async def get_channel(request: Request) -> ChannelService:
    channel: ChannelService = request.app.state.channel
    return channel


async def get_camp(request: Request) -> CampService:
    camp: CampService = request.app.state.camp
    return camp


Programs = Annotated[ProgramService, Depends(get_programs)]
Orders = Annotated[OrderService, Depends(get_orders)]
Finance = Annotated[FinanceService, Depends(get_finance)]
Reports = Annotated[ReportService, Depends(get_reports)]
Channel = Annotated[ChannelService, Depends(get_channel)]
Camp = Annotated[CampService, Depends(get_camp)]
Partners = Annotated[PartnerService, Depends(get_partners)]


async def get_audit_log(request: Request) -> AuditService:
    log: AuditService = request.app.state.audit
    return log


AuditLog = Annotated[AuditService, Depends(get_audit_log)]


async def get_audit(request: Request, caller: Caller, session: Session) -> AuditTrail:
    """The request's audit trail: its entries are written in the request's transaction, with
    the caller, its address (as the proxy-aware edge resolved it), user agent and request id."""
    log: AuditService = request.app.state.audit
    origin = Origin(
        address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=request_id(request.scope),
    )
    return log.trail(session, Actor(Role(caller.kind), caller.id), origin)


#: what a changing route records its change to (one entry per change, before and after)
Audit = Annotated[AuditTrail, Depends(get_audit)]
