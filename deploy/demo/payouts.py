"""`alliance demo`'s last step: the live run's affiliates give their bank details, finance
records the day's exchange rate and makes a payout run, and the run's SEPA payment file
(pain.001) and one self-billing invoice (PDF) are written to the demo's output folder.

Everything goes over HTTP, as finance and the affiliates would do it. What is payable is the
services' own rule (``ALLIANCE_PAYOUT_HOLDING_DAYS``): an affiliate whose orders are still
inside the holding period, below its minimum or without bank details is carried forward, and
the demo prints why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

#: the live run's affiliates' payout settings, as each puts them (valid test IBANs). The orders
#: are in USD: these payees, paid in EUR, are converted. coupon-hub has not given its bank
#: details, and is carried forward.
PAYEES: dict[str, dict[str, str]] = {
    "blog-techie": {
        "currency": "EUR",
        "minimum": "10.00",
        "method": "bank_transfer",
        "account_holder": "Techie Blog GmbH",
        "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX",
        "address": "Torstrasse 1, 10119 Berlin, Germany",
        "tax_id": "DE136695976",
    },
    "insta-anna": {
        "currency": "EUR",
        "minimum": "10.00",
        "method": "bank_transfer",
        "account_holder": "Anna Łukasiewicz",
        "iban": "FR1420041010050500013M02606",
        "bic": "PSSTFRPPXXX",
        "address": "2 rue de Rivoli, 75001 Paris, France",
        "tax_id": "FR40303265045",
    },
}
#: what one USD buys in EUR on the run's day (finance records it; never a default)
USD_EUR = "0.9222"


@dataclass
class DemoPayouts:
    """What the payout step made: the run, and the files written."""

    run: dict[str, Any]
    ours: set[str]  # this demo run's affiliate ids
    files: dict[str, Path] = field(default_factory=dict)  # "pain.001" / "invoice" → path


async def set_payout_settings(
    commission: httpx.AsyncClient, run: str, affiliate_keys: dict[str, str]
) -> None:
    """Each payee's bank details, with its own key (the IBAN and BIC are checked)."""
    for name, payee in PAYEES.items():
        resp = await commission.put(
            "/v1/affiliate/payout-settings",
            json=payee,
            headers={"Authorization": f"Bearer {affiliate_keys[name]}"},
        )
        resp.raise_for_status()
        print(
            f"{name}-{run}: paid in {payee['currency']} (minimum {payee['minimum']}) to "
            f"{payee['iban']} {payee['bic']}"
        )


async def payout_run(
    commission: httpx.AsyncClient,
    finance: dict[str, str],
    run: str,
    affiliate_keys: dict[str, str],
    out_dir: Path,
    holding_days: int = 0,
    up_to: datetime | None = None,
) -> DemoPayouts:
    """Bank details, the day's rate, a run up to now (``up_to``), its pain.001 file and the
    invoice of one of this demo's payouts written into ``out_dir``; printed as it goes."""
    print("\nLast, finance pays out; first the live run's affiliates give their bank details:")
    await set_payout_settings(commission, run, affiliate_keys)
    at = up_to or datetime.now(UTC)
    day = at.date().isoformat()
    rate = await commission.put(
        f"/v1/finance/fx-rates/{day}", json={"USD/EUR": USD_EUR}, headers=finance
    )
    rate.raise_for_status()
    print(f"finance: USD/EUR {USD_EUR} recorded for {day}")
    made = await commission.post(
        "/v1/finance/payout-runs",
        json={"up_to": at.isoformat()},
        headers={**finance, "Idempotency-Key": f"demo-payout-run-{run}"},
    )
    made.raise_for_status()
    result = DemoPayouts(made.json(), {f"{name}-{run}" for name in affiliate_keys})
    print_run(result, holding_days)
    await write_files(commission, finance, result, out_dir / run)
    return result


def _why(c: dict[str, Any]) -> str:
    why = str(c["why"])
    if why == "below_minimum":
        return f"{why}: {c['balance']} {c['currency']} payable, minimum {c['minimum']}"
    if why == "fx_rate_missing":
        return f"{why}: {', '.join(c['missing_rates'])}"
    held = [
        f"{amount} {currency} held ({reason})"
        for reason, per in c["held"].items()
        for currency, amount in per.items()
    ]
    payable = [f"{amount} {currency} payable" for currency, amount in c["payable"].items()]
    return f"{why}: {', '.join(payable + held) or 'nothing earned'}"


def print_run(result: DemoPayouts, holding_days: int = 0) -> None:
    run = result.run
    print(
        f"\nPayout run {run['id']} up to {run['up_to']} (payable: orders completed at least "
        f"{holding_days} days before, ALLIANCE_PAYOUT_HOLDING_DAYS):"
    )
    others: Counter[str] = Counter()
    for p in run["payouts"]:
        if p["affiliate_id"] not in result.ours:
            others["paid"] += 1
            continue
        sources = ", ".join(f"{a} {c}" for c, a in p["source_amounts"].items())
        via = "".join(f" at {pair} {r}" for pair, r in (p["fx_rate"] or {}).items())
        print(
            f"  paid     {p['affiliate_id']:22} {p['amount']:>8} {p['currency']}"
            f"  (payout {p['id']}: from {sources}{via})"
        )
    for c in run["carried"]:
        if c["affiliate_id"] not in result.ours:
            others[f"carried {c['why']}"] += 1
            continue
        print(f"  carried  {c['affiliate_id']:22} {_why(c)}")
    if others:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(others.items()))
        print(f"  and the affiliates of the quarter and of earlier runs: {counts}")


def _save(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


async def write_files(
    commission: httpx.AsyncClient, finance: dict[str, str], result: DemoPayouts, folder: Path
) -> None:
    """The run's pain.001 file (its EUR payouts) and the invoice of this demo's first EUR
    payout (else its first payout), when there is one."""
    run_id = result.run["id"]
    sepa = await commission.get(
        f"/v1/finance/payout-runs/{run_id}/payment-file",
        params={"format": "pain.001"},
        headers=finance,
    )
    if sepa.status_code == 409:
        print(f"pain.001: none ({sepa.json()['error']['code']}: the run paid nothing in EUR)")
    else:
        sepa.raise_for_status()
        path = _save(folder, f"pain.001-run-{run_id}.xml", sepa.content)
        result.files["pain.001"] = path
        print(f"pain.001 (SEPA credit transfers of the run's EUR payouts): {path}")
    ours = [p for p in result.run["payouts"] if p["affiliate_id"] in result.ours]
    ours.sort(key=lambda p: (p["currency"] != "EUR", p["id"]))
    if not ours:
        print("invoice: none (no payout for this demo's affiliates in this run)")
        return
    payout = ours[0]
    pdf = await commission.get(f"/v1/payouts/{payout['id']}/invoice.pdf", headers=finance)
    pdf.raise_for_status()
    path = _save(folder, f"invoice-payout-{payout['id']}.pdf", pdf.content)
    result.files["invoice"] = path
    print(f"self-billing invoice of payout {payout['id']} ({payout['affiliate_id']}): {path}")
