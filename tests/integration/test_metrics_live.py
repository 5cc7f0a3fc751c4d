"""The metrics of a running pipeline: one order through the three services, then each
service's ``/metrics`` shows its consumers' lag and position per partition, their batch
durations, the ledger postings committed and the HTTP durations by route template."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shared.config import Settings
from shared.metrics import COMMITTED, LEDGER_POSTINGS, Metric
from tests.integration.harness import (
    eventually,
    new_affiliate,
    new_link,
    new_store,
    order_view,
    running,
    signed_post,
    uid,
    visitor_of,
)
from tests.integration.test_pipeline import completed, placed
from tests.scrape import scrape

pytestmark = pytest.mark.integration


def samples(text: str, name: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


async def test_a_running_pipeline_exports_lag_durations_and_postings(settings: Settings) -> None:
    u = uid()
    postings_before = COMMITTED[LEDGER_POSTINGS]
    async with running(settings) as svc:
        store = await new_store(svc, settings, f"s-{u}")
        key = await new_affiliate(svc, settings, f"aff-{u}")
        link = await new_link(svc, key, store.store_id, "p1")
        visitor = visitor_of(await svc.tracker.get(f"/r/{link['code']}"))
        order_id = f"o-{u}"
        events = {"events": [placed(order_id, visitor), completed(order_id)]}
        assert (await signed_post(svc.tracker, "/v1/events", store, events)).status_code == 202
        await eventually(
            lambda: order_view(svc, settings, (store.store_id, order_id), status="completed")
        )

        async def posted() -> float | None:
            text = (await scrape(svc.apps["commission"])).text
            value = samples(text, Metric.LEDGER_POSTINGS)[0].value
            # the count is the process's: earlier tests' postings are in it too
            return value if value >= postings_before + 2 else None

        # an affiliate's commission: two postings (the store's and the affiliate's)
        assert await eventually(posted) >= postings_before + 2
        texts = {name: (await scrape(app)).text for name, app in svc.apps.items()}

    for consumer, service in (("commission", "commission"), ("attribution", "attribution")):
        text = texts[service]
        mine = {"consumer": consumer}
        batches = [s for s in samples(text, f"{Metric.BATCH_SECONDS}_count") if s.labels == mine]
        assert batches, text
        assert batches[0].value >= 1
        records = [s for s in samples(text, Metric.RECORDS) if s.labels == mine]
        assert records
        assert records[0].value >= 1
        lags = [s for s in samples(text, Metric.LAG) if s.labels["consumer"] == consumer]
        assert lags, text
        assert all({"topic", "partition"} <= set(s.labels) and s.value >= 0 for s in lags)
        positions = [s for s in samples(text, Metric.POSITION) if s.labels["consumer"] == consumer]
        assert any(s.value > 0 for s in positions)
        assert samples(text, Metric.OUTBOX_BACKLOG), text  # measured by the scrape

    assert COMMITTED[LEDGER_POSTINGS] >= postings_before + 2
    http = [
        (s.labels["route"], s.labels["status"])
        for s in samples(texts["tracker"], f"{Metric.HTTP_SECONDS}_count")
    ]
    assert ("/v1/events", "202") in http
    clicks = [s for s in samples(texts["tracker"], Metric.TRACKER) if s.labels["what"] == "clicks"]
    assert clicks
    assert clicks[0].value >= 1
