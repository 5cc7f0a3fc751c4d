"""Partner approval at the tracker: what the directory's partner entries and a store's
enrollment let through (links refused with ``not_approved``, clicks marked ``banned`` or
``not_approved``), the version rule on partner entries, and the snapshot keeping them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.tracker.directory import Directory
from services.tracker.errors import NotApproved
from services.tracker.links import Link
from services.tracker.service import TrackerService
from services.tracker.snapshot import Snapshot
from shared.events import PartnerEntry
from shared.partners import Enrollment, PartnerStatus
from tests.services.tracker.test_links import SIGNER, store, tracker

T = datetime(2026, 1, 1, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def partner(affiliate: str, status: PartnerStatus, version: int) -> bytes:
    entry = PartnerEntry(
        version=version,
        event_id=f"partner:s1:{affiliate}:{version}",
        store_id="s1",
        affiliate_id=affiliate,
        status=status,
        updated_at=T,
    )
    return entry.model_dump_json().encode()


def service(enrollment: Enrollment, *entries: bytes) -> TrackerService:
    s = store("https://s1.example/{product_id}").model_copy(update={"enrollment": enrollment})
    t = tracker(s)
    for raw in entries:
        t.directory.apply_directory(raw)
    return t


def click_reason(t: TrackerService, affiliate: str) -> str | None:
    link = Link(affiliate, "s1", None, None)
    code = SIGNER.sign(link)
    return t.make_click(link, code, "v1", "203.0.113.9", BROWSER, T).suspicious_reason


class TestWhatTheTrackerLetsThrough:
    @pytest.mark.parametrize(
        ("enrollment", "status", "link_ok", "reason"),
        [
            (Enrollment.OPEN, None, True, None),
            (Enrollment.OPEN, PartnerStatus.PENDING, True, None),
            (Enrollment.OPEN, PartnerStatus.REJECTED, True, None),
            (Enrollment.OPEN, PartnerStatus.BANNED, False, "banned"),
            (Enrollment.APPROVAL, None, False, "not_approved"),
            (Enrollment.APPROVAL, PartnerStatus.PENDING, False, "not_approved"),
            (Enrollment.APPROVAL, PartnerStatus.REJECTED, False, "not_approved"),
            (Enrollment.APPROVAL, PartnerStatus.APPROVED, True, None),
            (Enrollment.APPROVAL, PartnerStatus.BANNED, False, "banned"),
        ],
    )
    def test_links_and_clicks_follow_the_standing(
        self,
        enrollment: Enrollment,
        status: PartnerStatus | None,
        link_ok: bool,
        reason: str | None,
    ) -> None:
        entries = [partner("a1", status, 1)] if status is not None else []
        t = service(enrollment, *entries)
        if link_ok:
            assert t.create_link("a1", "s1", None, None, None)
        else:
            with pytest.raises(NotApproved) as refused:
                t.create_link("a1", "s1", None, None, None)
            assert refused.value.status_code == 403
        assert click_reason(t, "a1") == reason

    def test_an_older_partner_entry_never_brings_back_an_earlier_standing(self) -> None:
        t = service(
            Enrollment.APPROVAL,
            partner("a1", PartnerStatus.BANNED, 2),
            partner("a1", PartnerStatus.APPROVED, 1),  # replayed or reordered
        )
        assert t.directory.partners[("s1", "a1")] is PartnerStatus.BANNED
        t.directory.apply_directory(partner("a1", PartnerStatus.APPROVED, 3))
        assert click_reason(t, "a1") is None


async def test_the_snapshot_keeps_the_partners(tmp_path: Path) -> None:
    written = Directory(caught_up=True)
    written.apply_directory(partner("a1", PartnerStatus.BANNED, 4))
    snapshot = Snapshot(tmp_path / "t-directory.json")
    await snapshot.write(written)
    read = Directory()
    assert snapshot.load(read)
    assert read.partners == {("s1", "a1"): PartnerStatus.BANNED}
    assert read.versions.held == {"partner:s1:a1": 4}


def test_a_snapshot_from_before_partner_approval_still_loads() -> None:
    data = Directory().snapshot()
    del data["partners"]
    read = Directory()
    read.restore(data)
    assert read.partners == {}
