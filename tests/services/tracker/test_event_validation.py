"""The tracker's edge, pure (``TrackerService.validate_events`` on a fixed clock): whatever a
storefront posts, each event is accepted or refused with a machine-readable code, and nothing
raises. What is accepted fits every bound downstream (PostgreSQL text, 64-bit minor units)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.tracker.directory import Directory
from services.tracker.links import InvalidCode, Link, LinkSigner
from services.tracker.service import TrackerService
from services.tracker.spool import ClickSpool
from shared.clock import FixedClock
from shared.config import Settings
from shared.events import (
    MAX_ORDER_TOTAL,
    OrderPlaced,
    OrderRefunded,
    encode,
    storefront_event_adapter,
)
from shared.money import ZERO, minor_digits, to_minor

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STORE = "s1"
INT64_MAX = 2**63 - 1
ID64 = "i" * 64
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0"


def tracker(**overrides: Any) -> TrackerService:
    config = Settings(**overrides)
    return TrackerService(
        config,
        LinkSigner.from_config(config.link_keys),
        producer=cast(Any, None),  # validation never sends
        clock=FixedClock(NOW),
        directory=Directory(),
        spool=cast(ClickSpool, None),
    )


def at(delta: timedelta) -> str:
    return (NOW + delta).isoformat()


def placed(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e-1",
        "type": "order_placed",
        "occurred_at": at(-timedelta(hours=1)),
        "order_id": "o-1",
        "visitor_id": "v-1",
        "currency": "USD",
        "items": [{"product_id": "p1", "quantity": 2, "unit_price": "20.00"}],
    }
    return event | fields


def refunded(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "r-1",
        "type": "order_refunded",
        "occurred_at": at(-timedelta(hours=1)),
        "order_id": "o-1",
        "refund_id": "rf-1",
        "items": [{"product_id": "p1", "amount": "5.00"}],
    }
    return event | fields


def judge(*events: Any, **overrides: Any) -> list[dict[str, Any]]:
    _, results = tracker(**overrides).validate_events(STORE, list(events))
    return [r.model_dump() for r in results]


def code_of(event: Any) -> str | None:
    (result,) = judge(event)
    return cast(str | None, result["code"]) if result["status"] == "rejected" else None


class TestEventTimes:
    @pytest.mark.parametrize(
        "delta",
        [-timedelta(days=90), timedelta(minutes=5), timedelta(0), -timedelta(days=89, hours=23)],
    )
    def test_times_within_the_window_are_accepted(self, delta: timedelta) -> None:
        assert code_of(placed(occurred_at=at(delta))) is None

    def test_an_event_older_than_the_backdate_limit_is_rejected(self) -> None:
        old = placed(occurred_at=at(-timedelta(days=90, seconds=1)))
        assert code_of(old) == "occurred_too_long_ago"

    def test_the_backdate_limit_is_a_setting(self) -> None:
        old = placed(occurred_at=at(-timedelta(days=10)))
        assert judge(old, event_max_backdate_days=7)[0]["code"] == "occurred_too_long_ago"

    def test_an_event_more_than_five_minutes_ahead_is_rejected(self) -> None:
        ahead = placed(occurred_at=at(timedelta(minutes=5, seconds=1)))
        assert code_of(ahead) == "occurred_in_future"

    @pytest.mark.parametrize(
        "when",
        ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "0001-01-01T00:30:00+00:31"],
    )
    def test_an_offset_outside_the_representable_range_is_rejected_not_raised(
        self, when: str
    ) -> None:
        assert code_of(placed(occurred_at=when)) == "datetime_out_of_range"

    @pytest.mark.parametrize("when", ["2026-11-01T12:00:00", "yesterday", 1e300, -(10**30), None])
    def test_a_time_without_offset_or_not_a_time_is_rejected(self, when: object) -> None:
        assert code_of(placed(occurred_at=when)) is not None

    def test_the_tracker_stamps_arrival_time_over_what_the_client_sent(self) -> None:
        valid, _ = tracker().validate_events(
            STORE, [placed(received_at="2020-01-01T00:00:00Z"), placed(event_id="e-2")]
        )
        assert [e.received_at for e in valid] == [NOW, NOW]

    @given(st.integers(min_value=-200 * 86_400, max_value=86_400))
    def test_accepted_exactly_within_now_minus_90_days_and_now_plus_5_minutes(
        self, seconds: int
    ) -> None:
        """Against the rule written out: the window's both ends are inclusive."""
        delta = timedelta(seconds=seconds)
        inside = -timedelta(days=90) <= delta <= timedelta(minutes=5)
        assert (code_of(placed(occurred_at=at(delta))) is None) == inside


