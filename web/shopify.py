"""POST /webhooks/shopify, and how a shop delivery is stored, queued and answered.

The WooCommerce handler (`web.woocommerce`) shares everything below its own checks.

A delivery is verified on its raw bytes, then kept once by its delivery id
(`X-Shopify-Webhook-Id`, the same for every retry) in `provider_events`, in the
same transaction as what it asks for: the events it becomes (each once by its
business key, `shops.webhooks`) and the member upserts. A retry answers 200 and
stores nothing. The answer goes out as soon as that transaction commits, well
within Shopify's five seconds:

- **Events** are processed by the workers, handed over as /api/v1 hands its own
  (`web.api.workers`): with `REDIS_URL` set, queued on Redis after the commit; on
  the embedded default no broker is built here (an in-memory queue would have no
  worker: see `web.surveys`), and the scheduler's relay tick queues them once they
  are EVENT_RELAY_AFTER_SECONDS old. A broker outage leaves them to the relay too.
- **Privacy requests** (`customers/redact`, `shop/redact`, `customers/data_request`)
  run in this process right after the answer is sent (a background task): an
  erasure reaches the CRMs over the network (`crm_sync.runs.erase_everywhere`, the
  path of `loyalty members erase`), which may take longer than the shop waits, and
  an event would not do: erasure is not an effect of the ledger's event types, and
  workers route events into journeys. The delivery record stays unapplied until the
  request is done, so a retry of it (or a redelivery by hand) runs it again; both
  are safe to repeat.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from channels.outbox import erase_files
from crm_sync.runs import erase_everywhere
from loyalty.app import App
from loyalty.errors import SkippableError
from loyalty.event_types import EventInput
from loyalty.events import record
from loyalty.export import export_member, outbox_bodies
from loyalty.member_upsert import upsert_member
from loyalty.models import Event, Member, ProviderEvent
from loyalty.provider_events import mark_applied, provider_event_id, store_provider_event
from shops.webhooks import SHOPIFY, Privacy, ShopActions, ShopEvent, shopify_actions
from web.api.workers import EventQueue
from web.common import BadBody, loyalty_app, parse_json, read_body, refused
from web.signatures import shopify_signature_ok

__all__ = ["Stored", "accept_delivery", "shopify_webhook", "store_delivery"]

log = logging.getLogger(__name__)

#: Shopify sends whole orders; a few megabytes is far above a large one.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Tries of a delivery's transaction when a concurrent one created the same member first.
STORE_ATTEMPTS = 3

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
SHOP_HEADER = "X-Shopify-Shop-Domain"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"


async def shopify_webhook(request: Request) -> Response:
    app = loyalty_app(request)
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return refused(SHOPIFY, "too_large", 413)
    if not shopify_signature_ok(
        app.settings.shopify_webhook_secret, body, request.headers.get(HMAC_HEADER)
    ):
        return refused(SHOPIFY, "signature", 401)
    domain = app.settings.shopify_shop_domain
    if domain and request.headers.get(SHOP_HEADER, "").strip().lower() != domain.lower():
        return refused(SHOPIFY, "shop_domain", 401)
    try:
        payload = parse_json(body)
    except BadBody:
        return refused(SHOPIFY, "malformed", 400)
    if not isinstance(payload, dict):
        return refused(SHOPIFY, "malformed", 400)
    topic = request.headers.get(TOPIC_HEADER, "").strip()
    delivery = provider_event_id(request.headers.get(WEBHOOK_ID_HEADER), payload)
    return await accept_delivery(app, SHOPIFY, delivery, topic, shopify_actions(topic, payload))


@dataclass
class Stored:
    """What a delivery left in the database."""

    duplicate: bool = False
    event_ids: list[int] = field(default_factory=list)
    members_created: int = 0
    upserted: int = 0
    #: Why parts of the delivery were left out (error kinds and shop ids, nothing personal).
    skipped: list[str] = field(default_factory=list)
    #: A privacy request that is stored and not yet done (new, or its first run failed).
    privacy_pending: bool = False


async def accept_delivery(
    app: App, shop: str, delivery_id: str, topic: str, actions: ShopActions
) -> Response:
    """Store a verified delivery, queue its events, answer 200; privacy work runs after."""
    if actions.ignored is not None:
        log.info(
            "shop.webhook_ignored",
            extra={"shop": shop, "topic": topic[:64], "reason": actions.ignored, **actions.ids},
        )
        return PlainTextResponse("ok")
    stored = await run_in_threadpool(store_delivery, app, shop, delivery_id, topic, actions)
    queued = 0
    if stored.event_ids:
        queued = await run_in_threadpool(queue_events, app, stored.event_ids)
    log.info(
        "shop.webhook",
        extra={
            "shop": shop,
            "topic": topic,
            "delivery_id": delivery_id,
            "duplicate": stored.duplicate,
            "event_ids": stored.event_ids,
            "queued": queued,
            "members_created": stored.members_created,
            "upserted": stored.upserted,
            "skipped": stored.skipped,
            **actions.ids,
        },
    )
    task = None
    if actions.privacy is not None and stored.privacy_pending:
        task = BackgroundTask(
            run_in_threadpool, fulfil_privacy, app, shop, delivery_id, actions.privacy
        )
    return PlainTextResponse("ok", background=task)


def store_delivery(
    app: App, shop: str, delivery_id: str, topic: str, actions: ShopActions
) -> Stored:
    """Keep the delivery once, with its events and member upserts, in one transaction."""
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            return _store(app, shop, delivery_id, topic, actions)
        except IntegrityError:
            # Another delivery (customers/create beside orders/paid, say) created the same
            # member a moment ago: the next try finds it.
            if attempt == STORE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _store(app: App, shop: str, delivery_id: str, topic: str, actions: ShopActions) -> Stored:
    now = app.clock.now()
    stored = Stored()
    with app.database.transaction() as session:
        new = store_provider_event(
            session, shop, delivery_id, topic, actions.ids, now, applied=actions.privacy is None
        )
        if not new:
            stored.duplicate = True
            stored.privacy_pending = (
                actions.privacy is not None
                and (
                    session.scalar(
                        select(func.count(ProviderEvent.id)).where(
                            ProviderEvent.provider == shop,
                            ProviderEvent.provider_event_id == delivery_id,
                            ProviderEvent.applied_at.is_(None),
                        )
                    )
                    or 0
                )
                > 0
            )
            return stored
        stored.privacy_pending = actions.privacy is not None
        for upsert in actions.upserts:
            try:
                with session.begin_nested():
                    result = upsert_member(
                        session,
                        upsert.external_id,
                        upsert.profile,
                        settings=app.settings,
                        now=now,
                        source=shop,
                    )
            except SkippableError as exc:
                stored.skipped.append(f"member: {type(exc).__name__}")
                continue
            stored.upserted += int(result.changed)
            stored.members_created += int(result.created)
            if result.warnings:
                fields = sorted({warning.field for warning in result.warnings})
                stored.skipped.append(f"member fields left out: {', '.join(fields)}")
        for event in actions.events:
            _record(session, app, shop, event, stored)
    return stored


def _record(session: Session, app: App, shop: str, event: ShopEvent, stored: Stored) -> None:
    member = event.member or _member_of_order(session, shop, event.order_event)
    if member is None:
        stored.skipped.append(f"{event.id}: order unknown here")
        return
    try:
        with session.begin_nested():
            recorded = record(
                session,
                EventInput(
                    type=event.type,
                    member=member,
                    id=event.id,
                    at=event.at,
                    data=event.data,
                    source=shop,
                    profile=event.profile,
                ),
                settings=app.settings,
                now=app.clock.now(),
            )
    except SkippableError as exc:
        stored.skipped.append(f"{event.id}: {type(exc).__name__}")
        return
    if recorded.created:
        stored.event_ids.append(recorded.row.id)
    stored.members_created += int(recorded.member_created)


def _member_of_order(session: Session, shop: str, order_event: str | None) -> str | None:
    """Whoever placed the order whose event is `order_event` (a refund names only its order)."""
    if order_event is None:
        return None
    return session.scalar(
        select(Member.external_id)
        .join(Event, Event.member_id == Member.id)
        .where(Event.source == shop, Event.external_id == order_event)
    )


#: One queue per Redis URL in this process (the broker is built on first use).
_queues: dict[str, EventQueue] = {}
_queues_lock = threading.Lock()


def queue_events(app: App, event_ids: list[int]) -> int:
    """Queue stored events to the workers over Redis (as /api/v1 does); how many were queued.

    On the embedded default, and while Redis is unreachable, nothing is queued here:
    the scheduler's relay tick queues stored, unprocessed events.
    """
    if not app.settings.redis_url:
        return 0
    with _queues_lock:
        queue = _queues.setdefault(app.settings.redis_url, EventQueue(app.settings))
    return len(event_ids) - len(queue.send(event_ids))


def fulfil_privacy(app: App, shop: str, delivery_id: str, privacy: Privacy) -> None:
    """Erase or export as the shop asked, then mark the delivery applied."""
    if privacy.kind == "erase_shop":
        _erase_shop(app, shop)
    else:
        _one_member(app, shop, privacy)
    with app.database.transaction() as session:
        mark_applied(session, shop, delivery_id, app.clock.now())


def _erase_shop(app: App, shop: str) -> None:
    with app.database.sessions() as session:
        member_ids = list(
            session.scalars(
                select(Member.id).where(
                    Member.external_id.like(f"{shop}:%"), Member.erased_at.is_(None)
                )
            )
        )
    for member_id in member_ids:
        _erase(app, member_id)
    log.info("shop.shop_erased", extra={"shop": shop, "members_erased": len(member_ids)})


def _one_member(app: App, shop: str, privacy: Privacy) -> None:
    with app.database.sessions() as session:
        member = _privacy_member(session, shop, privacy)
        found = None if member is None else (member.id, member.erased_at is not None)
    if found is None:
        log.info("shop.privacy_unknown_member", extra={"shop": shop, "request": privacy.kind})
        return
    member_id, erased = found
    if privacy.kind == "erase":
        if not erased:
            _erase(app, member_id)
        log.info("shop.member_erased", extra={"shop": shop, "member_id": member_id})
        return
    path = write_export(app, shop, member_id, privacy.request_id)
    log.info(
        "shop.member_exported", extra={"shop": shop, "member_id": member_id, "path": str(path)}
    )


def _erase(app: App, member_id: int) -> None:
    erase_everywhere(app, member_id, erase_files=partial(erase_files, app.settings.outbox_dir))


def _privacy_member(session: Session, shop: str, privacy: Privacy) -> Member | None:
    """The member named by the request: by the shop's customer id, else by a unique address."""
    if privacy.external_id is not None:
        member = session.scalar(select(Member).where(Member.external_id == privacy.external_id))
        if member is not None:
            return member
    if privacy.email is None:
        return None
    found = session.scalars(
        select(Member).where(func.lower(Member.email) == privacy.email.lower()).limit(2)
    ).all()
    return found[0] if len(found) == 1 else None


def write_export(app: App, shop: str, member_id: int, request_id: str | None) -> Path:
    """Write the member's export to EXPORT_DIR (owner-only); the file's path."""
    with app.database.sessions() as session:
        document = export_member(
            session,
            member_id,
            bodies=outbox_bodies(app.settings.outbox_dir),
            now=app.clock.now(),
        )
    folder = app.settings.export_dir
    folder.mkdir(parents=True, exist_ok=True)
    # Named by ids only: the file name ends up in logs.
    stamp = app.clock.now().strftime("%Y%m%dT%H%M%SZ")
    request = f"request-{request_id}" if request_id else stamp
    path = folder / f"{shop}-member-{member_id}-{request}.json"
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    return path
