"""The production shape: `loyalty serve` and `loyalty worker` on PostgreSQL and Redis.

Shopify's webhooks arrive over HTTP from the emulator; the web process stores them and
queues their events on Redis, and the worker's points land in the ledger. No scheduler
runs: nothing waits for the relay.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.soak_processes import Supervisor, free_port, loyalty_command
from loyalty.app import App
from loyalty.models import Event, LedgerEntry, Member
from sandbox.shopify import ShopifySandbox
from tests.conftest import REDIS_URL
from tests.processes import answers, wait_for

CUSTOMER = 7001


@pytest.mark.integration
def test_shopify_webhooks_over_http_earn_points_through_serve_and_worker(
    postgres_app: App, redis_url: str, shopify_sandbox: ShopifySandbox, tmp_path: Path
) -> None:
    database = postgres_app.database
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "SHOPIFY_WEBHOOK_SECRET": shopify_sandbox.webhook_secret,
        "SHOPIFY_SHOP_DOMAIN": shopify_sandbox.shop_domain,
        "POINTS_PER_CURRENCY_UNIT": "1",
        "RETRY_MIN_BACKOFF_MS": "10",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "LOG_LEVEL": "INFO",
    }
    loyalty = loyalty_command()
    supervisor = Supervisor(env, tmp_path, tmp_path)
    url = f"http://127.0.0.1:{port}/webhooks/shopify"

    def balance() -> int | None:
        with database.sessions() as session:
            return session.scalar(
                select(Member.points_balance).where(Member.external_id == f"shopify:{CUSTOMER}")
            )

    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        supervisor.start("serve", [*loyalty, "serve", "--port", str(port)])
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"))

        # Given a new customer's order, delivered three times, and a quarter refunded later
        customer = shopify_sandbox.customer_payload(CUSTOMER, email="ada@example.com")
        order = shopify_sandbox.order_payload(2001, "200.00", customer=customer)
        replies = [
            shopify_sandbox.send_webhook("orders/paid", order, url, webhook_id="wh-1")
            for _ in range(3)
        ]
        wait_for(lambda: balance() == 200)
        refund = shopify_sandbox.refund_payload(801, 2001, "50.00")
        replies.append(shopify_sandbox.send_webhook("refunds/create", refund, url))
        # A tampered delivery is refused on the wire
        refused = shopify_sandbox.send_webhook("orders/paid", order, url, tamper=True)

        # Then the points landed once, and the refund took back its share
        wait_for(lambda: balance() == 150)
        assert [answer.status_code for answer in replies] == [200, 200, 200, 200]
        assert refused.status_code == 401
        with database.sessions() as session:
            shop_events = session.execute(
                select(Event.type, Event.processed_at).where(Event.source == "shopify")
            ).all()
            assert sorted(t for t, _ in shop_events) == ["order.completed", "order.refunded"]
            assert all(processed is not None for _, processed in shop_events)
            assert sorted(session.scalars(select(LedgerEntry.delta))) == [-50, 200]
    finally:
        supervisor.stop_all()
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert "ada@example.com" not in logs
    assert "Traceback" not in logs
