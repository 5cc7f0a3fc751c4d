"""The payout documents without the stack: an invoice shows any payee's name legibly."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

from pypdf import PdfReader

from services.commission.finance.documents import Payer, StoreLine, invoice_pdf

PAYER = Payer("Alliance Ltd", "DE89370400440532013000", "COBADEFFXXX", "1 Street", "DE000000000")


def detail(holder: str) -> dict[str, object]:
    return {
        "currency": "EUR",
        "amount": "12.00",
        "source_amounts": {"EUR": "12.00"},
        "fx_rate": None,
        "conversions": [],
        "rates_day": "2026-03-01",
        "rounding": "half-up",
        "minimum": "10.00",
        "payee": {
            "method": "bank_transfer",
            "account_holder": holder,
            "iban": "DE89370400440532013000",
            "bic": "COBADEFFXXX",
            "tax_id": None,
            "address": "ul. Długa 1, Gdańsk",
        },
    }


def test_a_name_the_standard_fonts_cannot_show_is_transliterated_never_boxed() -> None:
    payout = SimpleNamespace(
        id=1,
        run_id=1,
        affiliate_id="aff",
        up_to=datetime(2026, 3, 1, tzinfo=UTC),
        detail=detail("Łukasz Zoë"),
    )
    line = StoreLine("s1", "EUR", 2, Decimal("12.00"), 0, Decimal(0))
    pdf = invoice_pdf(PAYER, payout, None, [line], datetime(2026, 3, 1, tzinfo=UTC))
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "Payee: Lukasz Zoë (affiliate aff)" in text
    assert "ul. Dluga 1, Gdansk" in text
    assert "Tax id: not given" in text
    assert "■" not in text
