"""The floor: the bare FastAPI redirect (:mod:`bench.tracker.bare`) plus the one piece of work
no tracker can skip, a click written to Kafka (``acks=all``, idempotent, keyed by a new
visitor) before the answer, batched as the tracker batches it
(:class:`~services.tracker.clickproducer.ClickBatcher`). No signature, cookie, quality check
or rate limit: what the tracker's redirect would cost if all of those were free."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from services.tracker.clickproducer import ClickBatcher
from shared.config import get_settings
from shared.events import Click, Topic, encode
from shared.ids import new_id
from shared.kafka import make_producer

settings = get_settings()
TOPIC = settings.topic(Topic.CLICKS)
#: a click of the size the tracker writes
now = datetime.now(UTC)
PAYLOAD = encode(
    Click(
        event_id=new_id(),
        occurred_at=now,
        received_at=now,
        affiliate_id="aff-bench",
        store_id="s-bench",
        product_id="p1",
        link_code="k1.YWZmLWJlbmNoH3MtYmVuY2gfcDEf.CxoO7I6eYvP2jpUZ",
        visitor_id=new_id(),
        ip="127.0.0.1",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0",
    )
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    producer = make_producer(settings.kafka, linger_ms=1, client_id="alliance-bench-floor")
    await producer.start()
    app.state.clicks = ClickBatcher(producer, TOPIC, settings.click_ack_timeout_ms / 1000)
    try:
        yield
    finally:
        await producer.stop()


app = FastAPI(lifespan=lifespan)


@app.get("/r/{code}")
async def follow(code: str) -> RedirectResponse:
    if not await app.state.clicks.send(new_id().encode(), PAYLOAD):
        raise RuntimeError("click not acknowledged")  # counted as a non-302 answer
    response = RedirectResponse(f"https://shop.example/item/p1?code={code}", status_code=302)
    response.set_cookie("alliance_vid", "v", max_age=31_536_000, httponly=True, samesite="lax")
    return response
