"""POST /webhooks/sendgrid: the signed Event Webhook."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from channels.webhooks import BatchOutcome, apply_sendgrid_events
from web.common import BadBody, loyalty_app, parse_event_list, read_body, refused
from web.signatures import sendgrid_signature_ok

__all__ = ["sendgrid_events"]

log = logging.getLogger(__name__)

#: SendGrid batches events; a few megabytes is far above what it posts at once.
MAX_BODY_BYTES = 16 * 1024 * 1024

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


async def sendgrid_events(request: Request) -> Response:
    app = loyalty_app(request)
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return refused("sendgrid", "too_large", 413)
    signed = sendgrid_signature_ok(
        app.settings.sendgrid_webhook_public_key,
        body,
        request.headers.get(SIGNATURE_HEADER),
        request.headers.get(TIMESTAMP_HEADER),
        now=app.clock.now(),
    )
    if not signed:
        return refused("sendgrid", "signature", 403)
    try:
        events = parse_event_list(body)
    except BadBody:
        return refused("sendgrid", "malformed", 400)

    def apply() -> BatchOutcome:
        with app.database.transaction() as session:
            return apply_sendgrid_events(session, events, now=app.clock.now())

    outcome = await run_in_threadpool(apply)
    log.info(
        "sendgrid.events",
        extra={
            "received": len(events),
            "applied": outcome.applied,
            "duplicates": outcome.duplicates,
            "ignored": outcome.ignored,
        },
    )
    return PlainTextResponse("ok")
