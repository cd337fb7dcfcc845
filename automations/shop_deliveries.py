"""Shop webhook deliveries, applied by the workers: members, events and privacy requests.

`loyalty serve` keeps each verified delivery once by its delivery id
(`X-Shopify-Webhook-Id`, `X-WC-Webhook-Delivery-ID`) in `provider_events` with
its body, in one short transaction, and answers (`store_deliveries`; deliveries
arriving together share one statement and one commit): well within Shopify's
five seconds however busy the database is. A worker then applies it
(`apply_delivery`, the `apply_shop_delivery` actor), queued over Redis by the web
process or, on the embedded default and after a Redis outage, by the scheduler's
relay tick (`pending_deliveries`).

Applying is exactly once: the member upserts, the events (each once by its
business key from `shops.webhooks`, so one order under two delivery ids earns
once) and the delivery's "applied" mark commit together, and the stored body is
cut down to the shop's ids in the same transaction. Privacy requests
(`customers/redact`, `shop/redact`, `customers/data_request`) run after it: an
erasure reaches the CRMs over the network (`crm_sync.runs.erase_everywhere`, the
path of `loyalty members erase`); the delivery is marked applied (and its body
cut) only when the request is done, so a failed run is tried again. Both are
safe to repeat.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from channels.outbox import erase_files
from crm_sync.runs import erase_everywhere
from loyalty.app import App
from loyalty.errors import SkippableError
from loyalty.event_types import EventInput
from loyalty.events import record
from loyalty.export import export_member, outbox_bodies
from loyalty.member_upsert import upsert_member
from loyalty.models import Event, Member, ProviderEvent
from loyalty.provider_events import Delivery, keep_provider_events, mark_applied
from loyalty.retry_waits import no_retry_waiting
from loyalty.settings import Settings
from shops.webhooks import (
    SHOPIFY,
    WOOCOMMERCE,
    Privacy,
    ShopActions,
    ShopEvent,
    shopify_actions,
    woocommerce_actions,
)

__all__ = [
    "Applied",
    "apply_deliveries",
    "apply_delivery",
    "delivery_actions",
    "pending_deliveries",
    "store_deliveries",
    "write_export",
]

log = logging.getLogger(__name__)

SHOPS = (SHOPIFY, WOOCOMMERCE)
#: Tries of a delivery's transaction when a concurrent one created the same member first.
STORE_ATTEMPTS = 3


@dataclass
class Applied:
    """What applying a delivery did."""

    shop: str = ""
    delivery_id: str = ""
    #: Already applied, or not a shop delivery: nothing was done.
    done: bool = False
    event_ids: list[int] = field(default_factory=list)
    members_created: int = 0
    upserted: int = 0
    #: Why parts of the delivery were left out (error kinds and shop ids, nothing personal).
    skipped: list[str] = field(default_factory=list)
    privacy: Privacy | None = None
    ids: dict[str, str] = field(default_factory=dict)


def delivery_actions(
    settings: Settings, shop: str, topic: str, payload: Mapping[str, Any]
) -> ShopActions:
    """What a delivery of `topic` asks for (pure: no database)."""
    if shop == WOOCOMMERCE:
        return woocommerce_actions(
            topic, payload, earn_on_status=settings.woocommerce_earn_on_status
        )
    return shopify_actions(topic, payload)


def store_deliveries(app: App, deliveries: Sequence[Delivery]) -> list[int | None]:
    """Keep verified deliveries once, with their bodies, in one short transaction: per
    delivery its row id, or None for a repeat."""
    with app.database.transaction() as session:
        return keep_provider_events(session, deliveries, app.clock.now())


def pending_deliveries(app: App, older_than: timedelta, limit: int) -> list[int]:
    """Stored deliveries not applied yet (their queue message lost, or never sent)."""
    cutoff = app.clock.now() - older_than
    with app.database.sessions() as session:
        return list(
            session.scalars(
                select(ProviderEvent.id)
                .where(
                    ProviderEvent.provider.in_(SHOPS),
                    ProviderEvent.applied_at.is_(None),
                    ProviderEvent.received_at <= cutoff,
                    no_retry_waiting("apply_shop_delivery", ProviderEvent.id, cutoff),
                )
                .order_by(ProviderEvent.id)
                .limit(limit)
            )
        )


def apply_delivery(app: App, row_id: int) -> Applied:
    """Turn a stored delivery into its member upserts and events, once; privacy work after.

    The upserts, the events and the delivery's "applied" mark commit together; the
    stored body is then cut down to the shop's ids. A privacy request (erasure, export)
    runs after that transaction and marks the delivery applied when it is done.
    """
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            applied = _apply(app, row_id)
        except IntegrityError:
            # Another delivery (customers/create beside orders/paid, say) created the same
            # member a moment ago: the next try finds it.
            if attempt == STORE_ATTEMPTS:
                raise
            continue
        if applied.privacy is not None:
            fulfil_privacy(app, applied.shop, applied.delivery_id, applied.privacy, applied.ids)
        return applied
    raise AssertionError("unreachable")


def apply_deliveries(app: App, row_ids: list[int]) -> tuple[list[Applied], list[int]]:
    """Apply stored deliveries that were queued together, in one transaction: what each
    did, and the ids left to apply on their own (`apply_delivery`): those another worker
    holds (skipped on PostgreSQL, not waited for) and privacy requests, whose work runs
    after their transaction. A failure raises and rolls the whole batch back."""
    ids = sorted(set(row_ids))
    with app.database.transaction() as session:
        query = select(ProviderEvent).where(ProviderEvent.id.in_(ids)).order_by(ProviderEvent.id)
        if not app.database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        rows = session.scalars(query).all()
        held = {row.id for row in rows}
        alone = [i for i in ids if i not in held]
        done: list[Applied] = []
        for row in rows:
            applied = _apply_row(session, app, row)
            if applied.privacy is not None:
                alone.append(row.id)
            else:
                done.append(applied)
    return done, sorted(alone)


def _apply(app: App, row_id: int) -> Applied:
    with app.database.transaction() as session:
        row = session.get(ProviderEvent, row_id, with_for_update=True)
        return _apply_row(session, app, row)


def _apply_row(session: Session, app: App, row: ProviderEvent | None) -> Applied:
    """Apply one held delivery's upserts and events in `session` (the caller's transaction)."""
    now = app.clock.now()
    if row is None or row.applied_at is not None or row.provider not in SHOPS:
        return Applied(done=True)
    shop = row.provider
    stored = Applied(shop=shop, delivery_id=row.provider_event_id)
    actions = delivery_actions(app.settings, shop, row.kind, row.payload)
    stored.ids = dict(actions.ids)
    if actions.privacy is not None:
        # The body stays until the request is done: a failed run is tried again from it.
        stored.privacy = actions.privacy
        return stored
    # The body held addresses and names: only the shop's ids stay with the record.
    row.payload = dict(actions.ids)
    row.applied_at = now
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
                    as_of=upsert.as_of,
                )
        except SkippableError as exc:
            stored.skipped.append(f"member: {type(exc).__name__}")
            continue
        if result.stale:
            stored.skipped.append("member: an update older than the one applied")
            continue
        stored.upserted += int(result.changed)
        stored.members_created += int(result.created)
        if result.warnings:
            fields = sorted({warning.field for warning in result.warnings})
            stored.skipped.append(f"member fields left out: {', '.join(fields)}")
    for event in actions.events:
        _record(session, app, shop, event, stored)
    return stored


def _record(session: Session, app: App, shop: str, event: ShopEvent, stored: Applied) -> None:
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


def fulfil_privacy(
    app: App, shop: str, delivery_id: str, privacy: Privacy, ids: dict[str, str]
) -> None:
    """Erase or export as the shop asked, then mark the delivery applied, keeping its ids."""
    if privacy.kind == "erase_shop":
        _erase_shop(app, shop)
    else:
        _one_member(app, shop, privacy)
    with app.database.transaction() as session:
        mark_applied(session, shop, delivery_id, app.clock.now())
        session.execute(
            update(ProviderEvent)
            .where(ProviderEvent.provider == shop, ProviderEvent.provider_event_id == delivery_id)
            .values(payload=ids)
        )


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
