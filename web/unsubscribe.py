"""GET and POST /u/{token}: the unsubscribe link in every marketing email (RFC 8058 one-click)."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from channels.webhooks import (
    UnsubscribeOutcome,
    unsubscribe,
    unsubscribe_erased,
    unsubscribe_target,
)
from web.common import loyalty_app, read_body
from web.pages import page

__all__ = ["unsubscribe_page"]

log = logging.getLogger(__name__)

#: One-click posts carry `List-Unsubscribe=One-Click` and nothing more.
MAX_BODY_BYTES = 16 * 1024


async def unsubscribe_page(request: Request) -> Response:
    """GET shows a confirmation button; POST (no cookies, no auth) unsubscribes.

    An erased member's link shows a neutral page on both and changes nothing.
    """
    app = loyalty_app(request)
    token = request.path_params["token"]
    program = app.settings.program_name
    if request.method != "POST":  # GET and HEAD (link scanners) never change anything

        def known() -> str:
            with app.database.sessions() as session:
                message = unsubscribe_target(session, token)
                if message is None:
                    return "unknown"
                return "erased" if unsubscribe_erased(session, message) else "subscribed"

        found = await run_in_threadpool(known)
        if found == "unknown":
            return _not_found(program)
        if found == "erased":
            return _nothing_to_unsubscribe(program)
        return page(
            f"Unsubscribe from {program}",
            f"You will no longer receive marketing email from {program}. "
            "Messages about your account and orders still reach you.",
            button="Unsubscribe",
        )

    # The body is not needed (RFC 8058 defines only List-Unsubscribe=One-Click); drain it.
    if await read_body(request, MAX_BODY_BYTES) is None:
        return page("Request too large", status=413)

    def apply() -> UnsubscribeOutcome | None:
        with app.database.transaction() as session:
            return unsubscribe(session, token, now=app.clock.now())

    outcome = await run_in_threadpool(apply)
    if outcome is None:
        return _not_found(program)
    log.info(
        "unsubscribe.link",
        extra={
            "member_id": outcome.member_id,
            "message_id": outcome.message_id,
            "changed": outcome.changed,
            "erased": outcome.erased,
        },
    )
    if outcome.erased:
        return _nothing_to_unsubscribe(program)
    return page(
        "You are unsubscribed",
        f"You will receive no more marketing email from {program}.",
    )


def _nothing_to_unsubscribe(program: str) -> Response:
    """For an erased member: names no one and offers nothing to press."""
    return page(
        "Nothing to unsubscribe",
        f"This address is not subscribed to anything from {program}.",
    )


def _not_found(program: str) -> Response:
    return page(
        "Link not found",
        f"This unsubscribe link is not valid. Reply to any email from {program} "
        "and we will take you off the list.",
        status=404,
    )
