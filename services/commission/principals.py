"""Principals: who is calling (bearer keys), what they may see, and the admin use cases."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.commission.core import ProgramState
from services.commission.models import outbox
from services.commission.repository import CommissionRepository, PrincipalRepository
from shared.events import AffiliateEntry, StoreEntry, Topic, encode
from shared.http import AllianceError, Bearer, bearer_token
from shared.outbox import OutboxRepository
from shared.secrets import PrincipalKind, hash_key, new_api_key, webhook_secret

OUTBOX = OutboxRepository(outbox)


class Unauthorized(AllianceError):
    def __init__(self, message: str = "a valid API key is required") -> None:
        super().__init__(401, "unauthorized", message)


class Forbidden(AllianceError):
    def __init__(self, message: str = "this key may not see that") -> None:
        super().__init__(403, "forbidden", message)


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind | str  # "admin" for the admin token
    id: str

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


async def authenticate(request: Request, session: AsyncSession) -> Principal:
    """The principal of the request's bearer key (or the admin token), else 401."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized()
    # constant time: how much of the token matched must not show in the response time
    if hmac.compare_digest(token.encode(), request.app.state.settings.admin_token.encode()):
        return Principal("admin", "admin")
    row = await PrincipalRepository(session).by_key_hash(hash_key(token))
    if row is None:
        raise Unauthorized("unknown API key")
    return Principal(row.kind, row.principal_id)


@dataclass
class AdminService:
    secret_key: str
    topic_prefix: str
    default_window: int = 15  # days: the deployment's attribution window

    def _store_entry(self, row: Any, program: ProgramState, now: datetime) -> StoreEntry:
        version = int(row.secret_version)
        return StoreEntry(
            event_id=(
                f"store:{row.principal_id}:{now.isoformat()}:{version}:{int(program.joined)}"
                f":{program.window_days or ''}"
            ),
            store_id=row.principal_id,
            name=row.name,
            landing_url_template=row.landing_url_template,
            secret_versions=[v for v in (version, version - 1) if v >= 1],
            in_program=program.joined,
            key_hash=row.key_hash,
            updated_at=now,
            attribution_window_days=program.window_days,
        )

    async def publish_store(self, session: AsyncSession, store_id: str, now: datetime) -> None:
        """Put the store's current directory entry in the outbox (after any change)."""
        row = await PrincipalRepository(session).get("store", store_id)
        if row is None:
            return
        history = (await CommissionRepository(session).programs([store_id]))[store_id]
        entry = self._store_entry(row, history.current(), now)
        await OUTBOX.add(
            session, [(f"{self.topic_prefix}{Topic.DIRECTORY}", f"store:{store_id}", encode(entry))]
        )

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
            raise AllianceError(409, "already_exists", f"{kind} {principal_id} already exists")
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
        """Put the affiliate's directory entry (its current key hash) in the outbox."""
        entry = AffiliateEntry(
            event_id=f"affiliate:{affiliate_id}:{now.isoformat()}:{key_hash[:12]}",
            affiliate_id=affiliate_id,
            name=name,
            key_hash=key_hash,
            updated_at=now,
        )
        topic = f"{self.topic_prefix}{Topic.DIRECTORY}"
        await OUTBOX.add(session, [(topic, f"affiliate:{affiliate_id}", encode(entry))])

    async def rotate_key(
        self, session: AsyncSession, kind: PrincipalKind, principal_id: str, now: datetime
    ) -> str:
        """A new API key for the principal, shown once. The old key stops working on this
        service when the transaction commits (keys are looked up by hash per request); the
        tracker drops it when the new directory entry reaches it (stores and affiliates)."""
        key = new_api_key(kind)
        row = await PrincipalRepository(session).set_key_hash(kind, principal_id, hash_key(key))
        if row is None:
            raise AllianceError(404, "not_found", f"{kind} not found", id=principal_id)
        if kind == "store":
            await self.publish_store(session, principal_id, now)
        elif kind == "affiliate":
            await self._publish_affiliate(session, principal_id, row.name, row.key_hash, now)
        return key

    async def rotate_secret(self, session: AsyncSession, store_id: str, now: datetime) -> str:
        version = await PrincipalRepository(session).bump_secret_version(store_id)
        if version is None:
            raise AllianceError(404, "not_found", "store not found", store_id=store_id)
        await self.publish_store(session, store_id, now)
        return webhook_secret(self.secret_key, store_id, version)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: commit on success, roll back on error."""
    async with request.app.state.sessions() as session, session.begin():
        yield session
    # committed: let the outbox relay publish what this request wrote (directory entries)
    relay = getattr(request.app.state, "relay", None)
    if relay is not None:
        relay.poke()


#: ``scope="function"``: the transaction commits when the route returns, *before* the response
#: is sent (FastAPI's default runs a yield dependency's exit after sending). A client that got
#: ``201`` for a new key may use it at once, and a commit that fails is an error answer, never a
#: success answered for something that was then rolled back.
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def current_principal(request: Request, session: Session, _: Bearer) -> Principal:
    return await authenticate(request, session)


Caller = Annotated[Principal, Depends(current_principal)]
