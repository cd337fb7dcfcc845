"""POST /webhooks/woocommerce: signed order and customer webhooks from a WooCommerce shop.

Verified on the raw bytes, then kept, queued and answered as Shopify's are
(`web.shopify.accept_delivery`), kept once by `X-WC-Webhook-Delivery-ID`.

WooCommerce pings a new webhook with a form body `webhook_id=N`, no topic and no
signature: it gets 200 and nothing is stored, so a webhook can be saved as active.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from loyalty.provider_events import provider_event_id
from shops.webhooks import WOOCOMMERCE
from web.common import BadBody, loyalty_app, parse_json, read_body, refused
from web.shopify import accept_delivery
from web.signatures import woocommerce_signature_ok

__all__ = ["woocommerce_webhook"]

#: WooCommerce posts whole orders with their line items and refunds.
MAX_BODY_BYTES = 4 * 1024 * 1024

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
TOPIC_HEADER = "X-WC-Webhook-Topic"
DELIVERY_HEADER = "X-WC-Webhook-Delivery-ID"

_PING = re.compile(rb"webhook_id=\d{1,20}")


async def woocommerce_webhook(request: Request) -> Response:
    app = loyalty_app(request)
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return refused(WOOCOMMERCE, "too_large", 413)
    topic = request.headers.get(TOPIC_HEADER, "").strip()
    if not topic and _PING.fullmatch(body.strip()):
        return PlainTextResponse("ok")
    if not woocommerce_signature_ok(
        app.settings.woocommerce_webhook_secret, body, request.headers.get(SIGNATURE_HEADER)
    ):
        return refused(WOOCOMMERCE, "signature", 401)
    try:
        payload = parse_json(body)
    except BadBody:
        return refused(WOOCOMMERCE, "malformed", 400)
    if not isinstance(payload, dict):
        return refused(WOOCOMMERCE, "malformed", 400)
    delivery = provider_event_id(request.headers.get(DELIVERY_HEADER), payload)
    return await accept_delivery(request, WOOCOMMERCE, delivery, topic, payload)
