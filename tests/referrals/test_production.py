"""The production shape: `loyalty serve`, `loyalty worker` and `loyalty scheduler` on
PostgreSQL and Redis pay a referral once, after review, through the scheduler's tick."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bench.soak_processes import Supervisor, free_port, loyalty_command
from loyalty.app import App
from loyalty.clock import ensure_utc
from loyalty.models import Event, Member, Referral
from loyalty.referral_review import approve
from loyalty.scheduler_ticks import last_ticks
from sandbox.shopify import ShopifySandbox
from tests.conftest import REDIS_URL
from tests.processes import answers, wait_for
from tests.referrals.support import FRIEND_REWARD, REFERRAL_POINTS, SHOP_URL, program


@pytest.mark.integration
def test_a_flagged_referral_is_paid_once_after_approval_by_the_scheduler(
    postgres_app: App, redis_url: str, shopify_sandbox: ShopifySandbox, tmp_path: Path
) -> None:
    app = program(postgres_app, tmp_path, shopify_sandbox)  # publishes the referral journey
    database = app.database
    port = free_port()
    settings = app.settings
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "JOURNEYS_DIR": str(settings.journeys_dir),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "SHOPIFY_WEBHOOK_SECRET": shopify_sandbox.webhook_secret,
        "SHOPIFY_SHOP_DOMAIN": shopify_sandbox.shop_domain,
        "SHOPIFY_ACCESS_TOKEN": shopify_sandbox.access_token,
        "SHOPIFY_API_VERSION": shopify_sandbox.api_version,
        "SHOPIFY_CA_BUNDLE": str(shopify_sandbox.ca_file),
        "REWARD_CODE_SECRET": "test-secret",
        "REFERRAL_FRIEND_REWARD": FRIEND_REWARD,
        "SHOP_URL": SHOP_URL,
        "POINTS_PER_CURRENCY_UNIT": "1",
        "RETRY_MIN_BACKOFF_MS": "10",
        "SCHEDULER_TICK_SECONDS": "referral_payouts:1",
        "LOG_LEVEL": "INFO",
    }
    loyalty = loyalty_command()
    supervisor = Supervisor(env, tmp_path, tmp_path)
    webhooks = f"http://127.0.0.1:{port}/webhooks/shopify"

    def member(customer_id: int) -> Member | None:
        with database.sessions() as session:
            return session.scalar(
                select(Member).where(Member.external_id == f"shopify:{customer_id}")
            )

    def referral() -> Referral | None:
        with database.sessions() as session:
            return session.scalar(select(Referral))

    def payouts_ran_after(instant: datetime) -> bool:
        """The scheduler's referral payout job has run (and committed) since `instant`."""
        return any(
            t.name == "referral_payouts" and ensure_utc(t.finished_at) > instant
            for t in last_ticks(database)
        )

    def referrer_balance() -> int:
        found = member(7001)
        return -1 if found is None else found.points_balance

    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        supervisor.start("serve", [*loyalty, "serve", "--port", str(port)])
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"))

        # Given a referrer who ordered, and her friend code from her link
        anna = shopify_sandbox.customer_payload(7001, email="anna@example.com")
        first = shopify_sandbox.order_payload(9001, "100.00", customer=anna)
        shopify_sandbox.send_webhook("orders/paid", first, webhooks)
        wait_for(lambda: referrer_balance() == 100)
        found = member(7001)
        assert found is not None
        link = httpx.get(f"http://127.0.0.1:{port}/r/{found.referral_code}", timeout=10)
        assert link.status_code == 303
        code = link.headers["location"].rsplit("/", 1)[1]

        # When a friend's first order, from her browser IP and past its return window, uses it
        bob = shopify_sandbox.customer_payload(7002, email="bob@example.org")
        ordered = datetime.now(UTC) - timedelta(days=15)
        second = shopify_sandbox.order_payload(
            9002, "80.00", customer=bob, discount_codes=[code], created_at=ordered
        )
        shopify_sandbox.send_webhook("orders/paid", second, webhooks)
        wait_for(lambda: (r := referral()) is not None and r.status == "review")
        flagged = referral()
        assert flagged is not None and flagged.reasons == "same_ip"

        # Then the scheduler pays nothing until a reviewer approves; then it pays once
        started = datetime.now(UTC)
        supervisor.start("scheduler", [*loyalty, "scheduler"])
        wait_for(lambda: payouts_ran_after(started), "a payout run", logs=tmp_path)
        assert referrer_balance() == 100
        approve(database, flagged.id, now=datetime.now(UTC))
        supervisor.stop_all()
        supervisor = Supervisor(env, tmp_path, tmp_path)
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        supervisor.start("scheduler", [*loyalty, "scheduler"])  # its ticks run at start
        wait_for(lambda: referrer_balance() == 100 + REFERRAL_POINTS)
        paid_at = datetime.now(UTC)
        wait_for(lambda: payouts_ran_after(paid_at), "a later payout run", logs=tmp_path)
        assert referrer_balance() == 100 + REFERRAL_POINTS
        with database.sessions() as session:
            paid = session.scalar(
                select(func.count(Event.id)).where(Event.type == "referral.completed")
            )
        assert paid == 1
    finally:
        supervisor.stop_all()
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert "anna@example.com" not in logs and "bob@example.org" not in logs
    assert "Traceback" not in logs