class TestMoney:
    @pytest.mark.parametrize("currency", ["ABC", "usd", "XAU", "XXX", "US", "USDD", "", 840])
    def test_an_unknown_currency_is_rejected(self, currency: object) -> None:
        assert code_of(placed(currency=currency)) in ("currency_unknown", "string_type")

    @pytest.mark.parametrize(
        ("currency", "price"), [("JPY", "1999"), ("KWD", "1.999"), ("CLF", "1.0001")]
    )
    def test_minor_units_come_from_iso_4217(self, currency: str, price: str) -> None:
        item = {"product_id": "p1", "quantity": 1, "unit_price": price}
        assert code_of(placed(currency=currency, items=[item])) is None
        finer = {**item, "unit_price": price + "1" if "." in price else price + ".1"}
        assert code_of(placed(currency=currency, items=[finer])) == "amount_too_precise"
        assert minor_digits(currency) == len(price.partition(".")[2])

    @pytest.mark.parametrize(
        ("item", "code"),
        [
            ({"unit_price": "1000000000.01"}, "less_than_equal"),
            ({"shipping_fee": "1000000001"}, "less_than_equal"),
            ({"quantity": 1_000_001}, "less_than_equal"),
            ({"quantity": 0}, "greater_than_equal"),
            ({"unit_price": "-1"}, "greater_than_equal"),
            ({"unit_price": 20.5}, "value_error"),
            ({"unit_price": "NaN"}, "finite_number"),
            ({"unit_price": "1e999999999"}, "less_than_equal"),
            ({"unit_price": "1000001", "quantity": 1_000_000}, "order_total_out_of_range"),
        ],
    )
    def test_amounts_beyond_the_bounds_are_rejected(self, item: dict[str, Any], code: str) -> None:
        line = {"product_id": "p1", "quantity": 1, "unit_price": "1.00"} | item
        assert code_of(placed(items=[line])) == code

    def test_an_order_total_over_ten_to_the_twelve_is_rejected(self) -> None:
        line = {"product_id": "p1", "quantity": 1000, "unit_price": "1000000000"}
        assert code_of(placed(items=[line])) is None  # exactly 10^12
        two = [line, {"product_id": "p2", "quantity": 1, "unit_price": "0.01"}]
        assert code_of(placed(items=two)) == "order_total_out_of_range"

    def test_the_largest_legal_order_fits_a_signed_64_bit_count_of_minor_units(self) -> None:
        for currency in ("USD", "KWD", "CLF"):
            assert to_minor(Decimal(MAX_ORDER_TOTAL), currency) * 100 < INT64_MAX

    def test_at_most_500_items_an_order_and_a_refund(self) -> None:
        line = {"product_id": "p1", "quantity": 1, "unit_price": "1.00"}
        assert code_of(placed(items=[line] * 500)) is None
        assert code_of(placed(items=[line] * 501)) == "too_long"
        refund_line = {"product_id": "p1", "amount": "0.01"}
        assert code_of(refunded(items=[refund_line] * 500)) is None
        assert code_of(refunded(items=[refund_line] * 501)) == "too_long"

    def test_refund_amounts_have_at_most_the_currency_s_decimals(self) -> None:
        def refund(amount: str, **fields: Any) -> dict[str, Any]:
            return refunded(items=[{"product_id": "p1", "amount": amount}], **fields)

        assert code_of(refund("5.00", currency="USD")) is None
        assert code_of(refund("5.001", currency="USD")) == "amount_too_precise"
        assert code_of(refund("5", currency="JPY")) is None
        assert code_of(refund("5.5", currency="JPY")) == "amount_too_precise"
        # without the order's currency: the finest minor unit of any currency (4 digits)
        assert code_of(refund("5.0001")) is None
        assert code_of(refund("5.00001")) == "amount_too_precise"
        assert code_of(refund("1000000000.01")) == "less_than_equal"


