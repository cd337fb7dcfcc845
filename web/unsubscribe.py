"""GET and POST /u/{token}: the unsubscribe link in every marketing email (RFC 8058 one-click)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from channels.system_texts import SystemTexts
from channels.webhooks import (
    UnsubscribeOutcome,
    unsubscribe,
    unsubscribe_erased,
    unsubscribe_target,
)
from loyalty.app import App
from loyalty.members import next_expiring_on_local_day
from loyalty.models import Member
from web.common import loyalty_app, read_body
from web.pages import page, texts_for

__all__ = ["unsubscribe_page"]

log = logging.getLogger(__name__)

#: One-click posts carry `List-Unsubscribe=One-Click` and nothing more.
MAX_BODY_BYTES = 16 * 1024


@dataclass(frozen=True)
class _Target:
    """What the page shows about the member a link names (nothing for an erased one)."""

    state: str  # "unknown", "erased" or "subscribed"
    locale: str | None = None
    points: int = 0
    expiring: tuple[int, date] | None = None  # points, and the member's local day


async def unsubscribe_page(request: Request) -> Response:
    """GET shows a confirmation button; POST (no cookies, no auth) unsubscribes.

    Pages come in the member's language. An erased member's link shows a neutral page
    on both and changes nothing.
    """
    app = loyalty_app(request)
    token = request.path_params["token"]
    if request.method != "POST":  # GET and HEAD (link scanners) never change anything
        found = await run_in_threadpool(_target, app, token)
        texts = texts_for(app, found.locale, request)
        if found.state == "unknown":
            return _not_found(app, texts)
        if found.state == "erased":
            return _nothing_to_unsubscribe(app, texts)
        program = app.settings.program_name
        paragraphs = [texts("unsubscribe.intro", program=program), _points(texts, found, program)]
        return page(
            texts("unsubscribe.title", program=program),
            *paragraphs,
            button=texts("unsubscribe.button", program=program),
            lang=texts.locale,
        )

    # The body is not needed (RFC 8058 defines only List-Unsubscribe=One-Click); drain it.
    if await read_body(request, MAX_BODY_BYTES) is None:
        texts = texts_for(app, None, request)
        return page(texts("page.too_large"), status=413, lang=texts.locale)

    def apply() -> tuple[UnsubscribeOutcome | None, str | None]:
        with app.database.transaction() as session:
            outcome = unsubscribe(session, token, now=app.clock.now())
            if outcome is None or outcome.erased:
                return outcome, None
            member = session.get(Member, outcome.member_id)
            return outcome, member.locale if member is not None else None

    outcome, locale = await run_in_threadpool(apply)
    texts = texts_for(app, locale, request)
    if outcome is None:
        return _not_found(app, texts)
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
        return _nothing_to_unsubscribe(app, texts)
    program = app.settings.program_name
    return page(
        texts("unsubscribe.done_title", program=program),
        texts("unsubscribe.done", program=program),
        lang=texts.locale,
    )


def _target(app: App, token: str) -> _Target:
    with app.database.sessions() as session:
        message = unsubscribe_target(session, token)
        if message is None:
            return _Target("unknown")
        if unsubscribe_erased(session, message):
            return _Target("erased")
        member = session.get(Member, message.member_id)
        if member is None:
            return _Target("erased")
        zone = member.time_zone or app.settings.default_time_zone
        expiring = next_expiring_on_local_day(
            session, member, now=app.clock.now(), default_zone=zone
        )
        day = (expiring[0], expiring[1].astimezone(ZoneInfo(zone)).date()) if expiring else None
        return _Target("subscribed", member.locale, member.points_balance, day)


def _points(texts: SystemTexts, found: _Target, program: str) -> str:
    """Unsubscribing keeps the points: say how many, and when the next ones expire."""
    said = texts(
        "unsubscribe.points", count=found.points, points=texts.number(found.points), program=program
    )
    if found.expiring is None:
        return said
    points, day = found.expiring
    expiring = texts(
        "unsubscribe.expiring",
        count=points,
        points=texts.number(points),
        date=texts.date(day),
        program=program,
    )
    return f"{said} {expiring}"


def _nothing_to_unsubscribe(app: App, texts: SystemTexts) -> Response:
    """For an erased member: names no one and offers nothing to press."""
    program = app.settings.program_name
    return page(
        texts("unsubscribe.nothing_title", program=program),
        texts("unsubscribe.nothing", program=program),
        lang=texts.locale,
    )


def _not_found(app: App, texts: SystemTexts) -> Response:
    program = app.settings.program_name
    return page(
        texts("unsubscribe.not_found_title", program=program),
        texts("unsubscribe.not_found", program=program),
        status=404,
        lang=texts.locale,
    )
