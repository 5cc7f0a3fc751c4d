"""True end to end: the three services as real processes (uvicorn), stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from deploy import procs
from deploy.cli import SERVICES
from shared.config import Settings
from tests.conftest import free_ports
from tests.integration.harness import (
    BROWSER_UA,
    Services,
    admin,
    eventually,
    new_affiliate,
    new_link,
    new_store,
    signed_post,
)
from tests.integration.test_pipeline import completed, placed

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def one_tracker(run_dir: Path, env: dict[str, str], port: int) -> Iterator[int]:
    """``alliance tracker`` as a process of its own, ready on ``port``; stopped with SIGTERM
    (and gone) after the block. Yields its pid."""
    pid = procs.start("tracker", ["tracker"], run_dir, env)
    try:
        procs.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
        yield pid
    finally:
        assert procs.stop("tracker", run_dir)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def service_env(settings: Settings) -> dict[str, str]:
    return {
        "ALLIANCE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "ALLIANCE_DATABASE_URL": settings.database_url,
        "ALLIANCE_TOPIC_PREFIX": settings.topic_prefix,
        "ALLIANCE_CONSUMER_BATCH_MS": "50",
        "ALLIANCE_TRACKER_PORT": str(settings.tracker_port),
        "ALLIANCE_ATTRIBUTION_PORT": str(settings.attribution_port),
        "ALLIANCE_COMMISSION_PORT": str(settings.commission_port),
        "ALLIANCE_SPOOL_DIR": str(settings.spool_path),
    }


def on_free_ports(settings: Settings, tmp_path: Path) -> Settings:
    """``settings`` with the three services on free ports and a spool under ``tmp_path``."""
    tracker_port, attribution_port, commission_port = free_ports(3)
    return settings.model_copy(
        update={
            "tracker_port": tracker_port,
            "attribution_port": attribution_port,
            "commission_port": commission_port,
            "spool_dir": tmp_path / "spool",
        }
    )


async def test_processes_serve_the_pipeline_and_stop_cleanly_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    s = on_free_ports(settings, tmp_path)
    run_dir = tmp_path / "run"
    pids = {name: procs.start(name, [name], run_dir, service_env(s)) for name in SERVICES}
    try:
        for port in (s.tracker_port, s.attribution_port, s.commission_port):
            procs.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        u = uuid.uuid4().hex[:8]
        clients = [
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers={"User-Agent": BROWSER_UA}
            )
            for port in (s.tracker_port, s.attribution_port, s.commission_port)
        ]
        svc = Services(clients[0], clients[1], clients[2], apps={})
        async with clients[0], clients[1], clients[2]:
            store = await new_store(svc, s, f"s-{u}", products=("p9",), rate="0.1")
            key = await new_affiliate(svc, s, f"aff-{u}")
            link = await new_link(svc, key, store.store_id, "p9")
            redirect = await svc.tracker.get(f"/r/{link['code']}")
            assert redirect.status_code == 302
            location = redirect.headers["location"]
            assert location.startswith(f"https://{store.store_id}.shop.example/item/p9?")
            visitor = parse_qs(urlsplit(location).query)["alliance_vid"][0]
            order_id = f"o-{u}"
            order = placed(order_id, visitor, price="9.99", qty=3, ship="2.00") | {
                "currency": "EUR"
            }
            order["items"][0]["product_id"] = "p9"
            resp = await signed_post(
                svc.tracker, "/v1/events", store, {"events": [order, completed(order_id)]}
            )
            assert resp.status_code == 202, resp.text

            async def settled() -> dict[str, str] | None:
                r = await svc.commission.get(
                    f"/v1/stores/{store.store_id}/orders/{order_id}", headers=admin(s)
                )
                body: dict[str, str] = r.json()
                return body if r.status_code == 200 and body["payable"] != "0.00" else None

            view = await eventually(settled)
            assert view["affiliate_id"] == f"aff-{u}"
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


async def test_metrics_are_served_on_their_own_port_never_on_the_public_one(
    settings: Settings, tmp_path: Path
) -> None:
    """``alliance tracker`` with ``ALLIANCE_METRICS_PORT``: two listeners in one process; the
    public port answers ``/metrics`` with 404, the metrics port only with the token; both stop
    on SIGTERM."""
    public, private = free_ports(2)
    s = settings.model_copy(update={"tracker_port": public, "spool_dir": tmp_path / "spool"})
    env = service_env(s) | {
        "ALLIANCE_METRICS_PORT": str(private),
        "ALLIANCE_METRICS_TOKEN": "m-tok",
    }
    run_dir = tmp_path / "run"
    with one_tracker(run_dir, env, public):
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{public}/metrics")).status_code == 404
            metrics = f"http://127.0.0.1:{private}/metrics"
            assert (await client.get(metrics)).status_code == 401
            found = await client.get(metrics, headers={"Authorization": "Bearer m-tok"})
            assert found.status_code == 200
            assert "alliance_tracker_spool_bytes" in found.text
            other = f"http://127.0.0.1:{private}/healthz"
            assert (await client.get(other)).status_code == 404
    log = (run_dir / "tracker.log").read_text()
    assert "Application shutdown complete" in log, log[-2000:]
    assert "Traceback" not in log, log[-4000:]
