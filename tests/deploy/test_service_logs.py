"""A real service process (``alliance tracker``) writes its records as JSON lines with
``ALLIANCE_LOG_FORMAT=json`` (uvicorn's own included), and with ``OTEL_TRACES_EXPORTER=console``
its request spans continue the caller's trace. Nothing leaves loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from shared.config import Settings
from tests.conftest import free_ports
from tests.deploy.test_cli_services import one_tracker, service_env

pytestmark = pytest.mark.integration

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_json_lines_and_console_spans_of_a_real_process(
    settings: Settings, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    s = settings.model_copy(update={"tracker_port": port, "spool_dir": tmp_path / "spool"})
    env = service_env(s) | {
        "ALLIANCE_LOG_FORMAT": "json",
        "OTEL_TRACES_EXPORTER": "console",  # spans on standard output: no collector
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    run_dir = tmp_path / "run"
    with one_tracker(run_dir, env, port):
        async with httpx.AsyncClient() as client:
            answer = await client.get(
                f"http://127.0.0.1:{port}/healthz",
                headers={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"},
            )
            assert answer.status_code == 200
    text = (run_dir / "tracker.log").read_text()
    records = [orjson.loads(line) for line in text.splitlines() if line.startswith('{"time"')]
    messages = {r["message"] for r in records}
    assert "Application shutdown complete." in messages, text[-2000:]
    assert all(r["service"] == "tracker" for r in records)
    assert any(r["message"].startswith("traces on") for r in records)
    assert "Traceback" not in text, text[-4000:]
    # the console exporter's span of the request, in the caller's trace
    assert '"name": "GET /healthz"' in text
    assert f'"trace_id": "0x{CALLER_TRACE}"' in text
