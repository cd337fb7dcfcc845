"""The ASGI app: the API (/api/v1), provider webhooks, the unsubscribe and survey pages,
the console (/console), health and readiness checks, and the Prometheus metrics."""

from __future__ import annotations

import logging
import traceback

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty.app import App
from web.api import mount_api
from web.common import SlowBody, slow_body
from web.console import console_app
from web.deliveries import DeliveryKeeper
from web.health import readyz
from web.hubspot import hubspot_events
from web.metrics import metrics_endpoint, metrics_registry
from web.referrals import referral_link
from web.sendgrid import sendgrid_events
from web.shopify import queue_deliveries, shopify_webhook
from web.surveys import survey_page
from web.twilio import twilio_inbound, twilio_status
from web.unsubscribe import unsubscribe_page
from web.woocommerce import woocommerce_webhook

__all__ = ["create_app"]

log = logging.getLogger("web")


async def healthz(request: Request) -> Response:
    """Liveness: the process answers. It touches no database, so a slow one cannot flap it."""
    return JSONResponse({"status": "ok"})


class ScrubbedErrors:
    """Answer 500 and log where it failed, never the exception's text.

    Database errors quote the statement's parameters (email addresses, phone
    numbers, message bodies), and the server would log them with the traceback.
    The provider retries a 500, so nothing is lost.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            path = str(scope.get("path", ""))
            log.error(
                "web.failed",
                extra={
                    "path": path[:3] + "…" if path.startswith(("/u/", "/s/", "/r/")) else path,
                    "error": type(exc).__name__,
                    "at": f"{frame.filename}:{frame.lineno}",
                },
            )
            if started:
                return
            await PlainTextResponse("internal error", status_code=500)(scope, receive, send)


def create_app(app: App) -> Starlette:
    """The web app for one App (settings, database, clock)."""
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/webhooks/sendgrid", sendgrid_events, methods=["POST"]),
        Route("/webhooks/twilio/status", twilio_status, methods=["POST"]),
        Route("/webhooks/twilio/inbound", twilio_inbound, methods=["POST"]),
        Route("/webhooks/hubspot", hubspot_events, methods=["POST"]),
        Route("/webhooks/shopify", shopify_webhook, methods=["POST"]),
        Route("/webhooks/woocommerce", woocommerce_webhook, methods=["POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET", "POST"]),
        Route("/s/{token}", survey_page, methods=["GET", "POST"]),
        Route("/r/{code}", referral_link, methods=["GET", "HEAD"]),
        mount_api(app),
        Mount("/console", console_app(app)),
    ]
    web = Starlette(
        routes=routes,
        middleware=[Middleware(ScrubbedErrors)],
        exception_handlers={SlowBody: slow_body},
    )
    web.state.loyalty = app
    web.state.metrics = metrics_registry(app)
    web.state.deliveries = DeliveryKeeper(app, queue_deliveries)
    return web
