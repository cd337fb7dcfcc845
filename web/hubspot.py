"""POST /webhooks/hubspot: signed (v3) CRM change notifications, kept for CRM sync."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from crm_sync.webhooks import store_hubspot_events
from loyalty.provider_events import BatchOutcome
from web.common import BadBody, loyalty_app, parse_event_list, public_url, read_body, refused
from web.signatures import hubspot_signature_ok

__all__ = ["hubspot_events"]

log = logging.getLogger(__name__)

#: HubSpot sends at most 100 events per request.
MAX_BODY_BYTES = 4 * 1024 * 1024


async def hubspot_events(request: Request) -> Response:
    app = loyalty_app(request)
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return refused("hubspot", "too_large", 413)
    signed = hubspot_signature_ok(
        app.settings.hubspot_client_secret,
        method=request.method,
        url=public_url(app.settings, request),
        body=body,
        signature=request.headers.get("X-HubSpot-Signature-v3"),
        timestamp=request.headers.get("X-HubSpot-Request-Timestamp"),
        now=app.clock.now(),
    )
    if not signed:
        return refused("hubspot", "signature", 403)
    try:
        events = parse_event_list(body)
    except BadBody:
        return refused("hubspot", "malformed", 400)

    def store() -> BatchOutcome:
        with app.database.transaction() as session:
            return store_hubspot_events(session, events, now=app.clock.now())

    outcome = await run_in_threadpool(store)
    log.info(
        "hubspot.events",
        extra={
            "received": len(events),
            "stored": outcome.ignored,
            "duplicates": outcome.duplicates,
        },
    )
    return Response(status_code=204)
