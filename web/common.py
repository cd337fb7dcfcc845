"""What every handler needs: the App, the raw body within limits, the public URL."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from loyalty.app import App
from loyalty.settings import Settings

__all__ = [
    "BadBody",
    "SlowBody",
    "loyalty_app",
    "parse_event_list",
    "parse_json",
    "public_url",
    "read_body",
    "refused",
    "slow_body",
]

log = logging.getLogger("web")


class BadBody(ValueError):
    """The body is not what the provider sends; answered with 400."""


def loyalty_app(request: Request) -> App:
    return cast(App, request.app.state.loyalty)


class SlowBody(Exception):
    """The client did not send its body within BODY_DEADLINE_SECONDS; answered with 408."""


async def read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than `limit` bytes.

    The body is read chunk by chunk under a deadline, so a client that stalls
    (or trickles) never holds a connection and its buffer: SlowBody is raised.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(loyalty_app(request).settings.body_deadline_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        raise SlowBody from None
    return b"".join(chunks)


async def slow_body(request: Request, exc: Exception) -> Response:
    """Answer a stalled upload with 408 and close the connection."""
    deadline = loyalty_app(request).settings.body_deadline_seconds
    log.warning("web.slow_body", extra={"deadline_s": deadline})
    return PlainTextResponse("request timeout", status_code=408, headers={"Connection": "close"})


def public_url(settings: Settings, request: Request) -> str:
    """The URL the provider called: our configured public base, then path and query as sent."""
    url = settings.public_base_url.rstrip("/") + request.url.path
    query = request.url.query
    return f"{url}?{query}" if query else url


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity (they would not store)."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadBody("body is not JSON") from exc


def parse_event_list(body: bytes) -> list[dict[str, Any]]:
    """A JSON array of objects, as SendGrid and HubSpot post."""
    value = parse_json(body)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadBody("expected a JSON array of objects")
    return value


def refused(provider: str, reason: str, status: int) -> Response:
    """A refusal, logged by provider and reason only: never the body or the caller's data."""
    log.warning("webhook.refused", extra={"provider": provider, "reason": reason, "status": status})
    text = {400: "bad request", 403: "forbidden", 413: "too large"}.get(status, "refused")
    return PlainTextResponse(text, status_code=status)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
