"""Issue 19, defect 7, at the source (real database): the commission service numbers a key's
directory entries in commit order, and the higher version says everything the lower one did.

Two transactions change one store at once (a secret rotation and a window change): the second
waits for the first's version, then reads what the first committed, so its entry (the next
version) carries both changes. Were the state read before the version was taken, the later
version would say the secret before the rotation, and every reader would keep that."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from services.commission.admin.service import AdminService
from services.commission.core.program import OpKind
from services.commission.models import outbox
from services.commission.program.service import ProgramService
from shared.config import Settings
from tests.services.attribution.test_windows import db

pytestmark = pytest.mark.integration


async def test_a_concurrent_change_is_numbered_after_the_one_it_waited_for_and_says_both(
    settings: Settings,
) -> None:
    store_id = f"s-{uuid.uuid4().hex[:8]}"
    programs = ProgramService()
    admin = AdminService(settings.secret_key, settings.topic_prefix, programs=programs)
    programs.directory = admin
    async with db(settings) as sessions:
        async with sessions() as session, session.begin():
            now = datetime.now(UTC)
            await admin.create(session, "store", store_id, store_id, now, "https://x.example/{id}")
            await programs.change(session, store_id, OpKind.JOIN, "test")
        async with sessions() as rotating, sessions() as windowing:
            await admin.rotate_secret(rotating, store_id, datetime.now(UTC))  # not committed
            window = asyncio.create_task(
                programs.change(windowing, store_id, OpKind.ATTRIBUTION_WINDOW, "test", days=7)
            )
            await asyncio.sleep(0.5)
            assert not window.done()  # waits for the rotation's version of the store
            await rotating.commit()
            await window
            await windowing.commit()
        async with sessions() as session:
            rows = await session.execute(
                select(outbox.c.payload).where(outbox.c.key == f"store:{store_id}")
            )
            entries: list[dict[str, Any]] = [orjson.loads(p) for p in rows.scalars()]
    assert sorted(e["version"] for e in entries) == [1, 2, 3, 4]  # created, joined, 2 changes
    last = max(entries, key=lambda e: e["version"])
    assert (last["secret_versions"], last["attribution_window_days"]) == ([2, 1], 7)
