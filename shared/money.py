"""Money: Decimal amounts with an explicit currency and one rounding rule.

Amounts travel as decimal strings, are held as ``Decimal`` and are stored as integer minor
units. The only rounding in Alliance is :func:`round_money`: half-up to the currency's minor
unit. Floats never appear.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Final

import iso4217

#: Every ISO 4217 currency that has a minor unit, with its digits, from the official table
#: (the maintained ``iso4217`` package). Funds and metals without one (XAU, XDR, XXX, …) are
#: not money a program pays out, so they are not currencies here.
_MINOR_UNITS: Final[dict[str, int]] = {
    c.code: c.exponent for c in iso4217.Currency if c.exponent is not None
}
#: the finest minor unit of any currency (4 digits: CLF, UYW)
MAX_MINOR_DIGITS: Final = max(_MINOR_UNITS.values())
ZERO: Final = Decimal(0)


def is_currency(code: str) -> bool:
    """True for an ISO 4217 code (upper case, as in the table) that has a minor unit."""
    return code in _MINOR_UNITS


def minor_digits(currency: str) -> int:
    """How many decimal digits the currency's minor unit has (ISO 4217's table)."""
    try:
        return _MINOR_UNITS[currency]
    except KeyError:
        raise ValueError(f"{currency!r} is not an ISO 4217 currency") from None


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


def fits_currency(amount: Decimal, currency: str | None) -> bool:
    """True when ``amount`` has no more decimals than the currency's minor unit (``None``: the
    finest of any currency). Exact for any finite decimal, however long: no rounding context."""
    digits = MAX_MINOR_DIGITS if currency is None else minor_digits(currency)
    _, coefficient, exponent = amount.as_tuple()
    if not isinstance(exponent, int):  # NaN or infinity
        return False
    below = -exponent - digits  # how many of the coefficient's digits are below the minor unit
    return below <= 0 or not any(coefficient[-below:])


def from_minor(units: int, currency: str) -> Decimal:
    return round_money(Decimal(units).scaleb(-minor_digits(currency)), currency)


def fmt(amount: Decimal, currency: str) -> str:
    """Canonical string form, e.g. ``"2.19"`` for USD."""
    return str(round_money(amount, currency))
