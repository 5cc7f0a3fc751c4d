"""Coupon codes, pure: their shape, the one form they are matched in, and the programs'
coupon policies (docs/coupons.md). Shared by the events, the attribution core and the
commission core, so that the three agree on what a code is."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

#: the longest code
COUPON_CODE_MAX: Final = 64
#: a code as a buyer types it: ASCII letters, digits, ``_`` and ``-``
COUPON_CODE_PATTERN: Final = r"^[A-Za-z0-9_\-]+$"
_CODE: Final = re.compile(rf"[A-Za-z0-9_\-]{{1,{COUPON_CODE_MAX}}}")


def is_coupon_code(code: str) -> bool:
    """True when ``code`` has the shape of a coupon code (1 to 64 of ``[A-Za-z0-9_-]``)."""
    return _CODE.fullmatch(code) is not None


def coupon_key(code: str) -> str:
    """The one form a code is stored, published and matched in: upper case (codes are ASCII),
    so that ``anna10`` and ``ANNA10`` are the same code of a store."""
    return code.upper()


class CouponPolicy(StrEnum):
    """How a program lets coupon codes attribute orders (the policy in force when the order
    was placed decides)."""

    OFF = "off"  # clicks only: codes are ignored (the default, as the program always worked)
    COUPON_WINS = "coupon_wins"  # a valid code attributes the order whatever the clicks
    CLICK_WINS = "click_wins"  # a valid code counts only when no eligible click exists
