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


@pytest.mark.integration
def test_a_worker_makes_the_code_at_shopify_after_loyalty_rewards_redeem(
    postgres_app: App, redis_url: str, shopify_sandbox: ShopifySandbox, tmp_path: Path
) -> None:
    postgres = postgres_app.database
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        "JOURNEYS_DIR": str(journeys_dir(tmp_path)),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "SHOPIFY_SHOP_DOMAIN": shopify_sandbox.shop_domain,
        "SHOPIFY_ACCESS_TOKEN": shopify_sandbox.access_token,
        "SHOPIFY_API_VERSION": shopify_sandbox.api_version,
        "SHOPIFY_CA_BUNDLE": str(shopify_sandbox.ca_file),
        "REWARD_CODE_SECRET": "worker-secret",
    }
    loyalty = loyalty_command()
    members = tmp_path / "members.csv"
    members.write_text("external_id,email\n5001,ada@example.com\n")
    subprocess.run([*loyalty, "members", "import", str(members)], env=env, check=True)
    subprocess.run(
        [*loyalty, "points", "adjust", "5001", "300", "--reason", "seed", "--key", "seed-1"],
        env=env,
        check=True,
    )
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
