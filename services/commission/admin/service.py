"""Admin use cases: principals (stores, affiliates, finance users), their keys and secrets,
and the directory entries the tracker learns them from (through the outbox)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.admin.repository import PrincipalRepository
from services.commission.core.program import Coupon, ProgramState
from services.commission.errors import AlreadyExists, NotFound
from services.commission.models import outbox
from services.commission.program.service import ProgramService
from shared.clock import Clock, SystemClock
from shared.directory import affiliate_key, coupon_entry_key, partner_entry_key, store_key
from shared.events import (
    AffiliateEntry,
    CouponEntry,
    PartnerEntry,
    StoreEntry,
    Topic,
    encode,
)
from shared.outbox import OutboxRepository
from shared.partners import PartnerStatus
from shared.secrets import (
    PrincipalKind,
    hash_key,
    new_api_key,
    rotation_grace_end,
    store_secret_versions,
    webhook_secret,
)

OUTBOX = OutboxRepository(outbox)


@dataclass
class AdminService:
    secret_key: str
    topic_prefix: str
    clock: Clock = field(default_factory=SystemClock)
    #: what a store's directory entry says of its program (membership, window)
    programs: ProgramService = field(default_factory=ProgramService)
    #: how long a store's previous webhook secret verifies after a rotation
    #: (``ALLIANCE_SECRET_ROTATION_GRACE_S``)
    secret_rotation_grace: timedelta = timedelta(hours=24)

    async def principal_of_key(self, session: AsyncSession, key: str) -> tuple[str, str] | None:
        """(kind, id) of the principal whose API key is ``key``, if any."""
        row = await PrincipalRepository(session).by_key_hash(hash_key(key))
        return (row.kind, row.principal_id) if row is not None else None

    async def store_exists(self, session: AsyncSession, store_id: str) -> bool:
        return await PrincipalRepository(session).get("store", store_id) is not None

    async def affiliate_exists(self, session: AsyncSession, affiliate_id: str) -> bool:
        return await PrincipalRepository(session).get("affiliate", affiliate_id) is not None

    async def _to_directory(self, session: AsyncSession, key: str, entry: Any) -> None:
        """Put a directory entry in the outbox, in the caller's transaction (the one place
        that names the directory topic for the admin's entries)."""
        await OUTBOX.add(session, [(f"{self.topic_prefix}{Topic.DIRECTORY}", key, encode(entry))])

    async def publish_coupon(
        self, session: AsyncSession, store_id: str, code: str, coupon: Coupon | None, now: datetime
    ) -> None:
        """Put a code's directory entry in the outbox: its registration from ``now`` on, or
        (``coupon`` None) its deletion then. Keyed by store and code: compaction keeps the
        latest of each code. Numbered after every earlier entry of the code
        (:meth:`PrincipalRepository.next_directory_version`)."""
        key = coupon_entry_key(store_id, code)
        version = await PrincipalRepository(session).next_directory_version(key)
        entry = CouponEntry(
            version=version,
            event_id=f"coupon:{store_id}:{code}:{now.isoformat()}",
            store_id=store_id,
            code=code,
            affiliate_id=coupon.affiliate_id if coupon else None,
            valid_from=coupon.valid_from if coupon else None,
            valid_to=coupon.valid_to if coupon else None,
            updated_at=now,
        )
        await self._to_directory(session, key, entry)

    async def publish_partner(
        self,
        session: AsyncSession,
        store_id: str,
        affiliate_id: str,
        status: PartnerStatus,
        now: datetime,
    ) -> None:
        """Put an affiliate's standing with a store in the outbox, from ``now`` on (Kafka key
        ``partner:<store>:<affiliate>``: compaction keeps the latest). The caller holds the
        store's program lock, so the versions follow the commits."""
        key = partner_entry_key(store_id, affiliate_id)
        version = await PrincipalRepository(session).next_directory_version(key)
        entry = PartnerEntry(
            version=version,
            event_id=f"partner:{store_id}:{affiliate_id}:{now.isoformat()}:{status.value}",
            store_id=store_id,
            affiliate_id=affiliate_id,
            status=status,
            updated_at=now,
        )
        await self._to_directory(session, key, entry)

    def _store_entry(
        self, row: Any, program: ProgramState, now: datetime, entry_version: int
    ) -> StoreEntry:
        versions = store_secret_versions(int(row.secret_version), row.previous_secret_until, now)
        version = versions[0]
        return StoreEntry(
            version=entry_version,
            event_id=(
                f"store:{row.principal_id}:{now.isoformat()}:{version}:{int(program.joined)}"
                f":{program.window_days or ''}:{program.coupon_policy.value}"
                f":{program.consent.value}:{program.enrollment.value}"
            ),
            store_id=row.principal_id,
            name=row.name,
            landing_url_template=row.landing_url_template,
            secret_versions=versions,
            previous_secret_until=row.previous_secret_until if len(versions) > 1 else None,
            in_program=program.joined,
            key_hash=row.key_hash,
            updated_at=now,
            attribution_window_days=program.window_days,
            coupon_policy=program.coupon_policy,
            consent=program.consent,
            enrollment=program.enrollment,
        )

    async def publish_store(self, session: AsyncSession, store_id: str, now: datetime) -> None:
        """Put the store's current directory entry in the outbox (after any change). Its
        version is taken first: a concurrent change of the store waits for this transaction,
        then reads what it committed, so the higher version always says the later state."""
        repo = PrincipalRepository(session)
        if await repo.get("store", store_id) is None:
            return
        key = store_key(store_id)
        entry_version = await repo.next_directory_version(key)
        row = await repo.get("store", store_id)
        history = await self.programs.history(session, store_id)
        entry = self._store_entry(row, history.current(), now, entry_version)
        await self._to_directory(session, key, entry)

    async def create(
        self,
        session: AsyncSession,
        kind: PrincipalKind,
        principal_id: str,
        name: str,
        now: datetime,
        landing_url_template: str | None = None,
    ) -> dict[str, str]:
        """Create a principal; returns its key (and a store's webhook secret), shown once."""
        key = new_api_key(kind)
        repo = PrincipalRepository(session)
        created = await repo.create(
            kind,
            principal_id,
            name,
            hash_key(key),
            landing_url_template,
            1 if kind == "store" else None,
        )
        if not created:
            raise AlreadyExists(f"{kind} {principal_id} already exists")
        out = {"api_key": key}
        if kind == "store":
            out["webhook_secret"] = webhook_secret(self.secret_key, principal_id, 1)
            await self.publish_store(session, principal_id, now)
        elif kind == "affiliate":
            await self._publish_affiliate(session, principal_id, name, hash_key(key), now)
        return out

    async def _publish_affiliate(
        self, session: AsyncSession, affiliate_id: str, name: str, key_hash: str, now: datetime
    ) -> None:
        """Put the affiliate's directory entry (its current key hash) in the outbox; the
        caller holds the principal's row (created or updated), so versions follow commits."""
        key = affiliate_key(affiliate_id)
        version = await PrincipalRepository(session).next_directory_version(key)
        entry = AffiliateEntry(
            version=version,
            event_id=f"affiliate:{affiliate_id}:{now.isoformat()}:{key_hash[:12]}",
            affiliate_id=affiliate_id,
            name=name,
            key_hash=key_hash,
            updated_at=now,
        )
        await self._to_directory(session, key, entry)

    async def rotate_key(
        self, session: AsyncSession, kind: PrincipalKind, principal_id: str, now: datetime
    ) -> str:
        """A new API key for the principal, shown once. The old key stops working on this
        service when the transaction commits (keys are looked up by hash per request); the
        tracker drops it when the new directory entry reaches it (stores and affiliates)."""
        key = new_api_key(kind)
        row = await PrincipalRepository(session).set_key_hash(kind, principal_id, hash_key(key))
        if row is None:
            raise NotFound(kind, id=principal_id)
        if kind == "store":
            await self.publish_store(session, principal_id, now)
        elif kind == "affiliate":
            await self._publish_affiliate(session, principal_id, row.name, row.key_hash, now)
        return key

    async def rotate_secret(
        self, session: AsyncSession, store_id: str, now: datetime, *, revoke_previous: bool = False
    ) -> tuple[str, datetime]:
        """A new webhook secret for the store (shown once) and the end of the previous one's
        grace: the tracker accepts the previous secret until then (``now`` itself with
        ``revoke_previous``: refused as soon as the new directory entry reaches it)."""
        until = rotation_grace_end(now, self.secret_rotation_grace, revoke_previous=revoke_previous)
        version = await PrincipalRepository(session).bump_secret_version(store_id, until)
        if version is None:
            raise NotFound("store", store_id=store_id)
        await self.publish_store(session, store_id, now)
        return webhook_secret(self.secret_key, store_id, version), until
