"""Click quality, pure: which clicks are marked suspicious (bots, floods, an affiliate clicking
its own link) and why, at the boundaries of each rule; a prefetch is never a click."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tracker.quality import (
    MAX_USER_AGENT,
    FloodGuard,
    SelfReferral,
    cut_user_agent,
    is_bot,
    is_prefetch,
    suspicion,
)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1"
)


class TestBots:
    @pytest.mark.parametrize("user_agent", [None, "", "   "])
    def test_a_request_without_a_user_agent_is_a_bot(self, user_agent: str | None) -> None:
        assert is_bot(user_agent)

    @pytest.mark.parametrize(
        "user_agent",
        [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Twitterbot/1.0",
        ],
    )
    def test_known_crawlers_and_link_previews_are_bots(self, user_agent: str) -> None:
        assert is_bot(user_agent)

    @pytest.mark.parametrize("user_agent", [CHROME, FIREFOX, SAFARI_IPHONE])
    def test_browsers_are_not_bots(self, user_agent: str) -> None:
        assert not is_bot(user_agent)

    @pytest.mark.parametrize(("shift", "bot"), [(0, True), (13, False)])
    def test_a_bot_name_ending_at_the_512th_character_is_read_one_starting_past_it_is_not(
        self, shift: int, bot: bool
    ) -> None:
        name = "Googlebot/2.1"  # 13 characters
        user_agent = CHROME + " " * (MAX_USER_AGENT - len(CHROME) - len(name) + shift) + name
        assert is_bot(user_agent) is bot

    @given(st.text(max_size=2 * MAX_USER_AGENT))
    def test_the_user_agent_kept_is_at_most_512_characters_of_what_was_sent(
        self, user_agent: str
    ) -> None:
        kept = cut_user_agent(user_agent)
        assert kept is None if not user_agent else kept == user_agent[:MAX_USER_AGENT]
        assert is_bot(user_agent) == is_bot(kept)


class TestPrefetch:
    @pytest.mark.parametrize(
        "headers",
        [
            {"purpose": "prefetch"},
            {"sec-purpose": "prefetch;prerender"},
            {"x-moz": "Prefetch"},
        ],
    )
    def test_a_prefetch_header_means_no_click(self, headers: dict[str, str]) -> None:
        assert is_prefetch(headers)

    @pytest.mark.parametrize(
        "headers", [{}, {"purpose": "navigate"}, {"sec-fetch-mode": "prefetch"}]
    )
    def test_an_ordinary_request_is_not_a_prefetch(self, headers: dict[str, str]) -> None:
        assert not is_prefetch(headers)


class TestFlood:
    def test_up_to_the_limit_in_a_minute_is_fine_one_more_is_a_flood(self) -> None:
        guard = FloodGuard(limit=3)
        assert [guard.flooded("l1", ["v:1"], t) for t in (0, 10, 20, 30)] == [
            False,
            False,
            False,
            True,
        ]

    def test_a_click_exactly_a_minute_old_no_longer_counts(self) -> None:
        guard = FloodGuard(limit=2)
        assert not guard.flooded("l1", ["v:1"], 0.0)
        assert not guard.flooded("l1", ["v:1"], 30.0)
        assert not guard.flooded("l1", ["v:1"], 60.0)  # the click at 0 is out: 2 in the window

    def test_a_click_just_under_a_minute_old_still_counts(self) -> None:
        guard = FloodGuard(limit=2)
        guard.flooded("l1", ["v:1"], 0.0)
        guard.flooded("l1", ["v:1"], 30.0)
        assert guard.flooded("l1", ["v:1"], 59.999)

    def test_either_the_visitor_or_the_address_over_the_limit_is_a_flood(self) -> None:
        guard = FloodGuard(limit=1)
        assert not guard.flooded("l1", ["v:1", "ip:10.0.0.1"], 0)
        # a new visitor from the same address: its address made the second click
        assert guard.flooded("l1", ["v:2", "ip:10.0.0.1"], 1)

    def test_a_click_with_nothing_to_count_by_is_never_a_flood(self) -> None:
        guard = FloodGuard(limit=0)
        assert not guard.flooded("l1", [], 0)

    @given(st.lists(st.floats(0, 300, allow_nan=False), min_size=1, max_size=30), st.integers(0, 5))
    def test_the_count_is_exact_over_the_sliding_minute(
        self, gaps: list[float], limit: int
    ) -> None:
        guard = FloodGuard(limit=limit)
        times: list[float] = []
        now = 0.0
        for gap in gaps:
            now += gap
            times.append(now)
            in_window = sum(1 for t in times if t > now - 60.0)
            assert guard.flooded("l1", ["v:1"], now) == (in_window > limit)


class TestSelfReferral:
    def test_a_click_from_an_address_the_affiliate_used_is_self_referral(self) -> None:
        seen = SelfReferral()
        seen.saw("a1", "10.0.0.1", 0)
        assert seen.is_self("a1", "10.0.0.1", 10)

    def test_another_affiliate_or_address_is_not(self) -> None:
        seen = SelfReferral()
        seen.saw("a1", "10.0.0.1", 0)
        assert not seen.is_self("a2", "10.0.0.1", 10)
        assert not seen.is_self("a1", "10.0.0.2", 10)

    def test_a_click_without_an_address_is_never_self_referral(self) -> None:
        assert not SelfReferral().is_self("a1", None, 0)

    def test_an_address_counts_for_a_day_exactly(self) -> None:
        seen = SelfReferral(horizon_s=86_400)
        seen.saw("a1", "10.0.0.1", 0)
        assert seen.is_self("a1", "10.0.0.1", 86_400)
        assert not seen.is_self("a1", "10.0.0.1", 86_400.001)


class TestSuspicion:
    @given(st.booleans(), st.booleans(), st.booleans())
    def test_the_first_reason_that_applies_wins_bot_then_self_referral_then_flood(
        self, bot: bool, flooded: bool, self_referral: bool
    ) -> None:
        reasons = [("bot", bot), ("self_referral", self_referral), ("flood", flooded)]
        expected = next((name for name, applies in reasons if applies), None)
        assert suspicion(bot=bot, flooded=flooded, self_referral=self_referral) == expected

    def test_a_clean_click_has_no_reason(self) -> None:
        assert suspicion(bot=False, flooded=False, self_referral=False) is None
