"""The Python client of Alliance: typed models of the three services' APIs (generated from
their OpenAPI documents), async clients per principal, storefront signing and webhook
verification. See docs/python-client.md."""

from alliance_client.clients import (
    AdminClient,
    AffiliateClient,
    FinanceClient,
    StoreClient,
    StorefrontClient,
)
from alliance_client.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from alliance_client.signing import InvalidSignature
from alliance_client.webhooks import parse_event

__all__ = [
    "AdminClient",
    "AffiliateClient",
    "ApiError",
    "Conflict",
    "FinanceClient",
    "Forbidden",
    "InvalidRequest",
    "InvalidSignature",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "StoreClient",
    "StorefrontClient",
    "Unauthorized",
    "Unavailable",
    "parse_event",
]
