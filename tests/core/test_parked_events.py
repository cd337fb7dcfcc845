"""An event that fails for good is parked: it stops holding the member's later events.

The bad events here are stored as an earlier release (or a hand-made SQL fix)
could have stored them, past today's intake checks; processing one raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from automations import runtime
from automations.intake import describe_events, emit
from automations.runtime import actors
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.dead_letters import list_dead_letters
from automations.runtime.ticks import relay_events
from bench.soak_processes import Supervisor, loyalty_command
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from loyalty.event_types import EventInput
from loyalty.models import Event, Member
from tests.conftest import REDIS_URL, make_settings
from tests.factories import make_member
from tests.processes import wait_for

ORDER = {"order_id": "1001", "total": "40", "currency": "EUR"}
#: `points` must be a whole number: processing this one raises ValueError.
BAD_REDEEM = {"points": "lots", "reward": "tote"}


def store_raw(
    database: Database,
    member_id: int,
    external_id: str,
    payload: Mapping[str, object],
    event_type: str = "reward.redeemed",
) -> int:
    """An event row written past the intake checks (an earlier release's data, say)."""
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO events (source, external_id, type, member_id, payload,"
                " occurred_at, received_at) VALUES ('shop', :eid, :type, :mid,"
                " :payload, :at, :at)"
            ),
            {
                "eid": external_id,
                "type": event_type,
                "mid": member_id,
                "payload": json.dumps(payload),
                "at": "2026-03-10 11:59:00",
            },
        )
        return int(
            connection.scalar(
                text("SELECT id FROM events WHERE external_id = :e"), {"e": external_id}
            )
        )


def event_row(database: Database, event_id: int) -> Event:
    with database.sessions() as session:
        row = session.get(Event, event_id)
        assert row is not None
        return row


def balance(database: Database, external_id: str) -> int:
    with database.sessions() as session:
        return int(
            session.scalar(select(Member.points_balance).where(Member.external_id == external_id))
            or 0
        )


def test_a_failing_event_is_parked_and_the_members_later_events_go_on(
    app: App, clock: FrozenClock
) -> None:
    member = make_member(app, external_id="m-1")
    app.settings = make_settings(app.database, max_retries=3, retry_min_backoff_ms=10)
    runtime.configure(app)
    broker = build_broker(app.settings)
    bad_id = store_raw(app.database, member.id, "bad-1", BAD_REDEEM)

    with embedded_worker(broker, threads=2):
        actors.send("process_event", bad_id)
        emit(app, EventInput("order.completed", "m-1", id="e-2", data=ORDER))

    # The order behind it was applied; the bad event is parked with its reason
    assert balance(app.database, "m-1") == 40
    bad = event_row(app.database, bad_id)
    assert bad.processed_at is None and bad.parked_at == clock.now()
    assert bad.error is not None and bad.error.startswith("ValueError: ")
    [dead] = list_dead_letters(app.database)
    assert (dead.actor, dead.args["args"]) == ("process_event", [bad_id])
    [summary] = describe_events(app, [bad_id])
    assert str(summary).startswith(f"event {bad_id} reward.redeemed [shop/bad-1]: parked (")

    # The relay leaves it: no re-queue every 30 s, no new dead letter each time
    clock.advance(timedelta(minutes=5))
    with embedded_worker(broker, threads=1):
        assert relay_events(app) == 0
    assert len(list_dead_letters(app.database)) == 1

    # After the fix, a replay unparks and processes it once
    with app.database.engine.begin() as connection:
        connection.execute(
            text("UPDATE events SET payload = :p WHERE id = :i"),
            {"p": '{"points": 10, "reward": "tote"}', "i": bad_id},
        )
    result = CliRunner().invoke(
        main, ["dlq", "replay", str(dead.id)], env={"DATABASE_URL": app.database.url}
    )
    assert result.exit_code == 0, result.output
    assert balance(app.database, "m-1") == 30
    fixed = event_row(app.database, bad_id)
    assert (fixed.parked_at, fixed.error) == (None, None)
    assert fixed.processed_at is not None


