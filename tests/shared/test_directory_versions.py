"""Issue 19, defect 7: a directory entry older than the one a reader holds never comes back.

The rule (:mod:`shared.directory`) on its own, then in the tracker's in-memory directory: a
replayed entry (``alliance dlq replay``, a raw produce) or one two relays published out of
order cannot restore a rotated secret, an exited store or a rotated affiliate key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tracker.directory import Directory
from shared.directory import (
    DirectoryVersions,
    affiliate_key,
    coupon_entry_key,
    directory_key,
    store_key,
    supersedes,
)
from shared.events import AffiliateEntry, CouponEntry, StoreEntry, directory_adapter
from shared.secrets import hash_key

AT = datetime(2026, 12, 5, tzinfo=UTC)


def store(version: int, *, secrets: tuple[int, ...] = (1,), joined: bool = True) -> StoreEntry:
    return StoreEntry(
        version=version,
        event_id=f"store:s1:{version}",
        store_id="s1",
        name="s1",
        landing_url_template="https://s1.example/{product_id}",
        secret_versions=list(secrets),
        in_program=joined,
        key_hash=hash_key("k-s1"),
        updated_at=AT,
    )


def affiliate(version: int, key: str, affiliate_id: str = "a1") -> AffiliateEntry:
    return AffiliateEntry(
        version=version,
        event_id=f"affiliate:{affiliate_id}:{version}",
        affiliate_id=affiliate_id,
        name=affiliate_id,
        key_hash=hash_key(key),
        updated_at=AT,
    )


def coupon(version: int, code: str = "anna10") -> CouponEntry:
    return CouponEntry(
        version=version,
        event_id=f"coupon:s1:{code}:{version}",
        store_id="s1",
        code=code,
        affiliate_id="a1",
        updated_at=AT,
    )


class TestTheRule:
    def test_an_older_version_is_ignored(self) -> None:
        assert not supersedes(2, held=3)

    def test_a_newer_version_is_applied(self) -> None:
        assert supersedes(4, held=3)

    def test_the_same_version_again_is_applied_idempotently(self) -> None:
        assert supersedes(3, held=3)

    def test_anything_is_applied_when_nothing_is_held(self) -> None:
        assert supersedes(0, held=None)
        assert supersedes(7, held=None)

    def test_an_unversioned_legacy_entry_never_overrides_a_versioned_one(self) -> None:
        versions = DirectoryVersions()
        assert versions.admit(store(1))
        assert not versions.admit(store(0))
        assert versions.held == {"store:s1": 1}
        assert versions.stale == 1

    def test_legacy_entries_among_themselves_keep_the_last_arrival(self) -> None:
        versions = DirectoryVersions()
        assert versions.admit_all([store(0, secrets=(1,)), store(0, secrets=(2, 1))]) == [
            store(0, secrets=(1,)),
            store(0, secrets=(2, 1)),
        ]

    def test_an_entry_decoded_from_before_versions_is_version_zero(self) -> None:
        raw = store(5).model_dump(mode="json")
        del raw["version"]
        assert directory_adapter.validate_python(raw).version == 0

    def test_a_negative_version_is_refused(self) -> None:
        raw = store(5).model_dump(mode="json") | {"version": -1}
        with pytest.raises(ValueError, match="version"):
            directory_adapter.validate_python(raw)

    def test_keys_are_independent(self) -> None:
        versions = DirectoryVersions()
        assert versions.admit(store(9))
        assert versions.admit(affiliate(1, "k", affiliate_id="s1"))  # same id, another kind
        assert versions.admit(coupon(1))
        assert not versions.admit(store(8))


class TestKeys:
    def test_each_entry_s_key_is_its_kafka_key(self) -> None:
        assert directory_key(store(1)) == store_key("s1") == "store:s1"
        assert directory_key(affiliate(1, "k")) == affiliate_key("a1") == "affiliate:a1"
        assert directory_key(coupon(1)) == coupon_entry_key("s1", "ANNA10") == "coupon:s1:ANNA10"

    def test_a_coupon_code_s_case_does_not_make_another_key(self) -> None:
        versions = DirectoryVersions()
        assert versions.admit(coupon(2, "ANNA10"))
        assert not versions.admit(coupon(1, "anna10"))


@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=30))
def test_any_arrival_order_of_a_key_s_versions_ends_at_the_highest(arrivals: list[int]) -> None:
    versions = DirectoryVersions()
    applied = [e.version for e in versions.admit_all(store(v) for v in arrivals)]
    # the brute-force reference: an arrival is applied when no earlier arrival was higher
    expected = [v for n, v in enumerate(arrivals) if all(v >= w for w in arrivals[:n])]
    assert applied == expected
    assert applied[-1] == max(arrivals)
    assert applied == sorted(applied)
    assert versions.held == {"store:s1": max(arrivals)}
    assert versions.stale == len(arrivals) - len(applied)


@given(st.permutations([1, 2, 3, 4, 5]))
def test_the_tracker_holds_the_highest_version_whatever_the_arrival_order(
    order: list[int],
) -> None:
    directory = Directory()
    for v in order:
        directory.apply_directory(store(v, secrets=(v, v - 1)).model_dump_json().encode())
    assert directory.stores["s1"].version == 5
    assert directory.stores["s1"].secret_versions == [5, 4]


class TestTrackerIgnoresAnOlderEntry:
    def test_a_replayed_entry_does_not_restore_a_rotated_secret(self) -> None:
        directory = Directory()
        directory.apply_directory(store(1, secrets=(1,)).model_dump_json().encode())
        directory.apply_directory(store(3, secrets=(3, 2)).model_dump_json().encode())
        seen = directory.version
        directory.apply_directory(store(1, secrets=(1,)).model_dump_json().encode())
        assert directory.stores["s1"].secret_versions == [3, 2]
        assert directory.version == seen  # nothing changed: no snapshot to write

    def test_a_replayed_entry_does_not_bring_an_exited_store_back(self) -> None:
        directory = Directory()
        directory.apply_directory(store(2, joined=False).model_dump_json().encode())
        directory.apply_directory(store(1, joined=True).model_dump_json().encode())
        assert directory.stores["s1"].in_program is False

    def test_a_replayed_entry_does_not_restore_a_rotated_affiliate_key(self) -> None:
        directory = Directory()
        directory.apply_directory(affiliate(1, "old").model_dump_json().encode())
        directory.apply_directory(affiliate(2, "new").model_dump_json().encode())
        directory.apply_directory(affiliate(1, "old").model_dump_json().encode())
        assert directory.affiliate_keys == {hash_key("new"): "a1"}

    def test_the_same_entry_again_is_harmless(self) -> None:
        directory = Directory()
        directory.apply_directory(store(2, joined=False).model_dump_json().encode())
        directory.apply_directory(store(2, joined=False).model_dump_json().encode())
        assert directory.stores["s1"] == store(2, joined=False)

    def test_the_versions_held_survive_a_snapshot(self) -> None:
        written = Directory()
        written.apply_directory(store(4, joined=False).model_dump_json().encode())
        written.apply_directory(affiliate(3, "new").model_dump_json().encode())
        read = Directory()
        read.restore(written.snapshot())
        read.apply_directory(store(1).model_dump_json().encode())
        read.apply_directory(affiliate(2, "old").model_dump_json().encode())
        assert read.stores["s1"].in_program is False
        assert read.affiliate_keys == {hash_key("new"): "a1"}
