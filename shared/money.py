"""Money: Decimal amounts with an explicit currency and one rounding rule.

Amounts travel as decimal strings, are held as ``Decimal`` and are stored as integer minor
units. The only rounding in Alliance is :func:`round_money`: half-up to the currency's minor
unit. Floats never appear.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

#: ISO 4217 currencies whose minor unit is not 2 digits; every other valid code has 2.
_MINOR_UNITS: Final[dict[str, int]] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}
_CURRENCY_RE: Final = re.compile(r"^[A-Z]{3}$")
ZERO: Final = Decimal(0)


def is_currency(code: str) -> bool:
    """True for a three-letter upper-case ISO 4217 style code."""
    return bool(_CURRENCY_RE.match(code))


def minor_digits(currency: str) -> int:
    """How many decimal digits the currency's minor unit has (2 unless listed)."""
    return _MINOR_UNITS.get(currency, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_digits(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """The one rounding rule: half-up to the currency's minor unit."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact integer minor units; raises ``ValueError`` if ``amount`` has finer precision."""
    scaled = amount.scaleb(minor_digits(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more precision than {currency} allows")
    return int(scaled)


def fits_currency(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` has no more decimals than the currency's minor unit."""
    return amount == round_money(amount, currency)


def from_minor(units: int, currency: str) -> Decimal:
    return round_money(Decimal(units).scaleb(-minor_digits(currency)), currency)


def fmt(amount: Decimal, currency: str) -> str:
    """Canonical string form, e.g. ``"2.19"`` for USD."""
    return str(round_money(amount, currency))
