"""Deliveries arriving together share one commit, and each is still kept exactly once.

Many requests are in flight at once against one web app (as a shop's burst
arrives); the answers, the stored rows and the points they lead to are checked.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from automations import runtime
from automations.runtime.actors import apply_shop_deliveries
from automations.runtime.broker import build_broker, embedded_worker
from automations.shop_deliveries import pending_deliveries
from bench.pipeline_journey import counting
from loyalty.app import App
from loyalty.models import ProviderEvent
from sandbox.shopify import sign_webhook
from sandbox.shopify_payloads import customer_payload, order_payload
from tests.engine.test_wake_batches import queued
from tests.shops.support import SHOP_DOMAIN, SHOPIFY_SECRET, balance, process_stored_events
from web.app import create_app


def _headers(body: bytes, webhook_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Hmac-Sha256": sign_webhook(body, SHOPIFY_SECRET),
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-Webhook-Id": webhook_id,
    }


async def _burst(app: App, deliveries: list[tuple[str, dict[str, Any]]]) -> list[int]:
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:

        async def post(webhook_id: str, payload: dict[str, Any]) -> int:
            body = json.dumps(payload).encode()
            answer = await client.post(
                "/webhooks/shopify", content=body, headers=_headers(body, webhook_id)
            )
            return answer.status_code

        return list(await asyncio.gather(*(post(w, p) for w, p in deliveries)))


def _order(order_id: int, customer_id: int) -> dict[str, Any]:
    customer = customer_payload(customer_id, email=f"c{customer_id}@example.com")
    return order_payload(order_id, "10.00", customer=customer)


def _stored(app: App) -> list[str]:
    with app.database.sessions() as session:
        return list(
            session.scalars(select(ProviderEvent.provider_event_id).order_by(ProviderEvent.id))
        )


def test_a_burst_is_kept_once_per_delivery_and_earns_once_per_order(shop_app: App) -> None:
    burst = [(f"wh-{n}", _order(5000 + n, 700 + n % 4)) for n in range(40)]
    # Shopify retries some while the first tries are still in flight, and one order comes
    # again under a second webhook id.
    burst += [burst[n] for n in (0, 7, 7, 39)]
    burst.append(("wh-again-3", burst[3][1]))

    answers = asyncio.run(_burst(shop_app, burst))

    assert answers == [200] * len(burst)
    stored = _stored(shop_app)
    assert sorted(stored) == sorted({webhook_id for webhook_id, _ in burst})
    process_stored_events(shop_app)
    # 40 orders of 10.00 among 4 customers: 10 orders each, the repeated order earning once.
    assert [balance(shop_app, f"shopify:{700 + c}") for c in range(4)] == [100] * 4


def test_a_delivery_the_database_refuses_fails_alone(postgres_app: App) -> None:
    app = App(
        postgres_app.settings.model_copy(
            update={"shopify_webhook_secret": SHOPIFY_SECRET, "shopify_shop_domain": SHOP_DOMAIN}
        ),
        postgres_app.database,
        postgres_app.clock,
    )
    burst = [(f"wh-{n}", _order(6000 + n, 800)) for n in range(12)]
    # PostgreSQL's jsonb holds no NUL character: this body cannot be stored.
    burst.insert(5, ("wh-poison", {**_order(6100, 800), "note": "a\u0000b"}))

    answers = asyncio.run(_burst(app, burst))

    assert answers[5] == 500
    assert answers[:5] + answers[6:] == [200] * 12
    assert sorted(_stored(app)) == sorted(f"wh-{n}" for n in range(12))


def test_deliveries_queued_together_are_applied_in_one_commit_and_their_events_together(
    shop_app: App,
) -> None:
    # Given 30 orders of 3 customers, kept by the web app
    burst = [(f"wh-{n}", _order(7000 + n, 900 + n % 3)) for n in range(30)]
    assert asyncio.run(_burst(shop_app, burst)) == [200] * 30
    ids = pending_deliveries(shop_app, timedelta(0), 100)
    runtime.configure(shop_app)
    broker = build_broker(shop_app.settings)
    assert isinstance(broker, StubBroker)

    # When one batch message applies them
    with counting(shop_app.database.engine) as counts:
        apply_shop_deliveries(ids)

    # Then one commit applied all 30, and their events are queued as one batch
    assert counts.commits == 1, str(counts)
    assert pending_deliveries(shop_app, timedelta(0), 100) == []
    [batch] = queued(broker, "events")
    assert (batch.actor_name, len(batch.args[0])) == ("process_events", 30)
    # And processed, each order earned once
    with embedded_worker(broker, threads=1):
        pass
    assert [balance(shop_app, f"shopify:{900 + c}") for c in range(3)] == [100] * 3
