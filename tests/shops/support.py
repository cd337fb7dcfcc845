"""Shop webhooks signed as the shops sign them (the emulators' signers), and rows to assert on."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from automations import runtime
from automations.runtime import actors
from automations.runtime.broker import build_broker, embedded_worker
from automations.shop_deliveries import pending_deliveries
from loyalty.app import App
from loyalty.models import Consent, Event, LedgerEntry, Member, ProviderEvent
from sandbox.shopify import sign_webhook as shopify_sign
from sandbox.woocommerce import sign_webhook as woocommerce_sign

SHOPIFY_SECRET = "shopify-app-client-secret"
SHOP_DOMAIN = "acme.myshopify.com"
WOOCOMMERCE_SECRET = "woocommerce-webhook-secret"
WOOCOMMERCE_URL = "https://shop.acme.example"

_deliveries = itertools.count(1)


def post_shopify(
    client: TestClient,
    topic: str,
    payload: dict[str, Any],
    *,
    webhook_id: str | None = None,
    secret: str = SHOPIFY_SECRET,
    shop_domain: str = SHOP_DOMAIN,
    signature: str | None = None,
    tamper: bool = False,
) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature if signature is not None else shopify_sign(body, secret),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": "2025-01",
        "X-Shopify-Webhook-Id": webhook_id or f"wh-{next(_deliveries)}",
    }
    if signature == "":
        del headers["X-Shopify-Hmac-Sha256"]
    if tamper:
        body = json.dumps({**payload, "tampered": True}).encode()
    return client.post("/webhooks/shopify", content=body, headers=headers)


def post_woocommerce(
    client: TestClient,
    topic: str,
    payload: dict[str, Any],
    *,
    delivery_id: str | None = None,
    secret: str = WOOCOMMERCE_SECRET,
) -> Any:
    body = json.dumps(payload).encode()
    resource, _, event = topic.partition(".")
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": WOOCOMMERCE_URL + "/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": woocommerce_sign(body, secret),
        "X-WC-Webhook-ID": "7",
        "X-WC-Webhook-Delivery-ID": delivery_id or str(next(_deliveries)),
    }
    return client.post("/webhooks/woocommerce", content=body, headers=headers)


def process_stored_events(app: App) -> None:
    """What the workers do with stored deliveries, then with their events, as the relay queues."""
    runtime.configure(app)
    broker = build_broker(app.settings)
    with embedded_worker(broker, threads=1):
        for row_id in pending_deliveries(app, timedelta(0), 10_000):
            actors.send("apply_shop_delivery", row_id)
    with app.database.sessions() as session:
        ids = session.scalars(
            select(Event.id).where(Event.processed_at.is_(None)).order_by(Event.id)
        ).all()
    with embedded_worker(broker, threads=1):
        for event_id in ids:
            actors.send("process_event", event_id)


def balance(app: App, external_id: str) -> int:
    with app.database.sessions() as session:
        value = session.scalar(
            select(Member.points_balance).where(Member.external_id == external_id)
        )
        assert value is not None, f"no member {external_id}"
        return int(value)


def member(app: App, external_id: str) -> Member:
    with app.database.sessions() as session:
        row = session.scalar(select(Member).where(Member.external_id == external_id))
        assert row is not None, f"no member {external_id}"
        session.expunge(row)
        return row


def counts(app: App) -> dict[str, int]:
    """Rows stored by webhooks: deliveries, events, members, consents, ledger entries."""
    tables = {
        "deliveries": ProviderEvent,
        "members": Member,
        "consents": Consent,
        "ledger": LedgerEntry,
    }
    with app.database.sessions() as session:
        found = {
            name: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for name, model in tables.items()
        }
        # The shops' own events; the ledger's points.changed / tier.changed come on top.
        found["events"] = int(
            session.scalar(select(func.count(Event.id)).where(Event.source != "loyalty")) or 0
        )
        return found


def consents(app: App, external_id: str) -> list[tuple[str, bool, str]]:
    with app.database.sessions() as session:
        rows = session.execute(
            select(Consent.channel, Consent.granted, Consent.source)
            .join(Member, Member.id == Consent.member_id)
            .where(Member.external_id == external_id)
            .order_by(Consent.id)
        ).all()
        return [(channel, granted, source) for channel, granted, source in rows]
