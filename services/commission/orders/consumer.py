"""The commission pipeline: attributions and order events in, ledger postings out."""

from __future__ import annotations

from services.commission.models import consumer_offsets
from services.commission.orders.service import Incoming
from shared.events import Attribution, Topic, order_event_adapter
from shared.kafka import Consumes

CONSUMER_NAME = "commission"


#: what the ledger's pipeline reads, and how
CONSUMER: Consumes[Incoming] = Consumes(
    name=CONSUMER_NAME,
    routes={
        Topic.ATTRIBUTIONS: Attribution.model_validate_json,
        Topic.ORDERS: order_event_adapter.validate_json,
    },
    offsets=consumer_offsets,
)
