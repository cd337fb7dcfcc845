"""The production shape: `loyalty serve` and `loyalty worker` on PostgreSQL and Redis.

A token made with the CLI, events posted over HTTP, and the points land in the
ledger through a worker: the web process queued them on Redis after the commit
(no scheduler runs here, so no relay could have).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import select

from bench.soak_processes import Supervisor, free_port, loyalty_command
from loyalty.app import App
from loyalty.db import Database
from loyalty.models import Event, LedgerEntry, Member
from tests.processes import answers, wait_for


def balance(database: Database, external_id: str) -> int | None:
    with database.sessions() as session:
        return session.scalar(
            select(Member.points_balance).where(Member.external_id == external_id)
        )


@pytest.mark.integration
def test_events_posted_to_loyalty_serve_reach_the_ledger_through_loyalty_worker(
    postgres_app: App, redis_url: str, tmp_path: Path
) -> None:
    postgres = postgres_app.database
    queues = redis.Redis.from_url(redis_url)  # emptied by the fixture
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis_url,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "LOG_LEVEL": "WARNING",
    }
    loyalty = loyalty_command()

    # Given a token made with the CLI, shown once on stdout
    created = subprocess.run(
        [*loyalty, "tokens", "create", "--name", "shop",
         "--scope", "events:write,members:read,members:write"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}

    supervisor = Supervisor(env, tmp_path, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        supervisor.start("serve", [*loyalty, "serve", "--port", str(port)])
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        wait_for(lambda: answers(f"{base}/openapi.json"), "loyalty serve to answer")

        # When a member is put, and orders and a sign-up with a profile are posted over HTTP
        put = httpx.put(
            f"{base}/members/m-1", json={"email": "ada@example.com"}, headers=headers, timeout=10
        )
        assert put.status_code == 201, put.text
        events = [
            {
                "type": "order.completed",
                "member": "m-1",
                "id": f"order-{n}",
                "data": {"order_id": str(n), "total": "25.50", "currency": "EUR"},
            }
            for n in range(1, 4)
        ]
        events.append(events[0])  # sent twice: stored once
        events.append(
            {
                "type": "member.enrolled",
                "member": "new-1",
                "id": "signup-new-1",
                "profile": {"email": "grace@example.com", "email_consent": True},
            }
        )
        posted = httpx.post(f"{base}/events", json={"events": events}, headers=headers, timeout=30)
        assert posted.status_code == 202, posted.text
        assert (posted.json()["stored"], posted.json()["duplicates"]) == (4, 1)

        # Then the worker applies them: the orders' points land in the ledger once
        def settled() -> bool:
            with postgres.sessions() as session:
                unprocessed = session.scalar(select(Event.id).where(Event.processed_at.is_(None)))
            return balance(postgres, "m-1") == 75 and unprocessed is None

        # (the orders, and the points.changed events their ledger entries caused)
        wait_for(settled, "the points of three orders, every event processed", logs=tmp_path)
        with postgres.sessions() as session:
            entries = session.scalars(
                select(LedgerEntry.delta).join(Member).where(Member.external_id == "m-1")
            ).all()
        assert sorted(entries) == [25, 25, 25]
        assert balance(postgres, "new-1") == 0

        # And the API shows them
        member = httpx.get(f"{base}/members/m-1", headers=headers, timeout=10).json()
        assert (member["points"], member["lifetime_points"]) == (75, 75)
    finally:
        supervisor.stop_all()
        queues.flushdb()
