"""What finance hands a bank and an accountant, built from a run's payouts as recorded (their
``detail``: amounts, conversions and the payee's bank details when paid): an ISO 20022
``pain.001.001.03`` SEPA credit-transfer file (``sepaxml``, which validates it against the
standard's XSD before returning it), a CSV of every payout for other rails, and a
self-billing invoice per payout as a PDF (ReportLab). No I/O: bytes in, bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from sepaxml import SepaTransfer
from text_unidecode import unidecode

from shared.csvsafe import csv_text
from shared.money import to_minor

#: the ISO 20022 message a payment file is
PAIN_001: Final = "pain.001.001.03"
#: the columns of a run's CSV payment file
CSV_COLUMNS: Final = (
    "payout_id",
    "run_id",
    "affiliate_id",
    "account_holder",
    "iban",
    "bic",
    "currency",
    "amount",
    "source_amounts",
    "fx_rate",
    "reference",
)


@dataclass(frozen=True, slots=True)
class Payer:
    """The platform as the debtor of its payment files and the issuer of invoices."""

    name: str
    iban: str
    bic: str
    address: str
    tax_id: str


def reference(payout_id: int, run_id: int | None) -> str:
    """The remittance reference of a payout (at most 35 characters: SEPA's end-to-end id)."""
    return f"ALLIANCE-{run_id or 0}-{payout_id}"


def pain_001(payer: Payer, payouts: Sequence[Any], execution: date) -> bytes:
    """The SEPA credit transfers of the EUR ``payouts`` (rows of ``commission.payouts`` with
    their ``detail``), one batch, validated against the ``pain.001.001.03`` XSD by sepaxml
    (it raises on an invalid file, never returns one)."""
    transfer = SepaTransfer(
        {
            "name": payer.name,
            "IBAN": payer.iban,
            "BIC": payer.bic,
            "batch": True,
            "currency": "EUR",
        },
        schema=PAIN_001,
    )
    for p in payouts:
        payee = p.detail["payee"]
        transfer.add_payment(
            {
                "name": payee["account_holder"],
                "IBAN": payee["iban"],
                "BIC": payee["bic"],
                "amount": to_minor(Decimal(p.detail["amount"]), "EUR"),
                "execution_date": execution,
                "description": f"Alliance payout {p.id} (run {p.run_id}), self-billed",
                "endtoend_id": reference(p.id, p.run_id),
            }
        )
    out: bytes = transfer.export(validate=True)
    return out


def payouts_csv(payouts: Sequence[Any]) -> str:
    """Every payout of a run, one row each (cells neutralised against formula injection)."""
    rows = []
    for p in payouts:
        d, payee = p.detail, p.detail["payee"]
        rows.append(
            {
                "payout_id": p.id,
                "run_id": p.run_id,
                "affiliate_id": p.affiliate_id,
                "account_holder": payee["account_holder"],
                "iban": payee["iban"],
                "bic": payee["bic"],
                "currency": d["currency"],
                "amount": d["amount"],
                "source_amounts": " ".join(f"{c} {v}" for c, v in d["source_amounts"].items()),
                "fx_rate": " ".join(f"{k}={v}" for k, v in (d["fx_rate"] or {}).items()),
                "reference": reference(p.id, p.run_id),
            }
        )
    return csv_text(CSV_COLUMNS, rows)


def printable(text: str) -> str:
    """``text`` as the PDF's standard fonts can show it: Latin-1 kept, anything else
    transliterated (``Łukasz`` → ``Lukasz``), never a missing-glyph box."""
    return "".join(c if ord(c) < 256 else unidecode(c) for c in text)


@dataclass(frozen=True, slots=True)
class StoreLine:
    """An invoice's line: what the affiliate earned with one store in one currency."""

    store_id: str
    currency: str
    orders: int
    commission: Decimal
    refunds: int
    reversed: Decimal


def invoice_pdf(
    payer: Payer,
    payout: Any,
    period_start: datetime | None,
    lines: Sequence[StoreLine],
    issued: datetime,
) -> bytes:
    """A self-billing invoice of one payout: the platform (payer) bills itself on behalf of
    the affiliate (payee) for the commission the payout settles. Text only, one A4 page per
    60 lines."""
    d = payout.detail
    payee = d["payee"]
    text: list[str] = [
        "SELF-BILLING INVOICE",
        "",
        f"Invoice number: ALLIANCE-SB-{payout.id}",
        f"Issued: {issued.date().isoformat()}",
        "Issued by the payer on behalf of the payee (self-billing agreement).",
        "",
        f"Payer: {payer.name}",
        f"  {payer.address}",
        f"  Tax id: {payer.tax_id}",
        "",
        f"Payee: {payee['account_holder']} (affiliate {payout.affiliate_id})",
        f"  {payee['address']}",
        f"  Tax id: {payee.get('tax_id') or 'not given'}",
        f"  Paid to IBAN {payee['iban']}, BIC {payee['bic']}",
        "",
        "Period: "
        + (f"after {period_start.isoformat()} " if period_start else "from the first earning ")
        + f"up to {payout.up_to.isoformat()}",
        f"Payout {payout.id} of run {payout.run_id}",
        "",
        "Earnings posted in the period, by store:",
    ]
    if not lines:
        text.append("  (no new earnings in the period: the payout settles an earlier balance)")
    for line in lines:
        text.append(
            f"  {line.store_id}: {line.orders} orders, commission {line.commission} {line.currency}"
        )
        if line.refunds:
            text.append(
                f"    adjustments: {line.refunds} refunds reversed {line.reversed} {line.currency}"
            )
    text += ["", "Bonuses: none", "", "Amounts settled:"]
    for currency, amount in d["source_amounts"].items():
        text.append(f"  {amount} {currency}")
    if d["conversions"]:
        text.append("Currency conversion:")
        for x in d["conversions"]:
            text.append(
                f"  {x['from']} {x['pair'][:3]} at {x['pair']} {x['rate']} = {x['to']} "
                f"{x['pair'][4:]} (rates of {d['rates_day']})"
            )
        text.append(f"  Rounding: {d['rounding']}")
    text += ["", f"Total paid: {d['amount']} {d['currency']}"]
    buffer = io.BytesIO()
    pdf = Canvas(buffer, pagesize=A4, invariant=True)
    pdf.setTitle(f"Self-billing invoice ALLIANCE-SB-{payout.id}")
    for start in range(0, len(text), 60):
        y = A4[1] - 20 * mm
        for i, row in enumerate(text[start : start + 60]):
            pdf.setFont("Helvetica-Bold" if start == 0 and i == 0 else "Helvetica", 10)
            pdf.drawString(20 * mm, y, printable(row))
            y -= 4.4 * mm
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()
