"""The message list (by state, channel, journey, period) and one message with its story."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from loyalty.app import App
from loyalty.models import Member, Message, ProviderEvent
from loyalty.states import MessageState
from web.common import loyalty_app
from web.console.auth import requires
from web.console.rendering import error_page, render

__all__ = ["message_page", "messages_page"]

#: Periods the list may be filtered to, by their label.
PERIODS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PAGE_ROWS = 100
#: The most delivery events one message page lists (a message gets a handful).
DELIVERY_ROWS = 500


def message_rows(app: App, filters: dict[str, str]) -> list[tuple[Message, str]]:
    query = (
        select(Message, Member.external_id)
        .join(Member, Member.id == Message.member_id)
        .order_by(Message.id.desc())
        .limit(PAGE_ROWS)
    )
    if filters.get("state"):
        query = query.where(Message.state == filters["state"])
    if filters.get("channel"):
        query = query.where(Message.channel == filters["channel"])
    if filters.get("journey"):
        query = query.where(Message.journey_id == filters["journey"])
    period = PERIODS.get(filters.get("period", ""))
    if period is not None:
        query = query.where(Message.created_at >= app.clock.now() - period)
    with app.database.sessions() as session:
        return [(m, str(e)) for m, e in session.execute(query)]


@requires("viewer")
async def messages_page(request: Request) -> Response:
    filters = {
        key: request.query_params.get(key, "")[:128]
        for key in ("state", "channel", "journey", "period")
    }
    rows = await run_in_threadpool(message_rows, loyalty_app(request), filters)
    return render(
        request,
        "messages.html",
        {
            "rows": rows,
            "filters": filters,
            "states": [s.value for s in MessageState],
            "periods": list(PERIODS),
        },
    )


def message_view(app: App, message_id: int) -> dict[str, Any] | None:
    with app.database.sessions() as session:
        found = session.execute(
            select(Message, Member.external_id)
            .join(Member, Member.id == Message.member_id)
            .where(Message.id == message_id)
        ).first()
        if found is None:
            return None
        message, external_id = found
        # Webhooks note the message each delivery event is about (an index, migration 0016).
        deliveries = list(
            session.scalars(
                select(ProviderEvent)
                .where(ProviderEvent.message_id == message.id)
                .order_by(ProviderEvent.id)
                .limit(DELIVERY_ROWS)
            )
        )
    return {"message": message, "member": external_id, "deliveries": deliveries}


@requires("viewer")
async def message_page(request: Request) -> Response:
    view = await run_in_threadpool(
        message_view, loyalty_app(request), int(request.path_params["message_id"])
    )
    if view is None:
        return error_page(request, 404, "No such message", "It may have been erased.")
    view["when"] = datetime.isoformat
    return render(request, "message.html", view)
