"""The worker runtime: replays are harmless, failures are retried or dead-lettered."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from click.testing import CliRunner
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from automations import runtime
from automations.intake import emit
from automations.runtime import actors
from automations.runtime import broker as broker_module
from automations.runtime.broker import build_broker, drain, embedded_worker
from automations.runtime.dead_letters import list_dead_letters
from cli import main
from loyalty.app import App
from loyalty.event_types import EventInput
from loyalty.models import DeadLetter, Event, LedgerEntry, Member
from tests.conftest import make_settings
from tests.factories import make_member

ORDER = {"order_id": "1001", "total": "40", "currency": "EUR"}


def balance(app: App, external_id: str) -> int:
    with app.database.sessions() as session:
        return int(
            session.scalar(select(Member.points_balance).where(Member.external_id == external_id))
            or 0
        )


def test_replaying_an_actor_message_changes_nothing(app: App) -> None:
    make_member(app, external_id="m-1")
    runtime.configure(app)
    broker = build_broker(app.settings)
    with embedded_worker(broker, threads=2):
        event, _ = emit(app, EventInput("order.completed", "m-1", id="e-1", data=ORDER))
        # At-least-once delivery: the same message arrives three more times.
        for _ in range(3):
            actors.send("process_event", event.id)
    assert balance(app, "m-1") == 40
    with app.database.sessions() as session:
        assert session.scalar(select(func.count(LedgerEntry.id))) == 1


def test_a_transient_failure_is_retried(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    make_member(app, external_id="m-1")
    app.settings = make_settings(app.database, max_retries=3, retry_min_backoff_ms=10)
    runtime.configure(app)
    broker = build_broker(app.settings)
    original = app.database.transaction
    failures = iter([True, True])
    lock = threading.Lock()

    def flaky():  # type: ignore[no-untyped-def]
        # The database drops the first two connections, as a restarting server would.
        with lock:
            if next(failures, False):
                raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return original()

    with embedded_worker(broker, threads=1):
        emit(app, EventInput("order.completed", "m-1", id="e-1", data=ORDER))
        monkeypatch.setattr(app.database, "transaction", flaky)
    drain(broker)
    assert balance(app, "m-1") == 40
    assert list_dead_letters(app.database) == []


def rename_table(app: App, old: str, new: str) -> None:
    with app.database.engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_a_failure_is_dead_lettered_and_replayed_after_the_fix(app: App) -> None:
    make_member(app, external_id="m-1")
    app.settings = make_settings(app.database, max_retries=1, retry_min_backoff_ms=10)
    runtime.configure(app)
    broker = build_broker(app.settings)
    # Given a schema the worker cannot write to (a botched migration, say)
    rename_table(app, "points_ledger", "points_ledger_away")
    try:
        with embedded_worker(broker, threads=1):
            event, _ = emit(app, EventInput("order.completed", "m-1", id="e-1", data=ORDER))
    finally:
        rename_table(app, "points_ledger_away", "points_ledger")
    # Then the message lands in the dead letters with its error, and nothing was applied
    [dead] = list_dead_letters(app.database)
    assert (dead.actor, dead.args["args"]) == ("process_event", [event.id])
    assert "points_ledger" in (dead.error or "")
    assert balance(app, "m-1") == 0

    # When the operator replays it after the fix, it is applied once
    env = {"DATABASE_URL": app.database.url}
    result = CliRunner().invoke(main, ["dlq", "list"], env=env)
    assert f"process_event({event.id},)" in result.output and "1 dead letter(s)" in result.output
    result = CliRunner().invoke(main, ["dlq", "replay", str(dead.id)], env=env)
    assert result.exit_code == 0, result.output
    assert balance(app, "m-1") == 40
    assert list_dead_letters(app.database) == []
    with app.database.sessions() as session:
        replayed = session.scalar(select(DeadLetter.replayed_at))
    assert replayed is not None


@pytest.mark.integration
def test_events_go_through_redis_to_a_worker(app: App, redis_url: str) -> None:
    make_member(app, external_id="m-1")
    app.settings = make_settings(app.database, redis_url=redis_url)
    runtime.configure(app)
    broker = build_broker(app.settings)
    assert isinstance(broker, RedisBroker)
    emit(app, EventInput("order.completed", "m-1", id="e-1", data=ORDER))
    assert balance(app, "m-1") == 0  # queued in Redis, not processed yet
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while balance(app, "m-1") != 40 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        broker.close()
    assert balance(app, "m-1") == 40


def test_events_stored_while_redis_is_down_wait_for_the_relay_and_nothing_is_lost(
    app: App, tmp_path: Path
) -> None:
    # Given a member, and a REDIS_URL where nothing listens
    make_member(app, external_id="m-1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"DATABASE_URL": app.database.url, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    lines = [
        {
            "type": "order.completed",
            "member": "m-1",
            "id": f"e-{n}",
            "data": ORDER | {"order_id": f"o-{n}"},
        }
        for n in range(3)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    # When events are emitted and ingested
    emitted = CliRunner().invoke(
        main,
        [
            "events",
            "emit",
            "order.completed",
            "--member",
            "m-1",
            "--id",
            "e-x",
            "--data",
            json.dumps(ORDER),
        ],
        env=env,
    )
    ingested = CliRunner().invoke(main, ["events", "ingest", str(path)], env=env)

    # Then each command stores its events, says the relay will queue them, and succeeds
    assert emitted.exit_code == 0, emitted.output
    assert "relay will queue them" in emitted.stderr
    assert "queued" in emitted.stdout  # the event is stored, not yet processed
    assert ingested.exit_code == 0, ingested.output
    assert "3 lines: 3 stored" in ingested.stdout
    assert "3 event(s) stored" in ingested.stderr
    with app.database.sessions() as session:
        stored = session.scalars(select(Event).order_by(Event.id)).all()
    assert [e.external_id for e in stored] == ["e-x", "e-0", "e-1", "e-2"]
    assert all(e.processed_at is None for e in stored)  # the relay tick picks them up


def _counted_fetches(broker: dramatiq.Broker) -> Counter[str]:
    """Fetches from Redis by queue, counted from now on."""
    fetches: Counter[str] = Counter()
    fetch = broker.do_fetch  # type: ignore[attr-defined]

    def counted(queue_name: str, prefetch: int) -> Any:
        fetches[queue_name] += 1
        return fetch(queue_name, prefetch)

    broker.do_fetch = counted  # type: ignore[attr-defined]
    return fetches


def test_idle_consumers_wait_for_wake_ups_and_poll_redis_seldom(app: App, redis_url: str) -> None:
    # Given a Redis broker whose fetches from Redis are counted by queue
    app.settings = make_settings(app.database, redis_url=redis_url)
    runtime.configure(app)
    broker = build_broker(app.settings)
    fetches = _counted_fetches(broker)

    # When a worker looks for work every 20 ms and finds none for two seconds
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        time.sleep(2)
    finally:
        worker.stop()
        broker.close()

    # Then each queue was looked at in Redis about every 200 ms (a queued message wakes its
    # consumers), not every 20 ms
    assert {"events", "messages", "journeys", "events.DQ", "crm"} <= set(fetches)
    assert max(fetches.values()) <= 25, fetches


def test_a_queued_message_wakes_an_idle_worker_at_once(
    app: App, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose idle consumers would look at Redis again only after a minute
    monkeypatch.setattr(broker_module, "IDLE_TIMEOUT_MS", 60_000)
    app.settings = make_settings(app.database, redis_url=redis_url)
    runtime.configure(app)
    broker = build_broker(app.settings)
    done = threading.Event()
    dramatiq.actor(broker=broker, actor_name="woken", queue_name="events")(done.set)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        time.sleep(0.5)  # every consumer is waiting now
        # When a message is queued from another broker (another process)
        build_broker(app.settings)
        dramatiq.actor(actor_name="woken", queue_name="events")(lambda: None).send()

        # Then the worker runs it long before its next look
        assert done.wait(timeout=20), "the queued message did not wake the idle worker"
    finally:
        worker.stop()
        broker.close()
