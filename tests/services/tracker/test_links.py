"""Signed link codes and where a link lands, pure: a code verifies only as it was signed, with
a key the tracker holds; the landing URL follows the store's template."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tracker.directory import Directory
from services.tracker.links import MAX_CODE_CHARS, InvalidCode, Link, LinkSigner
from services.tracker.service import TrackerService, append_query, store_page
from services.tracker.spool import ClickSpool
from shared.clock import FixedClock
from shared.config import Settings
from shared.events import StoreEntry

SIGNER = LinkSigner({"k1": b"first secret", "k0": b"older secret"})

#: identifiers as links carry them: any text but the separator, the two first non-empty
ident = st.text(st.characters(blacklist_characters="\x1f", codec="utf-8"), min_size=1, max_size=40)
optional = st.one_of(st.none(), ident)
links = st.builds(Link, ident, ident, optional, optional)


class TestRoundTrip:
    @given(links)
    def test_a_signed_link_verifies_to_itself(self, link: Link) -> None:
        assert SIGNER.verify(SIGNER.sign(link)) == link

    def test_the_first_key_signs(self) -> None:
        assert SIGNER.sign(Link("a1", "s1")).startswith("k1.")

    def test_every_key_verifies_so_keys_can_rotate(self) -> None:
        old = LinkSigner({"k0": b"older secret"}).sign(Link("a1", "s1", "p1", "sub"))
        assert SIGNER.verify(old) == Link("a1", "s1", "p1", "sub")

    def test_an_empty_product_or_sub_id_reads_back_as_none(self) -> None:
        assert SIGNER.verify(SIGNER.sign(Link("a1", "s1", "", ""))) == Link("a1", "s1")

    def test_a_code_is_url_safe(self) -> None:
        code = SIGNER.sign(Link("a/1", "s?1", "p&1", "sub id=+"))
        assert code.isascii()
        assert not set(code) - set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
        )


class TestUnforgeable:
    @given(links, st.data())
    def test_changing_any_one_character_of_a_code_fails(
        self, link: Link, data: st.DataObject
    ) -> None:
        code = SIGNER.sign(link)
        at = data.draw(st.integers(0, len(code) - 1), label="position")
        replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != code[at]))
        tampered = code[:at] + replacement + code[at + 1 :]
        with pytest.raises(InvalidCode):
            SIGNER.verify(tampered)

    @given(links)
    def test_a_code_signed_with_another_key_fails(self, link: Link) -> None:
        stranger = LinkSigner({"k1": b"someone else's secret"})  # same key id, other secret
        with pytest.raises(InvalidCode):
            SIGNER.verify(stranger.sign(link))

    def test_a_key_id_the_tracker_does_not_hold_fails(self) -> None:
        code = LinkSigner({"k9": b"first secret"}).sign(Link("a1", "s1"))
        with pytest.raises(InvalidCode):
            SIGNER.verify(code)

    def test_another_link_s_tag_does_not_fit(self) -> None:
        kid, payload, _ = SIGNER.sign(Link("a1", "s1")).split(".")
        *_, other_tag = SIGNER.sign(Link("a2", "s1")).split(".")
        with pytest.raises(InvalidCode):
            SIGNER.verify(f"{kid}.{payload}.{other_tag}")

    @pytest.mark.parametrize("cut", [1, 5, 16])
    def test_a_truncated_code_fails(self, cut: int) -> None:
        code = SIGNER.sign(Link("a1", "s1", "p1"))
        with pytest.raises(InvalidCode):
            SIGNER.verify(code[:-cut])

    def test_a_code_longer_than_the_bound_fails_before_any_work(self) -> None:
        with pytest.raises(InvalidCode):
            SIGNER.verify("k1." + "A" * MAX_CODE_CHARS + ".tag")

    @given(st.text(max_size=200))
    def test_text_we_did_not_sign_is_invalid_never_another_error(self, code: str) -> None:
        with pytest.raises(InvalidCode):
            SIGNER.verify(code)

    def test_a_validly_tagged_payload_missing_the_store_fails(self) -> None:
        # signed by us but not a link: affiliate only (three separators short)
        payload = "YTE"  # base64url of "a1"
        tag = SIGNER._tag("k1", payload)
        with pytest.raises(InvalidCode):
            SIGNER.verify(f"k1.{payload}.{tag}")


class TestKeys:
    def test_keys_are_read_from_id_secret_pairs_in_order(self) -> None:
        signer = LinkSigner.from_config("k2:new, k1:old")
        assert list(signer.keys) == ["k2", "k1"]
        assert signer.signing_kid == "k2"

    @pytest.mark.parametrize("spec", ["", "k1", "k1:", "k1:a,k2"])
    def test_a_key_without_a_secret_is_refused(self, spec: str) -> None:
        with pytest.raises(ValueError, match="id:secret"):
            LinkSigner.from_config(spec)

    def test_a_key_id_must_be_alphanumeric(self) -> None:
        with pytest.raises(ValueError, match="alphanumeric"):
            LinkSigner({"k.1": b"secret"})

    def test_at_least_one_key_is_required(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            LinkSigner({})


def store(template: str) -> StoreEntry:
    return StoreEntry(
        event_id="d1",
        store_id="s1",
        name="Store",
        landing_url_template=template,
        secret_versions=[1],
        in_program=True,
        key_hash="h",
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def tracker(*stores: StoreEntry) -> TrackerService:
    config = Settings(env="dev")
    return TrackerService(
        config,
        SIGNER,
        producer=cast(Any, None),
        clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC)),
        directory=Directory(stores={s.store_id: s for s in stores}),
        spool=cast(ClickSpool, None),
    )


class TestLanding:
    def test_a_product_link_lands_on_the_store_s_template(self) -> None:
        service = tracker(store("https://shop.example/item/{product_id}?src=aff"))
        url = service.landing_url(Link("a1", "s1", "p42"))
        assert url == "https://shop.example/item/p42?src=aff"

    def test_the_template_may_name_the_store_too(self) -> None:
        service = tracker(store("https://{store_id}.example/p/{product_id}"))
        assert service.landing_url(Link("a1", "s1", "p1")) == "https://s1.example/p/p1"

    def test_a_link_without_product_lands_on_the_store_s_home_page(self) -> None:
        service = tracker(store("https://shop.example/item/{product_id}?src=aff#top"))
        assert service.landing_url(Link("a1", "s1")) == "https://shop.example/"

    def test_an_unknown_store_lands_on_the_configured_templates(self) -> None:
        service = tracker()
        assert service.landing_url(Link("a1", "s9", "p1")) == "https://s9.shop.example/item/p1"
        assert service.landing_url(Link("a1", "s9")) == "https://s9.shop.example/"

    @pytest.mark.parametrize(
        ("template", "page"),
        [
            ("https://shop.example/a/b?c=d#e", "https://shop.example/"),
            ("http://shop.example:8080/{product_id}", "http://shop.example:8080/"),
        ],
    )
    def test_the_store_page_is_the_template_s_origin(self, template: str, page: str) -> None:
        assert store_page(template) == page

    def test_the_tracking_parameters_are_added_to_the_landing_query(self) -> None:
        url = append_query("https://shop.example/p?src=aff#top", {"alliance_vid": "v 1"})
        assert url == "https://shop.example/p?src=aff&alliance_vid=v+1#top"
        assert append_query("https://shop.example/p", {"a": "b"}) == "https://shop.example/p?a=b"
