"""Issue 19, defect 5: a rotated store secret is revoked. The previous webhook secret verifies
for a bounded grace after the rotation (``ALLIANCE_SECRET_ROTATION_GRACE_S``), never until
the next rotation; ``revoke_previous`` refuses it at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.tracker.service import accepted_secret_versions
from shared.events import StoreEntry
from shared.secrets import (
    hash_key,
    previous_secret_accepted,
    rotation_grace_end,
    store_secret_versions,
)

ROTATED = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
GRACE = timedelta(hours=24)
SECOND = timedelta(seconds=1)


def entry(versions: list[int], until: datetime | None, updated_at: datetime) -> StoreEntry:
    return StoreEntry(
        event_id="store:s1",
        store_id="s1",
        name="s1",
        landing_url_template="https://s1.example/{product_id}",
        secret_versions=versions,
        previous_secret_until=until,
        in_program=True,
        key_hash=hash_key("k"),
        updated_at=updated_at,
    )


class TestRotationGrace:
    def test_the_previous_secret_verifies_until_the_grace_is_over_then_never(self) -> None:
        until = rotation_grace_end(ROTATED, GRACE, revoke_previous=False)
        assert until == ROTATED + GRACE
        assert previous_secret_accepted(until, ROTATED)
        assert previous_secret_accepted(until, until - SECOND)
        assert not previous_secret_accepted(until, until)
        assert not previous_secret_accepted(until, until + timedelta(days=365))

    def test_revoke_previous_refuses_the_previous_secret_at_the_rotation(self) -> None:
        until = rotation_grace_end(ROTATED, GRACE, revoke_previous=True)
        assert until == ROTATED
        assert not previous_secret_accepted(until, ROTATED)
        assert store_secret_versions(3, until, ROTATED) == [3]

    def test_a_grace_of_zero_refuses_the_previous_secret_at_once(self) -> None:
        until = rotation_grace_end(ROTATED, timedelta(0), revoke_previous=False)
        assert store_secret_versions(2, until, ROTATED) == [2]

    def test_no_end_of_grace_means_no_previous_secret(self) -> None:
        assert not previous_secret_accepted(None, ROTATED)
        assert store_secret_versions(5, None, ROTATED) == [5]

    def test_the_first_version_has_no_previous_one(self) -> None:
        assert store_secret_versions(1, ROTATED + GRACE, ROTATED) == [1]

    @given(
        version=st.integers(min_value=1, max_value=10_000),
        until=st.none() | st.datetimes(timezones=st.just(UTC)),
        now=st.datetimes(timezones=st.just(UTC)),
    )
    def test_the_listed_versions_are_the_current_and_a_previous_one_in_its_grace(
        self, version: int, until: datetime | None, now: datetime
    ) -> None:
        in_grace = until is not None and now < until
        expected = [v for v in (version, version - 1) if v >= 1 and (v == version or in_grace)]
        assert store_secret_versions(version, until, now) == expected


class TestTrackerSecretVersions:
    def test_the_tracker_drops_the_previous_version_at_the_end_of_its_grace(self) -> None:
        store = entry([2, 1], ROTATED + GRACE, ROTATED)
        assert accepted_secret_versions(store, GRACE, ROTATED + GRACE - SECOND) == [2, 1]
        assert accepted_secret_versions(store, GRACE, ROTATED + GRACE) == [2]
        # the tracker's own grace does not extend what the entry says
        assert accepted_secret_versions(store, 10 * GRACE, ROTATED + GRACE) == [2]

    def test_an_entry_from_before_the_grace_keeps_the_previous_version_for_the_grace_only(
        self,
    ) -> None:
        legacy = entry([2, 1], None, ROTATED)
        assert accepted_secret_versions(legacy, GRACE, ROTATED + GRACE - SECOND) == [2, 1]
        assert accepted_secret_versions(legacy, GRACE, ROTATED + GRACE) == [2]
        assert accepted_secret_versions(legacy, timedelta(0), ROTATED) == [2]

    def test_an_entry_with_one_version_accepts_that_one(self) -> None:
        assert accepted_secret_versions(entry([1], None, ROTATED), GRACE, ROTATED) == [1]
