"""Operations (operators): dead letters and replay, the scheduler, queues, CRM sync, providers."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import redis
from dramatiq import Broker
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from automations.runtime.broker import build_broker
from automations.runtime.dead_letters import list_dead_letters, replay
from automations.runtime.leader import LOCK_NAME
from crm_sync.status import crm_status
from loyalty.app import App
from loyalty.journey_pauses import record_action
from loyalty.models import Message
from loyalty.scheduler_ticks import last_ticks
from loyalty.states import MessageState
from web.common import loyalty_app
from web.console.auth import Signed, requires
from web.console.rendering import error_page, render

__all__ = ["operations_page", "replay_dead_letter"]

log = logging.getLogger("web.console")

#: The window of the provider error rates.
ERROR_WINDOW = timedelta(hours=24)


def _redis_facts(app: App) -> tuple[str, list[tuple[str, int]]]:
    """The scheduler leader (Redis lock holder) and the length of each Dramatiq queue."""
    if not app.settings.redis_url:
        return "in-process (no REDIS_URL): the `loyalty run` process", []
    client = redis.Redis.from_url(app.settings.redis_url, socket_timeout=2)
    try:
        holder = client.get(LOCK_NAME)
        queues = []
        for key in sorted(client.scan_iter(match="dramatiq:*", count=200)):
            if client.type(key) == b"list":
                queues.append((_text(key), int(client.llen(key))))
    except redis.RedisError as exc:
        return f"unknown: Redis cannot be reached ({type(exc).__name__})", []
    leader = _text(holder) if holder else "none: no scheduler holds the lock"
    return leader, queues


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def provider_rates(app: App) -> list[dict[str, Any]]:
    """Messages per channel in the window, and the share that failed or stayed unknown."""
    since = app.clock.now() - ERROR_WINDOW
    with app.database.sessions() as session:
        rows = session.execute(
            select(Message.channel, Message.state, func.count())
            .where(Message.created_at >= since)
            .group_by(Message.channel, Message.state)
        ).all()
    totals: dict[str, dict[str, int]] = {}
    for channel, state, count in rows:
        totals.setdefault(channel, {})[state] = int(count)
    out = []
    for channel, states in sorted(totals.items()):
        tried = sum(states.get(s, 0) for s in ("sent", "failed", "unknown"))
        bad = states.get(MessageState.FAILED, 0) + states.get(MessageState.UNKNOWN, 0)
        out.append(
            {
                "channel": channel,
                "tried": tried,
                "failed": states.get(MessageState.FAILED, 0),
                "unknown": states.get(MessageState.UNKNOWN, 0),
                "rate": f"{100 * bad / tried:.1f}%" if tried else "-",
            }
        )
    return out


def operations_view(app: App) -> dict[str, Any]:
    leader, queues = _redis_facts(app)
    try:
        crms = crm_status(app, errors=5)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        crms = []
        leader += f" · CRM status unavailable ({type(exc).__name__})"
    return {
        "dead_letters": list_dead_letters(app.database),
        "ticks": last_ticks(app.database),
        "now": app.clock.now(),
        "leader": leader,
        "queues": queues,
        "crms": crms,
        "providers": provider_rates(app),
    }


@requires("operator")
async def operations_page(request: Request) -> Response:
    view = await run_in_threadpool(operations_view, loyalty_app(request))
    return render(request, "operations.html", view)


_broker_lock = threading.Lock()
_brokers: dict[str, Broker] = {}


def _broker(url: str, app: App) -> Broker:
    """The Redis broker of this web process, built on first use (as /api/v1 does)."""
    with _broker_lock:
        if url not in _brokers:
            _brokers[url] = build_broker(app.settings)
        return _brokers[url]


def _replay(app: App, dead_letter_id: int, by: str) -> None:
    now = app.clock.now()
    assert app.settings.redis_url
    replay(app.database, _broker(app.settings.redis_url, app), dead_letter_id, now=now)
    with app.database.transaction() as session:
        record_action(session, by, "replay", f"dead_letter:{dead_letter_id}", now=now)


@requires("operator")
async def replay_dead_letter(request: Request) -> Response:
    """POST: send a dead letter again (operator), recorded with who and when."""
    user: Signed = request.scope["console_user"]
    dead_id = int(request.path_params["dead_letter_id"])
    if not loyalty_app(request).settings.redis_url:
        return error_page(
            request,
            409,
            "Replay from the command line",
            "Without REDIS_URL the workers run inside `loyalty run`: replay with "
            f"`loyalty dlq replay {dead_id}` there.",
        )
    try:
        await run_in_threadpool(_replay, loyalty_app(request), dead_id, user.email)
    except LookupError:
        return error_page(request, 404, "No such dead letter", "It may have been replayed.")
    log.info("console.dead_letter_replayed", extra={"dead_letter_id": dead_id, "user_id": user.id})
    return RedirectResponse("/console/operations?replayed=" + str(dead_id), status_code=303)
