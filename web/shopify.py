"""POST /webhooks/shopify, and how a shop delivery is kept, queued and answered.

The WooCommerce handler (`web.woocommerce`) shares everything below its own checks.

A delivery is verified on its raw bytes, then kept once by its delivery id
(`X-Shopify-Webhook-Id`, the same for every retry) with its body, in one short
transaction shared with the deliveries that arrive beside it (`web.deliveries`);
a retry answers 200 and stores nothing. The answer goes out as soon as that commits, well within
Shopify's five seconds, and a worker applies the delivery (member upserts,
events, privacy requests: `automations.shop_deliveries.apply_delivery`). It is
handed over as /api/v1 hands its events (`web.api.workers`): with `REDIS_URL`
set, queued on Redis after the commit; on the embedded default no broker is
built here (an in-memory queue would have no worker: see `web.surveys`), and the
scheduler's relay tick queues it once it is EVENT_RELAY_AFTER_SECONDS old. A
broker outage leaves it to the relay too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from automations.shop_deliveries import delivery_actions
from loyalty.app import App
from loyalty.provider_events import Delivery, provider_event_id
from shops.webhooks import SHOPIFY
from web.api.workers import EventQueue
from web.common import BadBody, loyalty_app, parse_json, read_body, refused
from web.deliveries import DeliveryKeeper
from web.signatures import shopify_signature_ok

__all__ = ["accept_delivery", "queue_deliveries", "shopify_webhook"]

log = logging.getLogger(__name__)

#: Shopify sends whole orders; a few megabytes is far above a large one.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: The worker actor that applies stored deliveries (one message per stored batch).
APPLY_ACTOR = "apply_shop_deliveries"

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
SHOP_HEADER = "X-Shopify-Shop-Domain"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"


async def shopify_webhook(request: Request) -> Response:
    app = loyalty_app(request)
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return refused(SHOPIFY, "too_large", 413)
    if not shopify_signature_ok(
        app.settings.shopify_webhook_secret, body, request.headers.get(HMAC_HEADER)
    ):
        return refused(SHOPIFY, "signature", 401)
    domain = app.settings.shopify_shop_domain
    if domain and request.headers.get(SHOP_HEADER, "").strip().lower() != domain.lower():
        return refused(SHOPIFY, "shop_domain", 401)
    try:
        payload = parse_json(body)
    except BadBody:
        return refused(SHOPIFY, "malformed", 400)
    if not isinstance(payload, dict):
        return refused(SHOPIFY, "malformed", 400)
    topic = request.headers.get(TOPIC_HEADER, "").strip()
    delivery = provider_event_id(request.headers.get(WEBHOOK_ID_HEADER), payload)
    return await accept_delivery(request, SHOPIFY, delivery, topic, payload)


async def accept_delivery(
    request: Request, shop: str, delivery_id: str, topic: str, payload: dict[str, Any]
) -> Response:
    """Keep a verified delivery once, queue it to the workers, answer 200."""
    keeper: DeliveryKeeper = request.app.state.deliveries
    app = keeper.app
    actions = delivery_actions(app.settings, shop, topic, payload)
    if actions.ignored is not None:
        log.info(
            "shop.webhook_ignored",
            extra={"shop": shop, "topic": topic[:64], "reason": actions.ignored, **actions.ids},
        )
        return PlainTextResponse("ok")
    kept = await keeper.keep(Delivery(shop, delivery_id, topic, payload))
    log.info(
        "shop.webhook",
        extra={
            "shop": shop,
            "topic": topic[:64],
            "delivery_id": delivery_id,
            "duplicate": kept.row_id is None,
            "queued": kept.queued,
            **actions.ids,
        },
    )
    return PlainTextResponse("ok")


#: One queue per Redis URL in this process (the broker is built on first use).
_queues: dict[str, EventQueue] = {}
_queues_lock = threading.Lock()


def queue_deliveries(app: App, row_ids: list[int]) -> list[int]:
    """Queue stored deliveries to the workers over Redis (as /api/v1 queues events).

    Returns those left for the scheduler's relay tick: all of them on the embedded
    default and while Redis is unreachable.
    """
    if not app.settings.redis_url:
        return list(row_ids)
    with _queues_lock:
        queue = _queues.setdefault(app.settings.redis_url, EventQueue(app.settings))
    return queue.send_together(row_ids, APPLY_ACTOR)
