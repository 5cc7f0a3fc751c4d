"""How the demo prints a payout run: each of its affiliates paid, or carried with why (held back
by the holding period, below its minimum, without bank details); the others counted."""

from __future__ import annotations

import pytest

from deploy.demo.payouts import DemoPayouts, print_run


def carried(affiliate: str, why: str, **detail: object) -> dict[str, object]:
    return {
        "affiliate_id": affiliate,
        "why": why,
        "currency": None,
        "balance": None,
        "minimum": None,
        "payable": {},
        "held": {},
        "missing_rates": [],
    } | detail


def test_affiliates_inside_the_holding_period_are_printed_carried_with_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = {
        "id": 4,
        "up_to": "2026-12-05T12:00:00Z",
        "payouts": [
            {
                "id": 9,
                "affiliate_id": "anna-x",
                "currency": "EUR",
                "amount": "14.28",
                "source_amounts": {"USD": "15.48"},
                "fx_rate": {"USD/EUR": "0.9222"},
            },
            {"id": 10, "affiliate_id": "old-y", "currency": "USD", "amount": "20.00"},
        ],
        "carried": [
            carried("blog-x", "nothing_payable", held={"holding_period": {"USD": "3.40"}}),
            carried("low-x", "below_minimum", currency="EUR", balance="3.14", minimum="10.00"),
            carried("hub-x", "no_payout_settings", payable={"USD": "4.79"}),
            carried("old-z", "no_payout_settings"),
        ],
    }
    print_run(DemoPayouts(run, {"anna-x", "blog-x", "low-x", "hub-x"}), holding_days=14)
    assert capsys.readouterr().out.splitlines()[1:] == [
        "Payout run 4 up to 2026-12-05T12:00:00Z (payable: orders completed at least 14 days "
        "before, ALLIANCE_PAYOUT_HOLDING_DAYS):",
        "  paid     anna-x                    14.28 EUR  (payout 9: from 15.48 USD at USD/EUR "
        "0.9222)",
        "  carried  blog-x                 nothing_payable: 3.40 USD held (holding_period)",
        "  carried  low-x                  below_minimum: 3.14 EUR payable, minimum 10.00",
        "  carried  hub-x                  no_payout_settings: 4.79 USD payable",
        "  and the affiliates of the quarter and of earlier runs: 1 carried no_payout_settings, "
        "1 paid",
    ]
