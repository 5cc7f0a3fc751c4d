"""The GCRA of :mod:`shared.ratelimit` against a brute-force token bucket in exact fractions,
and the bounds a quota promises."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ratelimit import NS, Quota, admit, charge, gcra, refund, whole

quotas = st.builds(
    Quota, st.just("public"), st.integers(min_value=1, max_value=50), st.integers(1, 120)
)
#: gaps between requests, in nanoseconds: bursts (0) and everything up to a few seconds
gaps = st.lists(st.integers(min_value=0, max_value=3 * NS), min_size=1, max_size=300)


def bucket(quota: Quota, times: list[int]) -> list[bool]:
    """The reference: a bucket of ``requests`` tokens, refilled at ``requests`` per window,
    in exact fractions; a request passes when a whole token is there."""
    tokens, last, out = Fraction(quota.requests), times[0], []
    rate = Fraction(quota.requests, quota.window_s * NS)
    for t in times:
        tokens = min(Fraction(quota.requests), tokens + (t - last) * rate)
        last = t
        ok = tokens >= 1
        if ok:
            tokens -= 1
        out.append(ok)
    return out


def run(quota: Quota, times: list[int]) -> list[bool]:
    tat: int | None = None
    out = []
    for t in times:
        d = gcra(quota, tat, t)
        if d.allowed:
            tat = d.tat
        out.append(d.allowed)
    return out


def instants(start: int, steps: list[int]) -> list[int]:
    out, t = [], start
    for gap in steps:
        t += gap
        out.append(t)
    return out


class TestGcraIsATokenBucket:
    @settings(max_examples=300, deadline=None)
    @given(quotas, gaps, st.integers(min_value=0, max_value=10**15))
    def test_the_same_requests_pass_as_through_a_token_bucket(
        self, quota: Quota, steps: list[int], start: int
    ) -> None:
        times = instants(start, steps)
        assert run(quota, times) == bucket(quota, times)

    @settings(max_examples=200, deadline=None)
    @given(quotas, gaps)
    def test_no_span_lets_more_through_than_the_burst_plus_the_rate(
        self, quota: Quota, steps: list[int]
    ) -> None:
        times = instants(0, steps)
        passed = [t for t, ok in zip(times, run(quota, times), strict=True) if ok]
        for i, first in enumerate(passed):
            for j in range(i, len(passed)):
                span = passed[j] - first
                bound = quota.requests + Fraction(span * quota.requests, quota.window_s * NS)
                assert j - i + 1 <= bound


class TestAdmit:
    @settings(max_examples=300, deadline=None)
    @given(quotas, gaps, st.integers(min_value=0, max_value=10**15))
    def test_admit_lets_through_what_gcra_allows_and_keeps_the_same_tat(
        self, quota: Quota, steps: list[int], start: int
    ) -> None:
        """The redirect's fast path charges with ``admit`` (no headers): the same verdicts
        and the same state as the middleware's ``gcra``, request after request."""
        tat: int | None = None
        for t in instants(start, steps):
            decision, admitted = gcra(quota, tat, t), admit(quota, tat, t)
            assert (admitted is not None) == decision.allowed
            if admitted is not None:
                assert admitted == decision.tat
                tat = admitted


class TestDecision:
    def test_a_whole_quota_passes_at_once_then_the_next_is_refused(self) -> None:
        quota = Quota("public", 5, 10)
        tat = None
        for left in range(4, -1, -1):
            d = gcra(quota, tat, 7 * NS)
            assert d.allowed
            assert d.remaining == left
            tat = d.tat
        refused = gcra(quota, tat, 7 * NS)
        assert not refused.allowed
        assert refused.tat == tat
        assert refused.retry_after_s == pytest.approx(2.0)  # one request every 10 / 5 s
        assert refused.reset_s == pytest.approx(10.0)

    def test_the_headers_follow_the_ietf_draft(self) -> None:
        quota = Quota("public", 2, 60)
        first = gcra(quota, None, 0)
        assert dict(first.headers(quota)) == {
            "RateLimit-Policy": '"public";q=2;w=60',
            "RateLimit": '"public";r=1;t=30',
        }
        second = gcra(quota, first.tat, 0)
        refused = gcra(quota, second.tat, 0)
        assert dict(refused.headers(quota)) == {
            "RateLimit-Policy": '"public";q=2;w=60',
            "RateLimit": '"public";r=0;t=60',
            "Retry-After": "30",
        }

    def test_a_default_public_quota_refuses_a_burst_of_1000_in_a_second(self) -> None:
        from shared.config import Settings

        quota = Quota.parse("public", Settings.model_fields["rate_limit_public"].default)
        assert quota is not None
        times = [i * NS // 1000 for i in range(1000)]
        assert 0 < sum(run(quota, times)) < 1000

    def test_refund_gives_back_what_one_request_took(self) -> None:
        quota = Quota("key", 3, 3)
        a = gcra(quota, None, 0)
        b = gcra(quota, a.tat, 0)
        assert refund(quota, b.tat, 0) == a.tat
        assert refund(quota, a.tat, 0) is None
        assert whole(quota, None, 0)

    def test_a_charge_may_run_past_the_window(self) -> None:
        quota = Quota("public", 1, 1)
        tat = None
        for _ in range(5):
            tat = charge(quota, tat, 0)
        d = gcra(quota, tat, 0)
        assert not d.allowed
        assert d.retry_after_s == pytest.approx(5.0)


class TestParse:
    @pytest.mark.parametrize(
        ("text", "want"), [("120/60", (120, 60)), (" 5 / 1s ", (5, 1)), ("off", None), ("0", None)]
    )
    def test_requests_per_seconds_or_off(self, text: str, want: tuple[int, int] | None) -> None:
        quota = Quota.parse("public", text)
        assert (quota and (quota.requests, quota.window_s)) == want

    @pytest.mark.parametrize("text", ["120", "1.5/60", "0/60", "-1/1", "a/b", "10/0"])
    def test_anything_else_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"rate limit|quota"):
            Quota.parse("public", text)