def test_an_event_out_of_retries_on_a_lost_database_is_not_parked(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Running out of retries during an outage is no verdict on the event: the relay
    # queues it again once the database is back.
    member = make_member(app, external_id="m-1")
    event_id = store_raw(app.database, member.id, "e-1", ORDER, "order.completed")
    app.settings = make_settings(app.database, max_retries=0)
    runtime.configure(app)
    broker = build_broker(app.settings)
    original = app.database.transaction
    # Both tries fail: the one with its steps, and the one of the event alone after it.
    failures = iter([True, True])
    lock = threading.Lock()

    def dropped():  # type: ignore[no-untyped-def]
        with lock:
            if next(failures, False):
                raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return original()

    with embedded_worker(broker, threads=1):
        monkeypatch.setattr(app.database, "transaction", dropped)
        actors.send("process_event", event_id)
    [dead] = list_dead_letters(app.database)
    assert dead.error is not None and dead.error.startswith("OperationalError")
    row = event_row(app.database, event_id)
    assert (row.processed_at, row.parked_at) == (None, None)
    monkeypatch.setattr(app.database, "transaction", original)
    with embedded_worker(broker, threads=1):
        assert relay_events(app) == 1
    assert balance(app.database, "m-1") == 40


# -- the production shape -----------------------------------------------------------------


@pytest.mark.integration
def test_loyalty_worker_parks_a_failing_event_and_the_scheduler_relay_leaves_it(
    postgres_app: App, redis_url: str, tmp_path: Path
) -> None:
    postgres = postgres_app.database
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url,
        "REDIS_URL": REDIS_URL,
        "MAX_RETRIES": "2",
        "RETRY_MIN_BACKOFF_MS": "10",
        "EVENT_RELAY_AFTER_SECONDS": "1",
        "SCHEDULER_TICK_SECONDS": "outbox_relay:1,due_enrollments:1",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    loyalty = loyalty_command()
    import_file = tmp_path / "members.csv"
    import_file.write_text("external_id,email\nm-1,ada@example.com\n")
    subprocess.run([*loyalty, "members", "import", str(import_file)], env=env, check=True)
    with postgres.sessions() as session:
        member_id = session.scalar(select(Member.id).where(Member.external_id == "m-1"))
    assert member_id is not None
    bad_id = store_raw(postgres, member_id, "bad-1", BAD_REDEEM)

    supervisor = Supervisor(env, tmp_path, tmp_path)
    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        # (a relay every second would queue the event again while no worker takes it yet)
        heartbeats = redis.Redis.from_url(REDIS_URL)
        wait_for(lambda: heartbeats.zcard("dramatiq:__heartbeats__") > 0, "the worker's consumers")
        # The scheduler's relay queues the stored event (its first run is at start-up)
        scheduler = supervisor.start("scheduler", [*loyalty, "scheduler"])
        wait_for(lambda: event_row(postgres, bad_id).parked_at is not None, logs=tmp_path)
        supervisor.stop(scheduler)  # SIGTERM: it gives the leader lock back

        # A later order of the same member is applied at once, not held behind it
        emitted = subprocess.run(
            [*loyalty, "events", "emit", "order.completed", "--member", "m-1", "--id", "e-2",
             "--data", json.dumps(ORDER), "--wait"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert emitted.returncode == 0, emitted.stderr
        assert "processed, points +40" in emitted.stdout
        assert balance(postgres, "m-1") == 40

        # A scheduler started again relays what waits (a stored order), not the parked event
        waiting_id = store_raw(
            postgres, member_id, "e-3", ORDER | {"order_id": "1002"}, "order.completed"
        )
        scheduler = supervisor.start("scheduler", [*loyalty, "scheduler"])
        wait_for(lambda: event_row(postgres, waiting_id).processed_at is not None, logs=tmp_path)
        assert balance(postgres, "m-1") == 80
        listed = subprocess.run(
            [*loyalty, "dlq", "list"], env=env, capture_output=True, text=True, check=True
        )
        assert f"process_event({bad_id},)" in listed.stdout
        assert "1 dead letter(s)" in listed.stdout
    finally:
        supervisor.stop_all()
    bad = event_row(postgres, bad_id)
    assert bad.processed_at is None and bad.parked_at is not None
    assert "ValueError" in (bad.error or "")
    assert "scheduler.tick_failed" not in "".join(p.read_text() for p in tmp_path.glob("*.log"))