class TestStrings:
    @pytest.mark.parametrize(
        "event",
        [
            placed(event_id="e\x00"),
            placed(
                items=[{"product_id": "p1", "quantity": 1, "unit_price": "1", "title": "a\x00"}]
            ),
            placed(extra={"deep": ["x", {"k": "\x00"}]}),
            placed(**{"we\x00ird": 1}),
            {
                "event_id": "c-1",
                "type": "product_upserted",
                "occurred_at": at(timedelta(0)),
                "product_id": "p1",
                "title": "Lamp\x00",
                "price": "1.00",
                "currency": "USD",
            },
        ],
    )
    def test_a_nul_character_anywhere_rejects_the_event(self, event: dict[str, Any]) -> None:
        assert code_of(event) == "nul_character"

    def test_the_models_refuse_a_nul_in_free_text_too(self) -> None:
        """Consumers validate with the same models: a NUL can never reach PostgreSQL."""
        item = {"product_id": "p1", "quantity": 1, "unit_price": "1", "title": "a\x00"}
        results = judge(placed(items=[item]))
        assert results[0]["code"] == "nul_character"
        with pytest.raises(ValueError, match="NUL"):
            storefront_event_adapter.validate_python(placed(store_id=STORE, items=[item]))

    def test_the_longest_legal_ids_are_accepted(self) -> None:
        valid, results = tracker().validate_events(
            STORE,
            [
                placed(event_id=ID64, order_id=ID64, visitor_id=ID64),
                refunded(event_id="r" * 64, order_id=ID64, refund_id=ID64),
            ],
        )
        assert [r.status for r in results] == ["accepted", "accepted"]
        assert isinstance(valid[1], OrderRefunded)
        too_long = judge(placed(event_id="e" * 65), placed(event_id="e-2", order_id="o" * 65))
        assert [r["code"] for r in too_long] == ["string_too_long", "string_too_long"]

    def test_an_event_of_another_store_is_rejected(self) -> None:
        assert code_of(placed(store_id="s2")) == "store_mismatch"

    @pytest.mark.parametrize("event", ["x", 1, None, [], [placed()]])
    def test_an_event_that_is_not_an_object_is_rejected(self, event: object) -> None:
        assert code_of(event) == "object_required"


class TestRouting:
    def test_order_events_are_keyed_by_store_and_order(self) -> None:
        valid, _ = tracker().validate_events(
            STORE,
            [
                placed(),
                {
                    "event_id": "c",
                    "type": "order_completed",
                    "occurred_at": at(timedelta(0)),
                    "order_id": "o-1",
                },
                refunded(),
            ],
        )
        keys = [TrackerService._route(e)[1] for e in valid]
        assert keys == ["v-1", f"{STORE}:o-1", f"{STORE}:o-1"]


