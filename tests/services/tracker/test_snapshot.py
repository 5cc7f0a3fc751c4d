"""The tracker's local snapshot of the directory and catalog (what it starts from while Kafka
is down): it gives back what the topics gave, is replaced whole, and a bad file is no file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from services.tracker.directory import Directory
from services.tracker.snapshot import Snapshot
from shared.events import CouponEntry, StoreEntry
from shared.secrets import hash_key
from tests.shared.test_security_rules import _affiliate


def _store(store_id: str) -> bytes:
    entry = StoreEntry(
        event_id=f"store:{store_id}",
        store_id=store_id,
        name=store_id,
        landing_url_template=f"https://{store_id}.example/{{product_id}}",
        secret_versions=[1, 2],
        in_program=True,
        key_hash=hash_key(f"k-{store_id}"),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return entry.model_dump_json().encode()


def _product(store_id: str, product_id: str) -> bytes:
    return orjson.dumps(
        {
            "type": "product_upserted",
            "store_id": store_id,
            "event_id": f"cat-{product_id}",
            "product_id": product_id,
        }
    )


def _filled() -> Directory:
    directory = Directory(caught_up=True)
    directory.apply_directory(_store("s1"))
    directory.apply_directory(_affiliate("a1", "old"))
    directory.apply_directory(_affiliate("a1", "new"))  # rotated: the old key is gone
    directory.apply_storefront(_product("s1", "p1"), at=0.0)
    directory.apply_storefront(_product("s1", "p2"), at=0.0)
    return directory


async def test_a_snapshot_gives_back_stores_current_affiliate_keys_and_catalog(
    tmp_path: Path,
) -> None:
    written = _filled()
    snapshot = Snapshot(tmp_path / "t-directory.json")
    await snapshot.write(written)
    read = Directory()
    assert Snapshot(snapshot.path).load(read)
    assert read.stores == written.stores
    assert read.affiliate_keys == {hash_key("new"): "a1"}
    assert read.products == {"s1": {"p1", "p2"}}
    assert not read.caught_up  # a snapshot is never the topics: events wait for the feed
    read.apply_directory(_affiliate("a1", "newer"))  # and the feed carries on from it
    assert read.affiliate_keys == {hash_key("newer"): "a1"}
    assert (snapshot.path.stat().st_mode & 0o777) == 0o600


async def test_it_is_written_only_once_caught_up_and_when_it_changed(tmp_path: Path) -> None:
    snapshot = Snapshot(tmp_path / "d.json")
    directory = _filled()
    directory.caught_up = False
    assert not snapshot.due(directory)
    directory.caught_up = True
    assert snapshot.due(directory)
    await snapshot.write(directory)
    assert not snapshot.due(directory)
    directory.apply_storefront(_product("s1", "p2"), at=0.0)  # known: no change
    assert not snapshot.due(directory)
    directory.apply_storefront(_product("s1", "p3"), at=0.0)
    assert snapshot.due(directory)


GOOD_STORE = b'{"v": 1, "stores": [' + _store("s1") + b'], "affiliates": {}, "products": '


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"v": 99}', b'{"v": 1, "stores": [1]}', GOOD_STORE + b"5}"],
    ids=["empty", "not-json", "version", "bad-store", "bad-products-after-a-good-store"],
)
def test_an_unreadable_snapshot_is_ignored_whole(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(content)
    directory = Directory()
    assert not Snapshot(path).load(directory)
    assert directory.stores == {}
    assert not Snapshot(tmp_path / "missing.json").load(directory)


def test_adopting_a_fresh_directory_replaces_principals_at_once_and_keeps_event_ids() -> None:
    live = _filled()
    live.caught_up = False
    live.event_ids.seen("s1", "e-1", at=0.0)
    fresh = Directory(event_ids=live.event_ids)
    fresh.apply_directory(_store("s2"))
    live.adopt(fresh)
    assert set(live.stores) == {"s2"}
    assert live.affiliate_keys == {}
    assert live.caught_up
    assert live.event_ids.is_seen("s1", "e-1")


def test_a_coupon_code_s_entry_is_read_and_changes_no_principal() -> None:
    """Coupon codes travel on the directory for attribution; the tracker reads past them."""
    directory = _filled()
    stores, keys = dict(directory.stores), dict(directory.affiliate_keys)
    entry = CouponEntry(
        event_id="coupon:s1:ANNA10:1",
        store_id="s1",
        code="ANNA10",
        affiliate_id="a1",
        updated_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    directory.apply_directory(entry.model_dump_json().encode())
    deleted = entry.model_copy(update={"affiliate_id": None})
    directory.apply_directory(deleted.model_dump_json().encode())
    assert (directory.stores, directory.affiliate_keys) == (stores, keys)
