"""All SQL of the programs: the append-only operation record of every store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission import models as m
from services.commission.core.incentives import setting_json, setting_of
from services.commission.core.program import COUPON_OPS, Coupon, OpKind, ProgramHistory, ProgramOp
from shared.coupons import CouponPolicy
from shared.db import lock_keys
from shared.partners import Enrollment
from shared.privacy import Consent

#: the advisory-lock namespace of program changes (and of payouts, keyed apart)
LOCKS = "program"


class ProgramRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, store_ids: Iterable[str], *, shared: bool = False) -> None:
        """Serialise program changes of the stores until commit (``shared``: a reader that
        must not interleave with a change, e.g. one that derives rates from the program)."""
        await lock_keys(self.session, LOCKS, store_ids, shared=shared)

    async def programs(self, store_ids: Iterable[str]) -> dict[str, ProgramHistory]:
        ids = list(set(store_ids))
        if not ids:
            return {}
        ops_t = m.program_ops
        rows = await self.session.execute(
            select(ops_t)
            .where(ops_t.c.store_id.in_(ids), ops_t.c.kind.not_in([k.value for k in COUPON_OPS]))
            .order_by(ops_t.c.store_id, ops_t.c.at, ops_t.c.id)
        )
        ops: dict[str, list[ProgramOp]] = {s: [] for s in ids}
        for r in rows:
            rate = r.rate.normalize() if r.rate is not None else None  # Numeric pads zeros
            kind = OpKind(r.kind)
            # one text column holds the op's setting: the coupon policy, consent or enrollment
            consent = Consent(r.policy) if kind is OpKind.CONSENT else None
            enrollment = Enrollment(r.policy) if kind is OpKind.ENROLLMENT else None
            policy = CouponPolicy(r.policy) if kind is OpKind.COUPON_POLICY and r.policy else None
            incentive = setting_of(r.incentive) if r.incentive is not None else None
            ops[r.store_id].append(
                ProgramOp(
                    kind,
                    r.at,
                    r.key,
                    rate,
                    r.days,
                    policy,
                    consent=consent,
                    incentive=incentive,
                    enrollment=enrollment,
                )
            )
        return {s: ProgramHistory(tuple(v)) for s, v in ops.items()}

    async def add_program_op(
        self,
        store_id: str,
        op: ProgramOp,
        actor: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> int:
        result = await self.session.execute(
            insert(m.program_ops)
            .values(
                store_id=store_id,
                kind=op.kind.value,
                at=op.at,
                key=op.key,
                rate=op.rate,
                days=op.days,
                policy=_setting(op),
                affiliate_id=op.coupon.affiliate_id if op.coupon else None,
                valid_from=op.coupon.valid_from if op.coupon else None,
                valid_to=op.coupon.valid_to if op.coupon else None,
                incentive=setting_json(op.incentive) if op.incentive is not None else None,
                actor=actor,
                before=before,
                after=after,
            )
            .returning(m.program_ops.c.id)
        )
        return int(result.scalar_one())

    async def operations(
        self, store_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Any]:
        """The store's operation record, oldest first, optionally in [start, end)."""
        ops = m.program_ops
        query = select(ops).where(ops.c.store_id == store_id)
        if start is not None:
            query = query.where(ops.c.at >= start)
        if end is not None:
            query = query.where(ops.c.at < end)
        return list(await self.session.execute(query.order_by(ops.c.at, ops.c.id)))

    async def coupon(self, store_id: str, code: str) -> Coupon | None:
        """The store's registration of ``code`` (stored form), if any."""
        c = m.coupons
        row = (
            await self.session.execute(select(c).where(c.c.store_id == store_id, c.c.code == code))
        ).first()
        return _coupon(row) if row is not None else None

    async def coupons(self, store_id: str) -> list[Coupon]:
        """The store's codes, by code."""
        c = m.coupons
        rows = await self.session.execute(
            select(c).where(c.c.store_id == store_id).order_by(c.c.code)
        )
        return [_coupon(r) for r in rows]

    async def put_coupon(self, store_id: str, coupon: Coupon, at: datetime) -> None:
        values = {
            "affiliate_id": coupon.affiliate_id,
            "valid_from": coupon.valid_from,
            "valid_to": coupon.valid_to,
            "updated_at": at,
        }
        await self.session.execute(
            insert(m.coupons)
            .values(store_id=store_id, code=coupon.code, **values)
            .on_conflict_do_update(index_elements=["store_id", "code"], set_=values)
        )

    async def delete_coupon(self, store_id: str, code: str) -> None:
        c = m.coupons
        await self.session.execute(c.delete().where(c.c.store_id == store_id, c.c.code == code))


def _coupon(r: Any) -> Coupon:
    return Coupon(r.code, r.affiliate_id, r.valid_from, r.valid_to)


def _setting(op: ProgramOp) -> str | None:
    """The op's setting as the ``policy`` column keeps it (coupon policy, consent or
    enrollment)."""
    if op.consent is not None:
        return op.consent.value
    if op.enrollment is not None:
        return op.enrollment.value
    return op.policy.value if op.policy is not None else None