class TestClicks:
    def test_a_bot_name_past_the_512th_character_is_not_read(self) -> None:
        service = tracker()
        link = Link("aff-1", STORE, "p1")
        code = service.signer.sign(link)
        hidden = BROWSER_UA + " " * (600 - len(BROWSER_UA)) + " Googlebot/2.1"
        seen = "Googlebot/2.1 " + BROWSER_UA + " " * 600
        clicks = [service.make_click(link, code, "v-1", None, ua, NOW) for ua in (hidden, seen)]
        assert [c.suspicious_reason for c in clicks] == [None, "bot"]
        assert all(c.user_agent is not None and len(c.user_agent) == 512 for c in clicks)

    @pytest.mark.parametrize(
        "code", ["k1.é.x", "k1.\udcff.\udcff", "é", "k1.YQ.\x00", "k1." + "A" * 5000 + ".x", ""]
    )
    def test_a_link_code_with_odd_bytes_is_invalid_never_an_error(self, code: str) -> None:
        with pytest.raises(InvalidCode):
            tracker().signer.verify(code)

    async def test_a_link_signed_with_an_id_over_the_budget_is_unknown_not_an_error(
        self,
    ) -> None:
        # links signed before the 64-character budget may name a longer product id
        service = tracker()
        code = service.signer.sign(Link("aff", "s1", "p" * 100))
        with pytest.raises(InvalidCode):
            await service.follow(code, visitor_cookie=None, record=True, ip=None, user_agent=None)

    def test_server_clicks_obey_the_same_time_bounds(self) -> None:
        from shared.http import AllianceError

        service = tracker()
        service.check_click_time(NOW - timedelta(days=90))
        for when, code in (
            (NOW - timedelta(days=91), "occurred_too_long_ago"),
            (NOW + timedelta(minutes=6), "occurred_in_future"),
        ):
            with pytest.raises(AllianceError) as refused:
                service.check_click_time(when)
            assert (refused.value.status_code, refused.value.code) == (422, code)

    def test_the_longest_server_click_id_fits_its_key(self) -> None:
        service = tracker()
        link = Link("a" * 64, "s" * 64, "p" * 64)
        click = service.make_click(
            link,
            service.signer.sign(link),
            ID64,
            None,
            BROWSER_UA,
            NOW,
            click_id=f"s2s:{'s' * 64}:{ID64}",
        )
        assert len(click.click_id) == 133


# -- property: hostile input ----------------------------------------------------------------

ID_CHARS = "abcXYZ019._:@-"
hostile_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=ID_CHARS, min_size=60, max_size=70),
    st.text(alphabet=ID_CHARS + "\x00é/ ", max_size=300),
    st.sampled_from(["", "\x00", "USD", "JPY", "KWD", "CLF", "XAU", "usd", "a" * 10_000]),
)
hostile_number = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False).map(str),
    st.sampled_from(
        [
            "NaN",
            "sNaN",
            "Infinity",
            "-0",
            "1e999999999",
            "1e-999999999",
            "0.00001",
            "1E+12",
            "999999999.9999",
            "1000000000",
            "1000000000.0000000000000000000000000001",
            " 1",
            "1_0",
        ]
    ),
    st.booleans(),
)


def _offset(hours: int, minutes: int) -> str:
    return f"{'-' if hours < 0 else '+'}{abs(hours):02d}:{minutes:02d}"


hostile_time = st.one_of(
    st.builds(
        lambda d, h, m: d.isoformat() + _offset(h, m),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        st.integers(min_value=-23, max_value=23),
        st.integers(min_value=0, max_value=59),
    ),
    st.integers(min_value=-200 * 86_400, max_value=86_400).map(
        lambda s: (NOW + timedelta(seconds=s)).isoformat()
    ),
    st.datetimes().map(lambda d: d.isoformat()),  # no offset
    hostile_number,
    hostile_text,
)


def nested(depth: int) -> Any:
    value: Any = "\x00" if depth % 2 else "x"
    for _ in range(depth):
        value = [value] if depth % 3 else {"k": value}
    return value


