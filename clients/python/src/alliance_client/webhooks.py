"""Receiving Alliance's webhooks: verify, then parse."""

from __future__ import annotations

from collections.abc import Sequence

from alliance_client.models.commission import WebhookEventBody
from alliance_client.signing import DEFAULT_TOLERANCE_S, verify


def parse_event(
    secret: str | Sequence[str],
    signature: str,
    body: bytes,
    *,
    now: int | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> WebhookEventBody:
    """The event of a POST delivery whose raw ``body`` arrived with the ``Alliance-Signature``
    header ``signature``, once it verifies with the endpoint's ``secret`` (or either secret
    during a rotation); raises :class:`~alliance_client.signing.InvalidSignature` otherwise.
    Deduplicate by the event's ``id``: a delivery may arrive more than once."""
    verify(secret, signature, body, now=now, tolerance_s=tolerance_s)
    return WebhookEventBody.model_validate_json(body)
