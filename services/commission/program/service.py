"""Program use cases: change a store's program (recorded, the channel re-ranked, the tracker
told), read it and its operation record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.channel.service import ChannelService
from services.commission.core.audit import Recorder
from services.commission.core.incentives import IncentiveSetting
from services.commission.core.program import (
    Coupon,
    OpKind,
    ProgramHistory,
    ProgramOp,
    ProgramState,
    check_coupon,
    coupon_json,
    state_json,
)
from services.commission.errors import NotFound
from services.commission.program.repository import ProgramRepository
from shared.clock import Clock, SystemClock
from shared.coupons import CouponPolicy, coupon_key
from shared.partners import Enrollment
from shared.privacy import Consent

#: the changes the tracker and attribution must learn of (a store's directory entry holds
#: membership, window, coupon policy and consent)
DIRECTORY_CHANGES: Final = frozenset(
    {
        OpKind.JOIN,
        OpKind.EXIT,
        OpKind.ATTRIBUTION_WINDOW,
        OpKind.COUPON_POLICY,
        OpKind.CONSENT,
        OpKind.ENROLLMENT,
    }
)


class StoreDirectory(Protocol):
    """Who knows the principals and tells the tracker and attribution (the admin service)."""

    async def store_exists(self, session: AsyncSession, store_id: str) -> bool: ...

    async def affiliate_exists(self, session: AsyncSession, affiliate_id: str) -> bool: ...

    async def publish_store(self, session: AsyncSession, store_id: str, now: datetime) -> None: ...

    async def publish_coupon(
        self, session: AsyncSession, store_id: str, code: str, coupon: Coupon | None, now: datetime
    ) -> None: ...


@dataclass
class ProgramService:
    clock: Clock = field(default_factory=SystemClock)
    #: days: the deployment's attribution window, for stores that set none
    default_window: int = 15
    channel: ChannelService = field(default_factory=ChannelService)
    #: set by the app: a change of membership or window is published to the directory
    directory: StoreDirectory | None = None

    async def histories(
        self, session: AsyncSession, store_ids: set[str] | list[str]
    ) -> dict[str, ProgramHistory]:
        """Every store's program (an empty history for a store that never changed it)."""
        return await ProgramRepository(session).programs(store_ids)

    async def history(self, session: AsyncSession, store_id: str) -> ProgramHistory:
        return (await self.histories(session, [store_id]))[store_id]

    async def locked_histories(
        self, session: AsyncSession, store_ids: set[str] | list[str], *, shared: bool = False
    ) -> dict[str, ProgramHistory]:
        """The programs read under their locks: a program change waits for the caller's
        transaction, or the caller for it (``shared``: readers do not wait for each other)."""
        repo = ProgramRepository(session)
        await repo.lock(store_ids, shared=shared)
        return await repo.programs(store_ids)

    async def change_program(
        self,
        session: AsyncSession,
        store_id: str,
        kind: OpKind,
        actor: str,
        key: str | None = None,
        rate: Decimal | None = None,
        days: int | None = None,
        policy: CouponPolicy | None = None,
        at: datetime | None = None,
        audit: Recorder | None = None,
        consent: Consent | None = None,
        enrollment: Enrollment | None = None,
        incentive: IncentiveSetting | None = None,
    ) -> ProgramState:
        """Apply one program operation now (the service's clock, or ``at``) and record it; the
        product channel is re-ranked in the same transaction. Raises the core's refusals."""
        repo = ProgramRepository(session)
        await repo.lock([store_id])
        history = (await repo.programs([store_id]))[store_id]
        op = ProgramOp(
            kind,
            at or self.clock.now(),
            key,
            rate,
            days,
            policy,
            consent=consent,
            enrollment=enrollment,
            incentive=incentive,
        )
        before = history.current()
        after = history.append(op).current()  # raises ProgramError when the rules refuse
        await repo.add_program_op(store_id, op, actor, state_json(before), state_json(after))
        if audit is not None:
            await audit.record(
                "program.update",
                f"store:{store_id}/program",
                tenant=f"store:{store_id}",
                before=state_json(before),
                after=state_json(after),
            )
        # the product channel shows the rates in force now, and only stores in the program
        await self.channel.refresh_store(session, store_id, after, op.at)
        return after

    async def change(
        self,
        session: AsyncSession,
        store_id: str,
        kind: OpKind,
        actor: str,
        key: str | None = None,
        rate: Decimal | None = None,
        days: int | None = None,
        policy: CouponPolicy | None = None,
        audit: Recorder | None = None,
        consent: Consent | None = None,
        enrollment: Enrollment | None = None,
        incentive: IncentiveSetting | None = None,
    ) -> ProgramHistory:
        """A change asked for over HTTP: of a known store (else 404), published to the
        directory when the tracker or attribution must know (effective from the operation's
        time); returns the program after it."""
        await self._known_store(session, store_id)
        now = self.clock.now()
        await self.change_program(
            session,
            store_id,
            kind,
            actor,
            key,
            rate,
            days,
            policy,
            now,
            audit,
            consent,
            incentive=incentive,
            enrollment=enrollment,
        )
        if self.directory is not None and kind in DIRECTORY_CHANGES:
            await self.directory.publish_store(session, store_id, now)
        return await self.history(session, store_id)

    async def _known_store(self, session: AsyncSession, store_id: str) -> None:
        if self.directory is not None and not await self.directory.store_exists(session, store_id):
            raise NotFound("store", store_id=store_id)

    async def coupons(self, session: AsyncSession, store_id: str) -> list[Coupon]:
        """The store's coupon codes as registered now, by code."""
        return await ProgramRepository(session).coupons(store_id)

    async def put_coupon(
        self,
        session: AsyncSession,
        store_id: str,
        coupon: Coupon,
        actor: str,
        audit: Recorder | None = None,
    ) -> tuple[Coupon, bool]:
        """Register ``coupon`` (or change its validity) from now on: in the operation record,
        and published to attribution through the directory. Returns the code as stored and
        whether it is new (the same registration again changes nothing). Refusals:
        unknown store or affiliate (404), the rules of :func:`check_coupon` and of the program
        (the store must be in it)."""
        await self._known_store(session, store_id)
        repo = ProgramRepository(session)
        await repo.lock([store_id])
        existing = await repo.coupon(store_id, coupon_key(coupon.code))
        coupon = check_coupon(coupon, existing)
        if self.directory is not None and not await self.directory.affiliate_exists(
            session, coupon.affiliate_id
        ):
            raise NotFound("affiliate", affiliate_id=coupon.affiliate_id)
        if coupon == existing:
            return coupon, False  # nothing to record
        now = self.clock.now()
        op = ProgramOp(OpKind.COUPON, now, coupon.code, coupon=coupon)
        history = (await repo.programs([store_id]))[store_id]
        history.append(op)  # raises NotJoined, OutOfOrder
        await repo.add_program_op(store_id, op, actor, coupon_json(existing), coupon_json(coupon))
        if audit is not None:
            await audit.record(
                "coupon.put",
                f"store:{store_id}/coupon/{coupon.code}",
                tenant=f"store:{store_id}",
                before=coupon_json(existing) or None,
                after=coupon_json(coupon),
            )
        await repo.put_coupon(store_id, coupon, now)
        if self.directory is not None:
            await self.directory.publish_coupon(session, store_id, coupon.code, coupon, now)
        return coupon, existing is None

    async def delete_coupon(
        self,
        session: AsyncSession,
        store_id: str,
        code: str,
        actor: str,
        audit: Recorder | None = None,
    ) -> Coupon:
        """Delete a code from now on (orders placed from now on are not attributed by it): in
        the operation record and published. 404 when the store has no such code."""
        await self._known_store(session, store_id)
        repo = ProgramRepository(session)
        await repo.lock([store_id])
        existing = await repo.coupon(store_id, coupon_key(code))
        if existing is None:
            raise NotFound("coupon code", store_id=store_id, coupon_code=code[:80])
        now = self.clock.now()
        op = ProgramOp(OpKind.DELETE_COUPON, now, existing.code)
        (await repo.programs([store_id]))[store_id].append(op)  # raises OutOfOrder
        await repo.add_program_op(store_id, op, actor, coupon_json(existing), coupon_json(None))
        if audit is not None:
            await audit.record(
                "coupon.delete",
                f"store:{store_id}/coupon/{existing.code}",
                tenant=f"store:{store_id}",
                before=coupon_json(existing),
                after=None,
            )
        await repo.delete_coupon(store_id, existing.code)
        if self.directory is not None:
            await self.directory.publish_coupon(session, store_id, existing.code, None, now)
        return existing

    async def operations(
        self,
        session: AsyncSession,
        store_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Any]:
        return await ProgramRepository(session).operations(store_id, start, end)
