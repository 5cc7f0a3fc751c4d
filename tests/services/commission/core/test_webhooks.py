"""The pure rules of postbacks and webhooks: event ids, recipients, URL rules and templates,
signatures, the retry schedule and the disable rule."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.commission import (
    Adjustment,
    AdjustmentAction,
    AdjustmentReason,
    LineItem,
    OrderFacts,
    OrderStatus,
)
from services.commission.core.ledger import LedgerTxn, Posting, TxnKind
from services.commission.core.webhooks import (
    DISABLE_AFTER_FAILURES,
    GIVE_UP_AFTER,
    MACROS,
    MAX_RETRY,
    RESPONSE_BODY_MAX,
    URL_MAX,
    Due,
    EndpointHealth,
    EndpointRef,
    InvalidEndpoint,
    Limits,
    Method,
    OwnerKind,
    WebhookEvent,
    address_allowed,
    after_attempts,
    backoff,
    endpoint_problem,
    endpoint_secret,
    event_id,
    expand,
    is_success,
    ledger_notice,
    macro_values,
    next_attempt,
    order_notice,
    payout_notice,
    recipients,
    response_excerpt,
    schedule,
    signature,
    signed_content,
    signing_secrets,
    verify,
)

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def facts(
    affiliate: str | None = "aff-1", status: OrderStatus = OrderStatus.COMPLETED
) -> OrderFacts:
    return OrderFacts(
        order_id="o-1",
        store_id="s-1",
        currency="USD",
        placed_at=T0,
        items=(LineItem("p1", "c1", 2, Decimal("20.00"), Decimal("3.50"), "Case"),),
        status=status,
        status_at=T0,
        affiliate_id=affiliate,
        click_id="c-9",
    )


class TestEventIds:
    def test_the_same_cause_gives_the_same_id(self) -> None:
        key = "commission:s-1:o-1"
        assert event_id(WebhookEvent.COMMISSION_PAYABLE, key) == event_id(
            WebhookEvent.COMMISSION_PAYABLE, key
        )

    def test_an_id_is_short_and_says_nothing_of_the_key(self) -> None:
        eid = event_id(WebhookEvent.COMMISSION_PAYABLE, "commission:s-1:o-1")
        assert eid.startswith("evt_")
        assert len(eid) == 36
        assert "s-1" not in eid

    @given(st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50))
    def test_different_causes_give_different_ids(self, a: str, b: str) -> None:
        kinds = list(WebhookEvent)
        ids = {event_id(k, key) for k in kinds for key in {a, b}}
        assert len(ids) == len(kinds) * len({a, b})

    def test_a_postings_event_takes_its_id_from_the_ledger_key(self) -> None:
        txn = LedgerTxn(
            "reversal:s-1:o-1/r-1",
            TxnKind.REVERSAL,
            "o-1",
            "USD",
            (
                Posting("store:s-1:commission", Decimal("1.10")),
                Posting("affiliate:aff-1:earned", Decimal("-1.10")),
            ),
        )
        notice = ledger_notice(txn, facts(), T0, "spring")
        assert notice.id == event_id(WebhookEvent.COMMISSION_REVERSED, txn.key)
        assert notice.type is WebhookEvent.COMMISSION_REVERSED
        assert notice.data["commission"] == "-1.10"
        assert notice.data["refund_id"] == "r-1"
        assert notice.data["sub_id"] == "spring"
        assert notice.order == ("s-1", "o-1")

    def test_an_adjustment_event_carries_its_reason_note_and_the_lock(self) -> None:
        adjustment = Adjustment(
            2, T0, AdjustmentAction.DECLINE, AdjustmentReason.FRAUD, (), "bot traffic"
        )
        txn = LedgerTxn(
            "adjustment:s-1:o-1/2",
            TxnKind.ADJUSTMENT,
            "o-1",
            "USD",
            (
                Posting("store:s-1:commission", Decimal("2.00")),
                Posting("affiliate:aff-1:earned", Decimal("-2.00")),
            ),
            "fraud",
        )
        lock = T0 + timedelta(days=60)
        notice = ledger_notice(
            txn, replace(facts(), adjustments=(adjustment,)), T0, None, locks_at=lock
        )
        assert notice.type is WebhookEvent.COMMISSION_ADJUSTED
        assert notice.id == event_id(WebhookEvent.COMMISSION_ADJUSTED, txn.key)
        assert {k: notice.data[k] for k in ("commission", "adjustment_id", "action")} == {
            "commission": "-2.00",
            "adjustment_id": 2,
            "action": "decline",
        }
        assert (notice.data["reason"], notice.data["note"]) == ("fraud", "bot traffic")
        assert notice.data["locks_at"] == lock.isoformat()

    def test_a_payout_has_no_order_and_goes_to_its_payee(self) -> None:
        notice = payout_notice("k-1", 7, "aff-1", {"USD": "2.19"}, T0, T0)
        assert notice.order is None
        assert notice.affiliate_id == "aff-1"
        assert notice.body()["data"] == {
            "payout_id": 7,
            "affiliate_id": "aff-1",
            "amounts": {"USD": "2.19"},
            "up_to": T0.isoformat(),
        }


class TestRecipients:
    def endpoints(self) -> list[EndpointRef]:
        every = frozenset(WebhookEvent)
        return [
            EndpointRef("we_a", OwnerKind.AFFILIATE, "aff-1", every),
            EndpointRef("we_b", OwnerKind.AFFILIATE, "aff-2", every),
            EndpointRef("we_s", OwnerKind.STORE, "s-1", every),
            EndpointRef("we_t", OwnerKind.STORE, "s-2", every),
            EndpointRef("we_f", OwnerKind.FINANCE, "fin-1", every),
            EndpointRef(
                "we_p", OwnerKind.AFFILIATE, "aff-1", frozenset({WebhookEvent.PAYOUT_CREATED})
            ),
        ]

    def test_an_orders_event_goes_to_its_affiliate_its_store_and_finance(self) -> None:
        notice = order_notice(
            WebhookEvent.COMMISSION_PAYABLE, "k", facts(), Decimal("2.19"), T0, sub_id=None
        )
        assert recipients(notice, self.endpoints()) == ["we_a", "we_f", "we_s"]

    def test_a_payout_goes_to_its_payee_and_finance(self) -> None:
        notice = payout_notice("k", 1, "aff-1", {"USD": "1.00"}, T0, T0)
        assert recipients(notice, self.endpoints()) == ["we_a", "we_f", "we_p"]

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(list(OwnerKind)),
                st.sampled_from(["aff-1", "aff-2", "s-1", "s-2", "f"]),
                st.frozensets(st.sampled_from(list(WebhookEvent))),
            ),
            max_size=12,
        ),
        st.sampled_from(list(WebhookEvent)),
        st.sampled_from(["aff-1", "aff-2"]),
    )
    def test_recipients_are_the_subscribed_owners_of_the_event(
        self,
        specs: list[tuple[OwnerKind, str, frozenset[WebhookEvent]]],
        kind: WebhookEvent,
        affiliate: str,
    ) -> None:
        endpoints = [EndpointRef(f"we_{i:02d}", k, o, ev) for i, (k, o, ev) in enumerate(specs)]
        notice = order_notice(kind, "k", facts(affiliate), Decimal(1), T0, sub_id=None)
        expected = sorted(
            e.id
            for e in endpoints
            if kind in e.events
            and {OwnerKind.AFFILIATE: affiliate, OwnerKind.STORE: "s-1"}.get(
                e.owner_kind, e.owner_id
            )
            == e.owner_id
        )
        assert recipients(notice, endpoints) == expected


class TestEndpointUrls:
    @pytest.mark.parametrize(
        ("url", "method"),
        [
            ("https://hooks.example.com/alliance", Method.POST),
            ("http://hooks.example.com:8080/a?b=c", Method.POST),
            ("https://t.example.net/pb?sub={sub_id}&amt={commission}&cur={currency}", Method.GET),
            ("https://t.example.net/{store_id}/{order_id}?s={status}&e={event_id}", Method.GET),
            ("https://t.example.net/pb?c={click_id}", Method.GET),
        ],
    )
    def test_acceptable_urls(self, url: str, method: Method) -> None:
        assert endpoint_problem(url, method) is None

    @pytest.mark.parametrize(
        ("url", "method", "why"),
        [
            ("ftp://hooks.example.com/x", Method.POST, "http or https"),
            ("javascript:alert(1)", Method.POST, "http or https"),
            ("https:///path", Method.POST, "a host"),
            ("https://user:pw@hooks.example.com/", Method.POST, "no user name"),
            ("https://hooks.example.com/a#frag", Method.POST, "no fragment"),
            ("https://hooks.example.com/a b", Method.POST, "printable ASCII"),
            ("https://hooks.example.com/é", Method.POST, "printable ASCII"),
            ("https://hooks.example.com/{order_id}", Method.POST, "no {macro}"),
            ("https://t.example.net/pb?x={nope}", Method.GET, "unknown macro {nope}"),
            ("https://t.example.net/pb?x={order_id", Method.GET, "a brace"),
            ("https://{store_id}.example.net/pb", Method.GET, "only in the path or the query"),
            ("https://t.example.net:{order_id}/", Method.GET, "only in the path or the query"),
            ("https://hooks.example.com:99999/", Method.POST, "bad host or port"),
            ("https://hooks.example.com/" + "a" * URL_MAX, Method.POST, "at most"),
        ],
    )
    def test_refused_urls_say_why(self, url: str, method: Method, why: str) -> None:
        problem = endpoint_problem(url, method)
        assert problem is not None
        assert why in problem


class TestTemplates:
    def test_values_are_url_encoded(self) -> None:
        url = expand(
            "https://t.example.net/pb?sub={sub_id}&amt={commission}",
            {"sub_id": "a&b=c/d e", "commission": "-1.10"},
        )
        assert url == "https://t.example.net/pb?sub=a%26b%3Dc%2Fd%20e&amt=-1.10"

    def test_a_missing_value_is_empty(self) -> None:
        assert expand("https://t.example.net/pb?s={sub_id}", {}) == "https://t.example.net/pb?s="

    def test_an_unknown_macro_is_refused(self) -> None:
        with pytest.raises(InvalidEndpoint):
            expand("https://t.example.net/pb?s={secret}", {})

    def test_macro_values_come_from_the_event(self) -> None:
        notice = order_notice(
            WebhookEvent.ORDER_ATTRIBUTED, "k", facts(), Decimal("2.19"), T0, sub_id="v"
        )
        values = macro_values(notice.body())
        assert set(values) == set(MACROS)
        assert values["event_id"] == notice.id
        assert values["commission"] == "2.19"
        assert values["sub_id"] == "v"

    @given(st.dictionaries(st.sampled_from(sorted(MACROS)), st.text(max_size=40)))
    def test_no_value_can_change_the_host_or_add_a_parameter(self, values: dict[str, str]) -> None:
        template = "https://t.example.net/p/{store_id}?" + "&".join(
            f"{name}={{{name}}}" for name in sorted(MACROS)
        )
        url = expand(template, values)
        parts = urlsplit(url)
        assert parts.netloc == "t.example.net"
        assert parts.path.count("/") == 2
        query = parse_qs(parts.query, keep_blank_values=True)
        assert set(query) == set(MACROS)
        for name, value in values.items():
            assert query[name] == [value]


class TestSignatures:
    def test_a_receiver_verifies_the_body_it_got(self) -> None:
        secret = endpoint_secret("key", "we_1", 1)
        header = signature([secret], 1_700_000_000, b'{"id":"evt_1"}')
        assert header.startswith("t=1700000000,v1=")
        assert verify(secret, header, b'{"id":"evt_1"}', 1_700_000_010)

    def test_a_changed_body_a_stale_time_or_another_secret_fail(self) -> None:
        secret = endpoint_secret("key", "we_1", 1)
        header = signature([secret], 1_700_000_000, b"body")
        assert not verify(secret, header, b"bodY", 1_700_000_000)
        assert not verify(secret, header, b"body", 1_700_000_000 + 301)
        assert not verify(endpoint_secret("key", "we_1", 2), header, b"body", 1_700_000_000)
        assert not verify(secret, "v1=abc", b"body", 1_700_000_000)

    def test_during_a_rotation_both_secrets_sign(self) -> None:
        until = T0 + timedelta(hours=24)
        both = signing_secrets("key", "we_1", 2, until, T0)
        assert both == [endpoint_secret("key", "we_1", 2), endpoint_secret("key", "we_1", 1)]
        header = signature(both, 1, b"x")
        assert verify(both[0], header, b"x", 1)
        assert verify(both[1], header, b"x", 1)
        assert signing_secrets("key", "we_1", 2, until, until) == both[:1]

    def test_secrets_differ_per_endpoint_version_and_deployment(self) -> None:
        secrets = {
            endpoint_secret(k, e, v) for k in ("a", "b") for e in ("we_1", "we_2") for v in (1, 2)
        }
        assert len(secrets) == 8

    def test_a_get_signs_its_path_and_query(self) -> None:
        url = "https://t.example.net/pb?sub=a%26b&x=1"
        assert signed_content(Method.GET, b"ignored", url) == b"/pb?sub=a%26b&x=1"
        assert signed_content(Method.GET, b"", "https://t.example.net") == b"/"
        assert signed_content(Method.POST, b"body", url) == b"body"


class TestRetries:
    def test_the_schedule_doubles_from_one_second_up_to_an_hour(self) -> None:
        assert [backoff(n).total_seconds() for n in range(1, 15)] == [
            1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600,
        ]  # fmt: skip
        assert backoff(10_000) == MAX_RETRY

    def test_the_last_try_is_at_72_hours_then_it_gives_up(self) -> None:
        since = T0
        assert next_attempt(1, since, T0) == T0 + timedelta(seconds=1)
        near = since + GIVE_UP_AFTER - timedelta(seconds=10)
        assert next_attempt(40, since, near) == since + GIVE_UP_AFTER
        assert next_attempt(41, since, since + GIVE_UP_AFTER) is None

    def test_a_receiver_down_for_72_hours_gets_about_86_tries(self) -> None:
        at, failures = T0, 0
        while True:
            failures += 1
            nxt = next_attempt(failures, T0, at)
            if nxt is None:
                break
            assert nxt > at
            at = nxt
        # 13 tries in the first 68¼ minutes (0, 1, 3, 7, … 4095 s), then hourly, and the
        # last at 72 h exactly
        assert at == T0 + GIVE_UP_AFTER
        assert failures == 13 + 70 + 1

    @given(st.integers(1, 200), st.integers(0, 80 * 3600))
    def test_a_retry_is_later_and_never_past_the_deadline(
        self, failures: int, after_s: int
    ) -> None:
        now = T0 + timedelta(seconds=after_s)
        nxt = next_attempt(failures, T0, now)
        if now >= T0 + GIVE_UP_AFTER:
            assert nxt is None
        else:
            assert nxt is not None
            assert now < nxt <= T0 + GIVE_UP_AFTER
            assert nxt - now <= MAX_RETRY

    @pytest.mark.parametrize(
        ("code", "ok"),
        [(200, True), (204, True), (299, True), (301, False), (500, False), (None, False)],
    )
    def test_only_a_2xx_delivers(self, code: int | None, ok: bool) -> None:
        assert is_success(code) is ok


class TestDisable:
    def test_the_twentieth_failed_round_in_a_row_disables(self) -> None:
        health = EndpointHealth(0, False, None)
        for _ in range(DISABLE_AFTER_FAILURES - 1):
            health = after_attempts(health, [(False, "HTTP 500")])
        assert not health.disabled
        assert health.consecutive_failures == DISABLE_AFTER_FAILURES - 1
        health = after_attempts(health, [(False, "HTTP 500"), (False, "HTTP 503")])
        assert health.disabled
        assert health.disabled_reason == "20 consecutive failed deliveries; last: HTTP 503"

    def test_a_round_of_many_failures_counts_as_one(self) -> None:
        # a receiver restarting for two seconds fails every delivery of the round then
        health = after_attempts(EndpointHealth(0, False, None), [(False, "refused")] * 32)
        assert (health.consecutive_failures, health.disabled) == (1, False)

    def test_a_success_starts_the_count_again(self) -> None:
        health = after_attempts(EndpointHealth(19, False, None), [(True, ""), (False, "x")])
        assert (health.consecutive_failures, health.disabled) == (1, False)
        health = after_attempts(health, [(False, "x"), (True, "")])
        assert (health.consecutive_failures, health.disabled) == (0, False)

    def test_no_outcome_changes_nothing(self) -> None:
        health = EndpointHealth(7, False, None)
        assert after_attempts(health, []) == health

    @given(
        st.integers(0, 25),
        st.lists(st.lists(st.booleans(), min_size=1, max_size=8), max_size=40),
    )
    def test_disabled_exactly_when_twenty_rounds_in_a_row_end_failing(
        self, start: int, rounds: list[list[bool]]
    ) -> None:
        """Each round adds at most one failure: a round ending in a failure (after its last
        success, if any) is a failed round; a round whose last outcome succeeded resets."""
        health = EndpointHealth(start, False, None)
        run, reached = start, False
        for oks in rounds:
            before = health.consecutive_failures
            health = after_attempts(health, [(ok, "e") for ok in oks])
            assert health.consecutive_failures <= before + 1  # never more than one per round
            if any(oks):
                run = 0
            if not oks[-1]:
                run += 1
                reached = reached or run >= DISABLE_AFTER_FAILURES
            assert health.consecutive_failures == run
        assert health.disabled is reached

    @given(st.integers(0, 25), st.integers(1, 32))
    def test_how_many_failed_in_a_round_does_not_matter(self, start: int, n: int) -> None:
        one = after_attempts(EndpointHealth(start, False, None), [(False, "e")])
        many = after_attempts(EndpointHealth(start, False, None), [(False, "e")] * n)
        assert one == many


class TestTargets:
    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "not-an-address",
            # an IPv4 address inside an IPv6 one
            "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
            "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
            "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
            "64:ff9b:1::a9fe:a9fe",  # local-use NAT64: refused outright
            "64:ff9b:1::808:808",
            "2002:7f00:1::",  # 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
            "2002:c0a8:101::",  # 6to4 of 192.168.1.1
            "::7f00:1",  # IPv4-compatible: refused outright
            "::808:808",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo: refused outright
            "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo of client 127.0.0.1
        ],
    )
    def test_private_loopback_and_reserved_addresses_are_refused(self, address: str) -> None:
        assert not address_allowed(address, allow_private=False)

    @pytest.mark.parametrize(
        "address",
        [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "64:ff9b::808:808",  # NAT64 of 8.8.8.8
            "2002:808:808::1",  # 6to4 of 8.8.8.8
            "::ffff:8.8.8.8",
        ],
    )
    def test_public_addresses_are_allowed(self, address: str) -> None:
        assert address_allowed(address, allow_private=False)

    def test_allowing_private_targets_allows_loopback(self) -> None:
        assert address_allowed("127.0.0.1", allow_private=True)


class TestHostileUrls:
    @given(st.text(max_size=300), st.sampled_from(list(Method)))
    def test_any_text_is_answered_without_raising(self, url: str, method: Method) -> None:
        problem = endpoint_problem(url, method)
        if problem is None:
            assert urlsplit(url).scheme.lower() in ("http", "https")
            assert url.isascii()


# -- scheduling -----------------------------------------------------------------------------

_ENDPOINTS = ["e1", "e2", "e3", "e4", "e5"]


@st.composite
def _due_lists(draw: st.DrawFn) -> list[Due]:
    """Due deliveries; whether an endpoint is failing, and whose it is, is one fact per
    endpoint (as the claim reads them from its row)."""
    failing = draw(st.sets(st.sampled_from(_ENDPOINTS)))
    owners = {e: draw(st.sampled_from(["affiliate/a", "store/s", "finance/f"])) for e in _ENDPOINTS}
    picks = draw(st.lists(st.tuples(st.integers(1, 40), st.sampled_from(_ENDPOINTS)), max_size=40))
    return [Due(i, e, owners[e], e in failing) for i, e in picks]


_dues = _due_lists()
_limits = st.builds(
    Limits,
    slots=st.integers(1, 12),
    per_endpoint=st.integers(1, 4),
    per_owner=st.integers(1, 8),
)
_busy_endpoints = st.dictionaries(st.sampled_from(["e1", "e2", "e3"]), st.integers(0, 4))
_busy_owners = st.dictionaries(st.sampled_from(["affiliate/a", "store/s"]), st.integers(0, 4))


def _fits(
    chosen: list[Due],
    limits: Limits,
    busy: int,
    busy_endpoints: dict[str, int],
    busy_owners: dict[str, int],
) -> bool:
    """Brute force: whether starting ``chosen`` keeps every limit, counted from scratch."""
    if busy + len(chosen) > limits.slots or len({d.delivery_id for d in chosen}) < len(chosen):
        return False
    for d in chosen:
        same_endpoint = sum(1 for c in chosen if c.endpoint_id == d.endpoint_id)
        limit = 1 if d.failing else limits.per_endpoint
        if busy_endpoints.get(d.endpoint_id, 0) + same_endpoint > limit:
            return False
        same_owner = sum(1 for c in chosen if c.owner == d.owner)
        if busy_owners.get(d.owner, 0) + same_owner > limits.per_owner:
            return False
    return True


def _reference(
    due: list[Due],
    limits: Limits,
    busy: int,
    busy_endpoints: dict[str, int],
    busy_owners: dict[str, int],
) -> list[Due]:
    """The oldest-first greedy choice, each step checked from scratch by :func:`_fits`."""
    chosen: list[Due] = []
    for d in due:
        if _fits([*chosen, d], limits, busy, busy_endpoints, busy_owners):
            chosen.append(d)
    return chosen


class TestScheduling:
    """The delivery worker's rule: no round, limits per worker, per endpoint, per owner."""

    @given(_dues, _limits, st.integers(0, 12), _busy_endpoints, _busy_owners)
    def test_the_choice_is_the_oldest_first_greedy_one_within_every_limit(
        self,
        due: list[Due],
        limits: Limits,
        busy: int,
        busy_endpoints: dict[str, int],
        busy_owners: dict[str, int],
    ) -> None:
        busy = min(busy, limits.slots)
        chosen = schedule(due, limits, busy, busy_endpoints, busy_owners)
        assert chosen == _reference(due, limits, busy, busy_endpoints, busy_owners)
        # a subsequence of the due ones, in their order (oldest first)
        it = iter(due)
        assert all(any(d is x for x in it) for d in chosen)

    @given(_dues, _limits, st.integers(0, 12), _busy_endpoints, _busy_owners)
    def test_a_delivery_left_out_would_break_a_limit(
        self,
        due: list[Due],
        limits: Limits,
        busy: int,
        busy_endpoints: dict[str, int],
        busy_owners: dict[str, int],
    ) -> None:
        busy = min(busy, limits.slots)
        chosen = schedule(due, limits, busy, busy_endpoints, busy_owners)
        assert _fits(chosen, limits, busy, busy_endpoints, busy_owners)
        taken = {d.delivery_id for d in chosen}
        for d in due:
            if d.delivery_id not in taken:
                assert not _fits([*chosen, d], limits, busy, busy_endpoints, busy_owners)

    @given(st.integers(1, 200), st.integers(0, 20))
    def test_one_endpoints_backlog_never_holds_more_than_its_limit(
        self, backlog: int, others: int
    ) -> None:
        """However much one slow endpoint has due (oldest first), the others' deliveries
        behind it start while the worker has slots."""
        limits = Limits(slots=32, per_endpoint=2, per_owner=8)
        slow = [Due(i, "slow", "affiliate/slow", False) for i in range(backlog)]
        fast = [Due(1000 + i, f"fast-{i}", f"affiliate/f{i}", False) for i in range(others)]
        chosen = schedule([*slow, *fast], limits, 0, {}, {})
        assert sum(1 for d in chosen if d.endpoint_id == "slow") == min(backlog, 2)
        assert [d for d in chosen if d.endpoint_id != "slow"] == fast[: 32 - min(backlog, 2)]

    def test_one_owner_holds_at_most_its_share_of_the_worker(self) -> None:
        limits = Limits(slots=32, per_endpoint=2, per_owner=8)
        hostile = [Due(i, f"e{i // 2}", "affiliate/h", False) for i in range(40)]
        other = [Due(100, "x", "store/s", False)]
        chosen = schedule([*hostile, *other], limits, 0, {}, {})
        assert len(chosen) == 9
        assert chosen[-1] == other[0]
        assert schedule([*hostile, *other], limits, 0, {}, {"affiliate/h": 8}) == other

    def test_a_failing_endpoint_gets_one_probe_and_a_full_worker_nothing(self) -> None:
        limits = Limits(slots=4, per_endpoint=2, per_owner=4)
        due = [Due(i, "e", "store/s", True) for i in range(3)]
        assert schedule(due, limits, 0, {}, {}) == due[:1]
        assert schedule(due, limits, 0, {"e": 1}, {}) == []
        assert schedule([Due(9, "f", "store/t", False)], limits, 4, {}, {}) == []

    def test_limits_are_at_least_one(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            Limits(slots=0)


class TestResponseExcerpt:
    @given(st.binary(max_size=3000))
    def test_at_most_the_first_kib_of_the_body_is_kept(self, body: bytes) -> None:
        kept = response_excerpt(body)
        assert len(kept) <= RESPONSE_BODY_MAX
        assert "\x00" not in kept
        head = body[:RESPONSE_BODY_MAX]
        if b"\x00" not in head:
            with contextlib.suppress(UnicodeDecodeError):
                assert kept == head.decode()

    def test_a_character_cut_at_the_end_is_replaced(self) -> None:
        body = ("a" + "é" * 3000).encode()  # the 1,024th byte is half of an é
        assert response_excerpt(body) == "a" + "é" * 511 + "\ufffd"
