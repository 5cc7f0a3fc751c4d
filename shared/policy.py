"""Deployment-wide policies of the business rules (configuration reads them by name)."""

from __future__ import annotations

from enum import StrEnum


class ExitPolicy(StrEnum):
    """Which attributed orders of a store that has exited are chargeable."""

    #: Only orders placed while the store is in the program (the default).
    PLACED_IN_PROGRAM = "placed_in_program"
    #: Also orders placed after an exit, when their winning click was made while in the program.
    CLICK_IN_PROGRAM = "click_in_program"
