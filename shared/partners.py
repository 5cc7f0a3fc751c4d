"""Partner approval, the part every service reads: a store's enrollment mode, an affiliate's
status with a store, and what the tracker may do with an affiliate's links and clicks.

Pure: no I/O, no clock. The decisions themselves (who may apply, approve, reject or ban, and
what each changes) are the commission service's (``services/commission/core/partners.py``);
the tracker learns their outcome from the ``directory`` topic (``partner:<store>:<affiliate>``
entries) and the store's enrollment from its store entry.
"""

from __future__ import annotations

from enum import StrEnum


class Enrollment(StrEnum):
    """Who may promote a store: everyone but banned affiliates (``open``, the default), or
    only the affiliates the store approved (``approval``)."""

    OPEN = "open"
    APPROVAL = "approval"


class PartnerStatus(StrEnum):
    """An affiliate's standing with one store (none at all: it never applied nor was decided)."""

    PENDING = "pending"  # applied, waiting for the store
    APPROVED = "approved"
    REJECTED = "rejected"
    BANNED = "banned"


class ClickSuspicion(StrEnum):
    """Why a click of an affiliate the program does not accept is marked suspicious (such a
    click never attributes an order)."""

    BANNED = "banned"
    NOT_APPROVED = "not_approved"


def may_promote(enrollment: Enrollment, status: PartnerStatus | None) -> bool:
    """Whether the affiliate (``status`` with the store; None: none) may get links and have
    its clicks count: never when banned; under ``open`` every other affiliate; under
    ``approval`` only an approved one."""
    if status is PartnerStatus.BANNED:
        return False
    return enrollment is Enrollment.OPEN or status is PartnerStatus.APPROVED


def click_suspicion(enrollment: Enrollment, status: PartnerStatus | None) -> ClickSuspicion | None:
    """Why a click of the affiliate is suspicious by its standing alone, or None when it may
    count: ``banned`` for a banned affiliate (whatever the mode), ``not_approved`` for any
    other affiliate not approved by a store under ``approval``."""
    if status is PartnerStatus.BANNED:
        return ClickSuspicion.BANNED
    if not may_promote(enrollment, status):
        return ClickSuspicion.NOT_APPROVED
    return None
