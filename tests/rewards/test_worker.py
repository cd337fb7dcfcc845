"""The production shape: `loyalty rewards redeem` on PostgreSQL and Redis, a `loyalty worker`
process making the code at the Shopify emulator."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.soak_processes import Supervisor, loyalty_command
from loyalty.app import App
from loyalty.models import Event, Member
from loyalty.rewards import RedemptionState
from sandbox.shopify import ShopifySandbox
from tests.conftest import REDIS_URL
from tests.processes import wait_for
from tests.rewards.support import journeys_dir, redemptions


def _seeded(
    database_url: str, shopify: ShopifySandbox, tmp_path: Path, member: str, **settings: str
) -> dict[str, str]:
    """The processes' environment, with `member` imported and given 300 points."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "JOURNEYS_DIR": str(journeys_dir(tmp_path)),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "SHOPIFY_SHOP_DOMAIN": shopify.shop_domain,
        "SHOPIFY_ACCESS_TOKEN": shopify.access_token,
        "SHOPIFY_API_VERSION": shopify.api_version,
        "SHOPIFY_CA_BUNDLE": str(shopify.ca_file),
        "REWARD_CODE_SECRET": "worker-secret",
        **settings,
    }
    loyalty = loyalty_command()
    members = tmp_path / "members.csv"
    members.write_text(f"external_id,email\n{member},m{member}@example.com\n")
    subprocess.run([*loyalty, "members", "import", str(members)], env=env, check=True)
    seed = ["points", "adjust", member, "300", "--reason", "seed", "--key", f"seed-{member}"]
    subprocess.run([*loyalty, *seed], env=env, check=True)
    return env


@pytest.mark.integration
def test_a_worker_makes_the_code_at_shopify_after_loyalty_rewards_redeem(
    postgres_app: App, redis_url: str, shopify_sandbox: ShopifySandbox, tmp_path: Path
) -> None:
    postgres = postgres_app.database
    env = _seeded(postgres.url, shopify_sandbox, tmp_path, "5001")
    loyalty = loyalty_command()
    supervisor = Supervisor(env, tmp_path, tmp_path)
    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        redeem = [*loyalty, "rewards", "redeem", "5001", "ten_off", "--key", "k-1"]
        done = subprocess.run(
            [*redeem, "--currency", "PLN", "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert ": issued code LJ-" in done.stdout
        again = subprocess.run(
            [*redeem, "--currency", "PLN", "--wait"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "was already used; nothing new was taken" in again.stdout

        def redeemed_processed() -> bool:
            with postgres.sessions() as session:
                event = session.scalar(select(Event).where(Event.type == "reward.redeemed"))
                return event is not None and event.processed_at is not None

        wait_for(redeemed_processed, "the worker to process reward.redeemed", logs=tmp_path)
    finally:
        supervisor.stop_all()
    (code,) = shopify_sandbox.codes()
    (issued,) = redemptions(postgres)
    assert issued.state == RedemptionState.ISSUED and issued.code == code["code"]
    assert code["customers"] == ["gid://shopify/Customer/5001"]
    with postgres.sessions() as session:
        member = session.scalar(select(Member).where(Member.external_id == "5001"))
        assert member is not None and member.points_balance == 200


@pytest.mark.integration
def test_the_scheduler_relays_a_redemption_whose_queued_job_was_lost(
    postgres_app: App, redis_url: str, shopify_sandbox: ShopifySandbox, tmp_path: Path
) -> None:
    """Redis lost the job that makes the code: the relay tick queues the pending redemption."""
    import redis

    postgres = postgres_app.database
    env = _seeded(
        postgres.url,
        shopify_sandbox,
        tmp_path,
        "5002",
        EVENT_RELAY_AFTER_SECONDS="1",
        SCHEDULER_TICK_SECONDS="outbox_relay:1",
    )
    loyalty = loyalty_command()
    redeemed = subprocess.run(
        [*loyalty, "rewards", "redeem", "5002", "ten_off", "--key", "k-2", "--currency", "PLN"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert redeemed.returncode == 0, redeemed.stderr
    (pending,) = redemptions(postgres)
    assert pending.state == RedemptionState.PENDING
    redis.Redis.from_url(REDIS_URL).flushdb()  # the queued job is gone

    supervisor = Supervisor(env, tmp_path, tmp_path)
    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        supervisor.start("scheduler", [*loyalty, "scheduler"])

        def issued() -> bool:
            (row,) = redemptions(postgres)
            return row.state == RedemptionState.ISSUED

        wait_for(issued, "the relayed redemption to be issued", logs=tmp_path)
    finally:
        supervisor.stop_all()
    (code,) = shopify_sandbox.codes()
    (done,) = redemptions(postgres)
    assert done.code == code["code"] and code["customers"] == ["gid://shopify/Customer/5002"]
