"""`alliance demo`'s live run, through the three services as real processes on the real stack,
ends with a payout run: its affiliates paid in EUR at the rate finance recorded (the one without
bank details carried, with why), the run's pain.001 file and a self-billing invoice whose first
page is a readable image."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pypdfium2
import pytest
from pypdf import PdfReader

from deploy import procs
from deploy.cli import SERVICES
from deploy.demo import payouts as demo_payouts
from deploy.demo.live import run_demo
from shared.config import Settings
from tests.deploy.test_cli_services import on_free_ports, service_env
from tests.integration.harness import admin

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


async def quarter() -> int:
    print("(the quarter)")  # noqa: T201 - a stand-in for the quarter's replay and its output
    return 0


async def test_the_live_demo_ends_with_a_payout_run_its_pain001_and_an_invoice(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = on_free_ports(settings, tmp_path)
    run_dir = tmp_path / "run"
    for name in SERVICES:
        procs.start(name, [name], run_dir, service_env(s))
    try:
        for port in (s.tracker_port, s.attribution_port, s.commission_port):
            procs.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        assert await run_demo(s, out_dir=tmp_path / "out", quarter=quarter) == 0
        printed = capsys.readouterr().out
        # the quarter's replay (here a stand-in) comes before: `alliance demo` ends with the run
        assert printed.index("(the quarter)") < printed.index("Payout run")
        run_id = re.search(r"Payout run (\d+) up to", printed)
        assert run_id, printed
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.commission_port}") as client:
            run = (
                await client.get(f"/v1/finance/payout-runs/{run_id[1]}", headers=admin(s))
            ).json()
    finally:
        assert all(procs.stop(name, run_dir) for name in SERVICES)

    suffix = re.search(r"code ANNA-(\w+) for", printed)
    assert suffix, printed
    ours = {f"{name}-{suffix[1].lower()}" for name in ("blog-techie", "coupon-hub", "insta-anna")}
    paid = {p["affiliate_id"]: p for p in run["payouts"] if p["affiliate_id"] in ours}
    carried = {c["affiliate_id"]: c for c in run["carried"] if c["affiliate_id"] in ours}
    assert paid, printed
    rate = Decimal(demo_payouts.USD_EUR)
    for affiliate, p in paid.items():
        assert p["currency"] == "EUR"
        assert p["fx_rate"] == {"USD/EUR": demo_payouts.USD_EUR}
        usd = Decimal(p["source_amounts"]["USD"])
        want = (usd * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert Decimal(p["amount"]) == want
        assert f"paid     {affiliate:22} {p['amount']:>8} EUR" in printed
    for affiliate, c in carried.items():
        assert f"carried  {affiliate:22} {c['why']}" in printed
    hub = f"coupon-hub-{suffix[1].lower()}"
    assert hub not in paid
    if hub in carried:
        assert carried[hub]["why"] == "no_payout_settings"

    check_files(printed, paid)


def check_files(printed: str, paid: dict[str, dict[str, Any]]) -> None:
    """The run's pain.001 file pays the EUR payees' IBANs; the invoice of the first payout
    names its payee and the conversion, and its first page renders to a drawn image."""
    files = dict(re.findall(r"^(pain\.001|self-billing invoice).*: (\S+)$", printed, re.M))
    sepa = Path(files["pain.001"]).read_text()
    assert "pain.001.001.03" in sepa
    for affiliate in paid:
        assert demo_payouts.PAYEES[affiliate.rsplit("-", 1)[0]]["iban"] in sepa
    invoice = Path(files["self-billing invoice"])
    text = PdfReader(invoice).pages[0].extract_text()
    first = min(paid.values(), key=lambda p: p["id"])
    assert first["affiliate_id"] in text
    assert "USD/EUR" in text

    # its first page as an image, what the demo's reader looks at: drawn, not blank
    image = pypdfium2.PdfDocument(invoice)[0].render(scale=1.5).to_pil().convert("L")
    dark = sum(image.histogram()[:128])
    assert 0.002 < dark / (image.width * image.height) < 0.5
    ARTIFACTS.mkdir(exist_ok=True)
    image.save(ARTIFACTS / "demo-invoice-page-1.png")
