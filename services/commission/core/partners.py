"""Partner approval rules, pure: how an application and a store's decisions move an
affiliate's status with a store, and which of them are program operations (a ban changes
what an order pays; the other statuses only change what the tracker lets through).

No I/O, no clock reads (times are parameters), no framework imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from services.commission.core.errors import InvalidTransition, PartnerBanned, ReasonRequired
from services.commission.core.program import OpKind
from shared.partners import Enrollment, PartnerStatus


class PartnerAction(StrEnum):
    """What changes a partner's status: the affiliate applies, the store decides."""

    APPLY = "apply"
    APPROVE = "approve"
    REJECT = "reject"
    BAN = "ban"


class PartnerReason(StrEnum):
    """Why a store decided (the affiliate reads it)."""

    MEETS_CRITERIA = "meets_criteria"
    NOT_A_FIT = "not_a_fit"
    LOW_QUALITY_TRAFFIC = "low_quality_traffic"
    FRAUD = "fraud"
    BRAND_VIOLATION = "brand_violation"
    TERMS_VIOLATION = "terms_violation"
    INACTIVE = "inactive"
    OTHER = "other"


#: an application under ``open`` enrollment is approved at once, with this reason
OPEN_ENROLLMENT: Final = "open_enrollment"


#: from which statuses (None: no partner yet) each action may move, and to what
_MOVES: Final[dict[PartnerAction, tuple[frozenset[PartnerStatus | None], PartnerStatus]]] = {
    PartnerAction.APPLY: (
        frozenset({None, PartnerStatus.REJECTED, PartnerStatus.PENDING}),
        PartnerStatus.PENDING,
    ),
    PartnerAction.APPROVE: (
        frozenset({None, PartnerStatus.PENDING, PartnerStatus.REJECTED, PartnerStatus.BANNED}),
        PartnerStatus.APPROVED,
    ),
    PartnerAction.REJECT: (
        frozenset({PartnerStatus.PENDING, PartnerStatus.APPROVED}),
        PartnerStatus.REJECTED,
    ),
    PartnerAction.BAN: (frozenset({None, *PartnerStatus}), PartnerStatus.BANNED),
}


@dataclass(frozen=True, slots=True)
class Transition:
    """The outcome of an action: the status after it, whether anything changed (an action
    that leaves the status as it is records nothing: every call is idempotent), and the
    program operation it makes, if any (:attr:`OpKind.BAN` / :attr:`OpKind.UNBAN`)."""

    before: PartnerStatus | None
    after: PartnerStatus
    op: OpKind | None

    @property
    def changed(self) -> bool:
        return self.before is not self.after


def decide(
    current: PartnerStatus | None,
    action: PartnerAction,
    enrollment: Enrollment,
    reason: PartnerReason | None = None,
) -> Transition:
    """The status after ``action`` on a partner whose status is ``current`` (None: none yet),
    or the refusal. Rules:

    - ``apply`` (the affiliate): under ``approval`` enrollment a new or rejected affiliate
      becomes ``pending`` (a pending or approved one stays); under ``open`` any affiliate
      becomes ``approved`` at once; a banned affiliate cannot apply
      (:class:`PartnerBanned`).
    - ``approve``: any status (none, pending, rejected; banned: reinstated) → ``approved``.
    - ``reject`` (needs a reason): pending or approved → ``rejected``; a rejected one stays;
      none or banned: :class:`InvalidTransition`.
    - ``ban`` (needs a reason): any status, none included → ``banned``.

    The same action again changes nothing. Entering ``banned`` is a :attr:`OpKind.BAN`
    program operation, leaving it an :attr:`OpKind.UNBAN`: an order of the affiliate placed
    while banned pays nothing (:meth:`ProgramState.pays_affiliate`).
    """
    if action in (PartnerAction.REJECT, PartnerAction.BAN) and reason is None:
        raise ReasonRequired(action=action.value)
    if action is PartnerAction.APPLY:
        if current is PartnerStatus.BANNED:
            raise PartnerBanned()
        if current is PartnerStatus.APPROVED:
            return Transition(current, current, None)
        if enrollment is Enrollment.OPEN:
            return Transition(current, PartnerStatus.APPROVED, None)
    allowed, after = _MOVES[action]
    if current is after:
        return Transition(current, after, None)
    if current not in allowed:
        raise InvalidTransition(
            action=action.value, status=current.value if current is not None else None
        )
    op = None
    if after is PartnerStatus.BANNED:
        op = OpKind.BAN
    elif current is PartnerStatus.BANNED:
        op = OpKind.UNBAN
    return Transition(current, after, op)
