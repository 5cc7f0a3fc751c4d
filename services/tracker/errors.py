"""The tracker's business errors: one class per case, carrying its HTTP status and its
machine-readable code (the answer's body is :func:`shared.http.error_body`)."""

from __future__ import annotations

from typing import Any

from shared.http import AllianceError

#: what a 503 asks the client to wait before it retries (seconds)
RETRY_AFTER_S = 2


class TrackerError(AllianceError):
    """A business error of the tracker: ``status_code``, ``code`` and the default
    ``message`` are the class's; details are the instance's."""

    status_code = 500
    code = "error"
    message = "the tracker could not do this"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(self.status_code, self.code, message or type(self).message, **details)


class Unauthorized(TrackerError):
    """No valid affiliate key, or a store signature that does not verify (``reason``)."""

    status_code = 401
    code = "unauthorized"
    message = "missing or invalid credentials"

    def __init__(self, reason: str) -> None:
        super().__init__(reason=reason)


class ForeignLink(TrackerError):
    """A store posted a click on another store's link."""

    status_code = 403
    code = "foreign_link"
    message = "the link belongs to another store"


class StoreNotFound(TrackerError):
    status_code = 404
    code = "store_not_found"
    message = "no such store"


class NotApproved(TrackerError):
    """The affiliate may not promote the store: banned by it, or not approved by a store whose
    enrollment requires approval (details: ``store_id``, ``affiliate_id``, ``enrollment``,
    ``status``: pending, rejected, banned or null)."""

    status_code = 403
    code = "not_approved"
    message = "the store has not approved this affiliate"


class ProductNotFound(TrackerError):
    status_code = 404
    code = "product_not_found"
    message = "no such product"


class StoreNotInProgram(TrackerError):
    status_code = 409
    code = "store_not_in_program"
    message = "the store is not in the program"


class BodyTooLarge(TrackerError):
    status_code = 413
    code = "body_too_large"


class TooManyEvents(TrackerError):
    status_code = 413
    code = "too_many_events"


class InvalidJson(TrackerError):
    status_code = 422
    code = "invalid_json"
    message = "the body is not JSON"


class InvalidBody(TrackerError):
    status_code = 422
    code = "invalid_body"
    message = 'the body is {"events": [...]}'


class OccurredTooLongAgo(TrackerError):
    """An event time before ``now − event_max_backdate_days``."""

    status_code = 422
    code = "occurred_too_long_ago"


class OccurredInFuture(TrackerError):
    """An event time past ``now + 5 minutes`` (clocks drift, not that much)."""

    status_code = 422
    code = "occurred_in_future"


#: the error of each event-time problem (:func:`services.tracker.service.event_time_problem`)
EVENT_TIME_ERRORS: dict[str, type[TrackerError]] = {
    OccurredTooLongAgo.code: OccurredTooLongAgo,
    OccurredInFuture.code: OccurredInFuture,
}


class Unavailable(TrackerError):
    """``503`` with ``Retry-After``: what the request needs from Kafka did not happen in time
    (``reason``: ``kafka_unreachable``, ``not_acknowledged``, ``catching_up`` — the tracker has
    not yet read the topics it judges requests by —, or ``spool_full``). Nothing of the
    request was promised: a retry is safe and sends what was never acknowledged."""

    status_code = 503
    code = "unavailable"
    message = "the event log is unavailable; retry later"

    def __init__(self, reason: str) -> None:
        super().__init__(reason=reason, retry_after_s=RETRY_AFTER_S)