json_values = st.recursive(
    st.none() | st.booleans() | hostile_number | hostile_text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
anything = st.one_of(json_values, st.integers(min_value=1, max_value=5000).map(nested))


hostile_value = st.one_of(hostile_text, hostile_number, hostile_time, anything)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value seven times in ten, else a hostile one (so that whole events pass
    often enough for the accepted side to be tested too)."""
    return st.integers(0, 9).flatmap(lambda n: valid if n < 7 else hostile_value)


def field_of(valid: Any) -> st.SearchStrategy[Any]:
    return mostly(st.just(valid))


near_time = st.builds(
    lambda s, h: (NOW + timedelta(seconds=s)).astimezone(timezone(timedelta(hours=h))).isoformat(),
    st.integers(min_value=-100 * 86_400, max_value=600),
    st.integers(min_value=-12, max_value=14),
)
money = st.decimals(min_value=0, max_value=2_000_000_000, places=3).map(str)
ident = st.text(alphabet=ID_CHARS, min_size=1, max_size=66)
item = st.fixed_dictionaries(
    {
        "product_id": mostly(ident),
        "quantity": mostly(st.integers(min_value=0, max_value=2_000_000)),
        "unit_price": mostly(money),
    },
    optional={"shipping_fee": mostly(money), "title": mostly(st.text(max_size=20))},
)
refund_item = st.fixed_dictionaries({"product_id": mostly(ident), "amount": mostly(money)})
currency = mostly(st.sampled_from(["USD", "JPY", "KWD", "CLF", "EUR"]))
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "order_placed": {
        "order_id": mostly(ident),
        "visitor_id": mostly(ident),
        "currency": currency,
        "items": mostly(st.lists(item, min_size=1, max_size=3)),
    },
    "order_completed": {"order_id": mostly(ident)},
    "order_cancelled": {"order_id": mostly(ident)},
    "order_refunded": {
        "order_id": mostly(ident),
        "refund_id": mostly(ident),
        "items": mostly(st.lists(refund_item, min_size=1, max_size=3)),
    },
    "page_view": {"visitor_id": mostly(ident)},
    "product_upserted": {
        "product_id": mostly(ident),
        "title": mostly(st.text(max_size=20)),
        "price": mostly(money),
        "currency": currency,
    },
}
OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "store_id": field_of(STORE),
    "received_at": hostile_time,
    "currency": currency,  # a refund's (others have theirs, or may not)
    "v": field_of(1),
    "extra": anything,
}
hostile_event = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda kind: st.fixed_dictionaries(
        {
            "event_id": mostly(ident),
            "type": field_of(kind),
            "occurred_at": mostly(near_time),
            **FIELDS[kind],
        },
        optional={k: v for k, v in OPTIONAL.items() if k not in FIELDS[kind]},
    )
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 9).flatmap(lambda n: hostile_event if n else anything), max_size=6))
def test_any_event_is_accepted_or_rejected_with_a_code_and_none_raises(events: list[Any]) -> None:
    valid, results = tracker().validate_events(STORE, events)
    assert [r.index for r in results] == list(range(len(events)))
    accepted = [r for r in results if r.status == "accepted"]
    assert len(accepted) == len(valid)
    for result in results:
        assert result.status in ("accepted", "duplicate", "rejected")
        if result.status == "rejected":
            assert isinstance(result.code, str)
            assert result.code
        result.model_dump_json()  # the answer can always be sent
    for event in valid:
        assert event.store_id == STORE
        assert event.received_at == NOW
        assert NOW - timedelta(days=90) <= event.occurred_at <= NOW + timedelta(minutes=5)
        wire = encode(event)
        assert b"\\u0000" not in wire
        assert storefront_event_adapter.validate_json(wire) == event  # consumers read it back
        if isinstance(event, OrderPlaced):
            total = sum((i.unit_price * i.quantity + i.shipping_fee for i in event.items), ZERO)
            assert to_minor(total, event.currency) <= INT64_MAX // 1000


class TestCouponCodes:
    @pytest.mark.parametrize("code", ["ANNA10", "anna-10_x", "a", "9" * 64])
    def test_a_code_of_the_shape_is_accepted_as_sent(self, code: str) -> None:
        valid, _ = tracker().validate_events(STORE, [placed(coupon_code=code)])
        assert isinstance(valid[0], OrderPlaced)
        assert valid[0].coupon_code == code  # matched case-insensitively downstream

    def test_an_order_without_a_code_is_as_before(self) -> None:
        valid, _ = tracker().validate_events(STORE, [placed()])
        assert isinstance(valid[0], OrderPlaced)
        assert valid[0].coupon_code is None

    @pytest.mark.parametrize("code", ["", "x" * 65, "anna 10", "anna10!", "ä", "a\x00", 10])
    def test_any_other_code_is_rejected_with_a_code(self, code: object) -> None:
        assert code_of(placed(coupon_code=code)) in (
            "string_pattern_mismatch",
            "string_too_short",
            "string_too_long",
            "string_type",
            "nul_character",  # the tracker refuses a NUL anywhere first
        )
