"""The scheduler: one leader at a time, takeover when it dies, ticks that only queue work."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest
import redis
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import func, select

from automations import runtime
from automations.intake import emit
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.leader import (
    LOCK_NAME,
    FileLeaderLock,
    LeaderLock,
    PostgresLeaderLock,
    RedisLeaderLock,
)
from automations.runtime.ticks import expire_points, relay_events
from bench.soak_processes import loyalty_command
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from loyalty.event_types import EventInput
from loyalty.events import record_event
from loyalty.models import Event, LedgerEntry, Member, RetryWait
from scheduler import Scheduler
from tests.conftest import make_settings
from tests.factories import make_member
from tests.processes import wait_for


def build_locks(kind: str, app: App, tmp_path: Path, redis_url: str | None) -> list[LeaderLock]:
    if kind == "file":
        return [FileLeaderLock(tmp_path / "db.scheduler.lock") for _ in range(2)]
    if kind == "redis":
        assert redis_url is not None
        return [RedisLeaderLock(redis_url, ttl_seconds=5) for _ in range(2)]
    return [PostgresLeaderLock(Database(app.database.url)) for _ in range(2)]


@pytest.mark.parametrize("kind", ["file", "postgres", "redis"])
def test_a_second_scheduler_waits_then_takes_over(
    kind: str, app: App, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "postgres" and app.database.is_sqlite:
        pytest.skip("advisory locks are PostgreSQL's")
    if kind == "file" and not app.database.is_sqlite:
        pytest.skip("the file lock sits beside a SQLite database")
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    first_lock, second_lock = build_locks(kind, app, tmp_path, redis_url)
    runtime.configure(app)
    build_broker(app.settings)
    first = Scheduler(app, first_lock, poll_seconds=0.1)
    second = Scheduler(app, second_lock, poll_seconds=0.1)
    threads = [threading.Thread(target=s.run, daemon=True) for s in (first, second)]
    threads[0].start()
    assert first.is_leader.wait(10)
    threads[1].start()
    time.sleep(0.5)  # several lock polls: the second had its chances and waited
    assert not second.is_leader.is_set()

    first.stop()  # the leader goes away
    threads[0].join(10)
    assert second.is_leader.wait(15)
    second.stop()
    threads[1].join(10)


@pytest.mark.integration
def test_a_dead_redis_leader_is_replaced_when_its_lock_expires(redis_url: str) -> None:
    first, second = RedisLeaderLock(redis_url, 5), RedisLeaderLock(redis_url, 5)
    assert first.acquire()
    assert not second.acquire()
    # The first process dies without releasing: its key expires.
    redis.Redis.from_url(redis_url).pexpire("loyalty:scheduler:leader", 50)
    time.sleep(0.2)
    assert second.acquire()
    assert not first.refresh()  # a leader that comes back learns it lost the lock


def test_the_relay_queues_events_no_worker_processed(app: App, clock: FrozenClock) -> None:
    make_member(app, external_id="m-1")
    # Given an event stored while Redis was down: committed but never queued
    with app.database.transaction() as session:
        record_event(
            session,
            EventInput(
                "order.completed",
                "m-1",
                id="e-1",
                data={"order_id": "1", "total": "30", "currency": "EUR"},
            ),
            settings=app.settings,
            now=app.clock.now(),
        )
    runtime.configure(app)
    broker = build_broker(app.settings)
    with embedded_worker(broker, threads=1):
        assert relay_events(app) == 0  # too fresh: its own message may still be on the way
        clock.advance(timedelta(seconds=app.settings.event_relay_after_seconds))
        assert relay_events(app) == 1
    with app.database.sessions() as session:
        assert session.scalar(select(Event.processed_at)) is not None
        assert session.scalar(select(Member.points_balance)) == 30
    assert relay_events(app) == 0


def test_the_relay_leaves_an_event_to_its_own_delayed_retry(app: App, clock: FrozenClock) -> None:
    make_member(app, external_id="m-1")
    with app.database.transaction() as session:
        event, _ = record_event(
            session,
            EventInput("member.enrolled", "m-1", id="e-1"),
            settings=app.settings,
            now=app.clock.now(),
        )
        event_id = event.id
    runtime.configure(app)
    broker = build_broker(app.settings)
    relay_after = timedelta(seconds=app.settings.event_relay_after_seconds)
    clock.advance(relay_after)
    # Given the event's processing failed and Dramatiq queued its retry for 10 minutes on
    # (as its Retries middleware does, with the retry count in the message's options)
    retry = broker.get_actor("process_event").message(event_id).copy(options={"retries": 3})
    broker.enqueue(retry, delay=10 * 60_000)
    # Then the relay leaves it to that retry, until the retry should have run
    assert relay_events(app) == 0
    assert retry_notes(app) == [("process_event", event_id)]
    clock.advance(timedelta(minutes=10) + relay_after)
    assert relay_events(app) == 1  # the retry was lost (with Redis, say): the relay takes over
    # And the note of that retry, which holds nothing back any more, is gone
    assert retry_notes(app) == []


def retry_notes(app: App) -> list[tuple[str, int]]:
    with app.database.sessions() as session:
        rows = session.execute(select(RetryWait.actor, RetryWait.row_id))
        return [(actor, row_id) for actor, row_id in rows]


def test_the_expiry_tick_expires_lots_past_their_date(app: App, clock: FrozenClock) -> None:
    make_member(app, external_id="m-1")
    app.settings = make_settings(app.database, points_expiry_days=30)
    runtime.configure(app)
    broker = build_broker(app.settings)
    with embedded_worker(broker, threads=1):
        from automations.intake import emit

        emit(
            app,
            EventInput(
                "order.completed",
                "m-1",
                id="e-1",
                data={"order_id": "1", "total": "30", "currency": "EUR"},
            ),
        )
    with embedded_worker(broker, threads=1):
        assert expire_points(app) == 0
        clock.advance(timedelta(days=30))
        assert expire_points(app) == 1
    with app.database.sessions() as session:
        assert session.scalar(select(Member.points_balance)) == 0
    assert expire_points(app) == 0


def test_expiries_due_together_are_queued_a_batch_per_message(app: App, clock: FrozenClock) -> None:
    # Given 12 members whose points expire at the same moment, and workers of 4 threads
    app.settings = make_settings(
        app.database, points_expiry_days=30, worker_processes=1, worker_threads=4
    )
    runtime.configure(app)
    broker = build_broker(app.settings)
    assert isinstance(broker, StubBroker)
    with embedded_worker(broker, threads=2):
        for n in range(12):
            make_member(app, external_id=f"m-{n}")
            order = {"order_id": str(n), "total": "30", "currency": "EUR"}
            emit(app, EventInput("order.completed", f"m-{n}", id=f"e-{n}", data=order))
    clock.advance(timedelta(days=30))

    # When the expiry tick runs, it queues one message for each worker thread
    assert expire_points(app) == 12
    queued = [dramatiq.Message.decode(data) for data in list(broker.queues["points"].queue)]
    assert [(m.actor_name, len(m.args[0])) for m in queued] == [("expire_members_points", 3)] * 4

    # Then once the workers ran them, every member's points expired, once
    with embedded_worker(broker, threads=2):
        pass
    with app.database.sessions() as session:
        assert set(session.scalars(select(Member.points_balance))) == {0}
        assert session.scalar(select(func.count()).where(LedgerEntry.kind == "expire")) == 12
    assert expire_points(app) == 0


def test_scheduler_list_names_every_job_and_its_interval() -> None:
    result = CliRunner().invoke(main, ["scheduler", "--list"])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    for name in (
        "outbox_relay",
        "expire_points",
        "due_enrollments",
        "date_triggers",
        "cron_journeys",
        "crm_push",
        "crm_pull",
    ):
        assert "active" in lines[name]
    assert "every   300s" in lines["crm_push"]


def test_scheduler_tick_seconds_sets_a_jobs_interval_and_refuses_unknown_jobs() -> None:
    env = {"SCHEDULER_TICK_SECONDS": "outbox_relay:5,crm_push:42"}
    result = CliRunner().invoke(main, ["scheduler", "--list"], env=env)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "every     5s" in lines["outbox_relay"]
    assert "every    42s" in lines["crm_push"]  # over CRM_PUSH_MINUTES
    assert "every    30s" in lines["due_enrollments"]

    refused = CliRunner().invoke(
        main, ["scheduler", "--list"], env={"SCHEDULER_TICK_SECONDS": "outbox_rely:5"}
    )
    assert refused.exit_code != 0
    [line] = refused.output.strip().splitlines()
    assert "'outbox_rely'" in line and "outbox_relay" in line and "Traceback" not in line


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError("redis-server did not start")


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_scheduler_outlives_redis_going_away_and_leads_again_when_it_is_back(
    app: App,
) -> None:
    # Given a scheduler whose leader lock lives in a Redis that is not there yet
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    app.settings = make_settings(app.database, redis_url=url, scheduler_lock_ttl_seconds=5)
    scheduler = Scheduler(app, lock=RedisLeaderLock(url, ttl_seconds=5), poll_seconds=0.2)
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        assert thread.is_alive() and not scheduler.is_leader.is_set()
        # When Redis comes up, it leads
        server = _start_redis(port)
        assert scheduler.is_leader.wait(30)
        # When Redis goes away, it stops leading but keeps running
        server.kill()
        server.wait()
        deadline = time.monotonic() + 30
        while scheduler.is_leader.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not scheduler.is_leader.is_set()
        assert thread.is_alive()
        # And when Redis is back, it takes the lock again
        server = _start_redis(port)
        assert scheduler.is_leader.wait(30)
    finally:
        scheduler.stop()
        thread.join(15)
        server.kill()
    assert not thread.is_alive()


@pytest.mark.integration
def test_loyalty_scheduler_gives_the_lock_back_on_sigterm(
    postgres_app: App, redis_url: str, tmp_path: Path
) -> None:
    # Given `loyalty scheduler` leading through its Redis lock
    env = {
        **os.environ,
        "DATABASE_URL": postgres_app.database.url,
        "REDIS_URL": redis_url,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    locks = redis.Redis.from_url(redis_url)
    with (tmp_path / "scheduler.log").open("wb") as log:
        process = subprocess.Popen(
            [*loyalty_command(), "scheduler"], env=env, cwd=tmp_path, stdout=log, stderr=log
        )
        try:
            wait_for(lambda: locks.exists(LOCK_NAME) == 1, "the scheduler to lead", logs=tmp_path)
            # When its supervisor stops it
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()
            process.wait()
    # Then the lock is free for the next scheduler at once, not after its TTL
    assert locks.exists(LOCK_NAME) == 0
