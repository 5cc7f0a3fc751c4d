"""The webhook worker's metrics: every attempt counted by its outcome (a few fixed values,
never an address) and timed, in seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.commission.webhooks.service import Outcome
from services.commission.webhooks.worker import outcome_of
from shared.config import Settings
from shared.metrics import Metric
from tests.services.commission.webhooks.test_worker import AFFILIATE, notice, world


def attempt(status: int | None, error: str | None) -> Outcome:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Outcome(1, "e", 1, now, now, status, 12, error)


class TestOutcomeLabel:
    @pytest.mark.parametrize(
        ("status", "error", "label"),
        [
            (204, None, "delivered"),
            (500, "HTTP 500", "rejected"),
            (None, "timeout after 10s", "timeout"),
            (None, "refused: 10.0.0.1 is private", "refused"),
            (None, "invalid: not https", "refused"),
            (None, "ConnectError: connection refused", "failed"),
        ],
    )
    def test_each_ending_has_one_of_five_labels(
        self, status: int | None, error: str | None, label: str
    ) -> None:
        assert outcome_of(attempt(status, error)) == label


@pytest.mark.integration
class TestWorkerMetrics:
    async def test_failures_then_a_success_are_counted_by_outcome_and_timed(
        self, settings: Settings
    ) -> None:
        async with world(settings, fail_first=2) as (w, hooks):
            await w.register(AFFILIATE, hooks.url("/a"))
            await w.notify([notice("o-1", 0)])
            worker = w.worker()
            try:
                for _ in range(3):
                    assert await worker.run_once() == 1
                    w.clock.advance(timedelta(minutes=1))  # past the backoff
            finally:
                await worker.close()
        registry = CollectorRegistry()
        registry.register(worker.outcomes)
        registry.register(worker.attempt_seconds)
        found = {
            (s.name, s.labels.get("outcome")): s.value
            for f in text_string_to_metric_families(generate_latest(registry).decode())
            for s in f.samples
        }
        assert found[(Metric.WEBHOOKS, "rejected")] == 2
        assert found[(Metric.WEBHOOKS, "delivered")] == 1
        assert found[(f"{Metric.WEBHOOK_SECONDS}_count", "rejected")] == 2
        assert found[(f"{Metric.WEBHOOK_SECONDS}_count", "delivered")] == 1
