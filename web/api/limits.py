"""Request bodies within a size and a deadline, before any route parses them.

The body is read once through `web.common.read_body` (chunk by chunk, under
BODY_DEADLINE_SECONDS), answered 413 past its limit or 408 when it stalls, and
otherwise handed on whole to the route.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.api.errors import Problem, error_response
from web.common import SlowBody, loyalty_app, read_body

__all__ = ["BATCH_BODY_BYTES", "BODY_BYTES", "BodyLimit"]

log = logging.getLogger("web")

#: Bytes of a POST /events body: a batch of 1,000 events of about 1 KiB each.
BATCH_BODY_BYTES = 1024 * 1024
#: Bytes of any other body (a member's profile).
BODY_BYTES = 64 * 1024


def limit_for(path: str) -> int:
    return BATCH_BODY_BYTES if path.rstrip("/").endswith("/events") else BODY_BYTES


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = limit_for(str(scope.get("path", "")))
        request = Request(scope, receive)
        try:
            body = await read_body(request, limit)
        except SlowBody:
            deadline = loyalty_app(request).settings.body_deadline_seconds
            log.warning("api.slow_body", extra={"deadline_s": deadline})
            problem = Problem(loc=["body"], msg="the body did not arrive in time", type="timeout")
            response = error_response(408, [problem], {"Connection": "close"})
            await response(scope, receive, send)
            return
        if body is None:
            problem = Problem(
                loc=["body"],
                msg=f"the body is larger than {limit // 1024} KiB; send smaller batches",
                type="too_large",
            )
            await error_response(413, [problem], {"Connection": "close"})(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
