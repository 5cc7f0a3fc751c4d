"""The privacy rules (shared/privacy.py): consent on the redirect, pseudonyms, sealed ids of
erasures, and the truncation of client addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from shared.events import Ident
from shared.privacy import (
    Consent,
    ErasureSeal,
    declared,
    may_set_cookie,
    pseudonym,
    truncate_address,
    visitor_hash,
)


class TestConsent:
    @pytest.mark.parametrize("consent", list(Consent))
    @pytest.mark.parametrize("declared_consent", [True, False, None])
    def test_global_privacy_control_always_refuses_the_cookie(
        self, consent: Consent, declared_consent: bool | None
    ) -> None:
        assert not may_set_cookie(consent, gpc=True, declared_consent=declared_consent)

    @pytest.mark.parametrize("consent", list(Consent))
    def test_a_declared_refusal_always_refuses_the_cookie(self, consent: Consent) -> None:
        assert not may_set_cookie(consent, gpc=False, declared_consent=False)

    def test_a_program_requiring_consent_needs_a_declared_yes(self) -> None:
        assert not may_set_cookie(Consent.REQUIRED, gpc=False, declared_consent=None)
        assert may_set_cookie(Consent.REQUIRED, gpc=False, declared_consent=True)

    def test_a_program_not_requiring_consent_sets_it_unless_refused(self) -> None:
        assert may_set_cookie(Consent.NOT_REQUIRED, gpc=False, declared_consent=None)
        assert may_set_cookie(Consent.NOT_REQUIRED, gpc=False, declared_consent=True)

    @pytest.mark.parametrize(
        ("raw", "want"),
        [
            ("false", False),
            ("FALSE", False),
            ("0", False),
            ("no", False),
            ("true", True),
            ("1", True),
            ("yes", True),
            ("maybe", None),
            ("", None),
            (None, None),
        ],
    )
    def test_declarations_are_read_in_a_few_spellings_only(
        self, raw: str | None, want: bool | None
    ) -> None:
        assert declared(raw) is want


class TestPseudonyms:
    @given(st.from_regex(r"[A-Za-z0-9._:@\-]{1,64}", fullmatch=True))
    def test_a_pseudonym_is_an_identifier_stable_and_keyed(self, visitor: str) -> None:
        p = pseudonym("k1", visitor)
        TypeAdapter(Ident).validate_python(p)  # it fits every column a visitor id fits
        assert p == pseudonym("k1", visitor)  # an erasure twice writes the same
        assert p != pseudonym("k2", visitor)  # keyed: unknown without the secret

    def test_hash_and_pseudonym_are_different_keys(self) -> None:
        assert visitor_hash("k", "v1") != pseudonym("k", "v1").removeprefix("erased-")
        assert len(visitor_hash("k", "v1")) == 64

    def test_a_sealed_id_opens_only_with_its_key(self) -> None:
        token = ErasureSeal("k").seal("v1")
        assert "v1" not in token
        assert ErasureSeal("k").open(token) == "v1"
        assert ErasureSeal("other").open(token) is None


class TestTruncation:
    @pytest.mark.parametrize(
        ("address", "want"),
        [
            ("203.0.113.77", "203.0.113.0/24"),
            ("203.0.113.0/24", "203.0.113.0/24"),  # twice: the same
            ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
            ("::ffff:198.51.100.9", "198.51.100.0/24"),
            ("not an address", "unknown"),
        ],
    )
    def test_addresses_keep_their_network_only(self, address: str, want: str) -> None:
        assert truncate_address(address) == want


class TestScreen:
    def test_an_erased_visitors_clicks_and_views_are_dropped_and_orders_pseudonymised(
        self,
    ) -> None:
        from datetime import UTC, datetime
        from decimal import Decimal

        from shared.events import Click, OrderItem, OrderPlaced, PageView
        from shared.privacy_store import screened

        at = datetime(2026, 12, 5, tzinfo=UTC)
        click = Click(
            event_id="c1",
            occurred_at=at,
            received_at=at,
            affiliate_id="a",
            store_id="s",
            link_code="L",
            visitor_id="v1",
        )
        view = PageView(event_id="e1", occurred_at=at, store_id="s", visitor_id="v1")
        order = OrderPlaced(
            event_id="e2",
            occurred_at=at,
            store_id="s",
            order_id="o1",
            visitor_id="v1",
            currency="USD",
            items=[OrderItem(product_id="p", quantity=1, unit_price=Decimal("9.99"))],
        )
        assert screened(click, "k") is None
        assert screened(view, "k") is None
        kept = screened(order, "k")
        assert kept.visitor_id == pseudonym("k", "v1")
        assert kept.items == order.items  # the money is the order's
