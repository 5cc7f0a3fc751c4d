"""True end to end: the three services as real processes (uvicorn), stopped with SIGTERM."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared import procs
from shared.cli import SERVICES
from shared.config import Settings
from tests.conftest import free_ports
from tests.integration.harness import eventually

pytestmark = pytest.mark.integration


def service_env(settings: Settings) -> dict[str, str]:
    return {
        "ALLIANCE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": settings.database_url,
        "ALLIANCE_TOPIC_PREFIX": settings.topic_prefix,
        "ALLIANCE_CONSUMER_BATCH_MS": "50",
        "ALLIANCE_TRACKER_PORT": str(settings.tracker_port),
        "ALLIANCE_ATTRIBUTION_PORT": str(settings.attribution_port),
        "ALLIANCE_COMMISSION_PORT": str(settings.commission_port),
    }


async def test_processes_serve_the_pipeline_and_stop_cleanly_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    tracker_port, attribution_port, commission_port = free_ports(3)
    s = settings.model_copy(
        update={
            "tracker_port": tracker_port,
            "attribution_port": attribution_port,
            "commission_port": commission_port,
        }
    )
    run_dir = tmp_path / "run"
    pids = {name: procs.start(name, [name], run_dir, service_env(s)) for name in SERVICES}
    try:
        for port in (s.tracker_port, s.attribution_port, s.commission_port):
            procs.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        uid = uuid.uuid4().hex[:8]
        store, order_id = f"s-{uid}", f"o-{uid}"
        tracker = httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.tracker_port}")
        commission = httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.commission_port}")
        async with tracker, commission:
            assert (
                await commission.post(
                    f"/v1/stores/{store}/program/join", json={"default_rate": "0.1"}
                )
            ).status_code == 200
            code = (
                await tracker.post("/v1/links", json={"affiliate_id": "aff-e2e", "store_id": store})
            ).json()["code"]
            redirect = await tracker.get(f"/r/{code}")
            assert redirect.status_code == 302
            assert redirect.headers["location"].startswith(f"https://{store}.shop.example/")
            visitor = parse_qs(urlsplit(redirect.headers["location"]).query)["alliance_vid"][0]
            now = datetime.now(UTC).isoformat()
            events = [
                {
                    "event_id": f"{order_id}-p",
                    "type": "order_placed",
                    "occurred_at": now,
                    "order_id": order_id,
                    "visitor_id": visitor,
                    "currency": "EUR",
                    "items": [
                        {
                            "product_id": "p9",
                            "quantity": 3,
                            "unit_price": "9.99",
                            "shipping_fee": "2.00",
                        }
                    ],
                },
                {
                    "event_id": f"{order_id}-c",
                    "type": "order_completed",
                    "occurred_at": now,
                    "order_id": order_id,
                },
            ]
            resp = await tracker.post(
                "/v1/events", json={"events": events}, headers={"X-Alliance-Store": store}
            )
            assert resp.status_code == 202

            async def settled() -> dict[str, str] | None:
                r = await commission.get(f"/v1/orders/{order_id}")
                body: dict[str, str] = r.json()
                return body if r.status_code == 200 and body["payable"] != "0.00" else None

            view = await eventually(settled)
            assert view["affiliate_id"] == "aff-e2e"
            assert view["payable"] == "2.80"  # (3 × 9.99 − 2.00) × 10% = 2.797 → 2.80
            assert view["currency"] == "EUR"
    finally:
        stopped = {name: procs.stop(name, run_dir) for name in SERVICES}
    assert all(stopped.values())
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        log = (run_dir / f"{name}.log").read_text()
        assert "Application shutdown complete" in log, log[-2000:]
        assert "Traceback" not in log, log[-4000:]
