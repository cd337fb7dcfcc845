"""The production shape: `loyalty serve` and `loyalty worker` on PostgreSQL and Redis.

Shopify's webhooks arrive over HTTP from the emulator; the web process stores them and
queues their events on Redis, and the worker's points land in the ledger. No scheduler
runs: nothing waits for the relay.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bench.soak_processes import Supervisor, loyalty_command
from loyalty.app import App
from loyalty.models import Event, LedgerEntry, Member
from sandbox.shopify import ShopifySandbox
from tests.conftest import REDIS_URL

CUSTOMER = 7001


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.integration
def test_shopify_webhooks_over_http_earn_points_through_serve_and_worker(
    postgres_app: App, redis_url: str, shopify_sandbox: ShopifySandbox, tmp_path: Path
) -> None:
    database = postgres_app.database
    port = _free_port()
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
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"))

        # Given a new customer's order, delivered three times, and a quarter refunded later
        customer = shopify_sandbox.customer_payload(CUSTOMER, email="ada@example.com")
        order = shopify_sandbox.order_payload(2001, "200.00", customer=customer)
        answers = [
            shopify_sandbox.send_webhook("orders/paid", order, url, webhook_id="wh-1")
            for _ in range(3)
        ]
        wait_for(lambda: balance() == 200)
        refund = shopify_sandbox.refund_payload(801, 2001, "50.00")
        answers.append(shopify_sandbox.send_webhook("refunds/create", refund, url))
        # A tampered delivery is refused on the wire
        refused = shopify_sandbox.send_webhook("orders/paid", order, url, tamper=True)

        # Then the points landed once, and the refund took back its share
        wait_for(lambda: balance() == 150)
        assert [answer.status_code for answer in answers] == [200, 200, 200, 200]
        assert refused.status_code == 401
        with database.sessions() as session:
            assert session.scalar(select(func.count(Event.id))) == 2
            assert (
                session.scalar(select(func.count(Event.id)).where(Event.processed_at.is_(None)))
                == 0
            )
            assert sorted(session.scalars(select(LedgerEntry.delta))) == [-50, 200]
    finally:
        supervisor.stop_all()
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert "ada@example.com" not in logs
    assert "Traceback" not in logs


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
