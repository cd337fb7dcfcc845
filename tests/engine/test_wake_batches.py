"""The wake-up tick queues the enrollments whose wait is over a batch per message.

Each woken enrollment still runs once and sends its one email; one that cannot run
fails on its own, holds none of the others, and lands in the dead letters alone.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from automations import runtime
from automations.intake import emit
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.dead_letters import list_dead_letters, replay
from automations.runtime.ticks import wake_enrollments
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.models import Enrollment
from loyalty.step_counts import entered_by_step
from tests.engine.helpers import enrollments, journey_folder, messages, published, workers
from tests.factories import make_member

LATER = """
id: later
name: Later
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: pause, type: wait, duration: 2d}
  - {id: mail, type: send_email, template: hello}
"""
HELLO = {"en/hello.email": "---\nsubject: Hi\n---\n<p>Hi</p>\n"}


def waiting_members(app: App, tmp_path: Path, count: int) -> list[int]:
    """`count` members who entered the journey and wait two days in it; their enrollments."""
    published(app, journey_folder(tmp_path, {"later": LATER}, HELLO))
    made = [
        make_member(app, email=f"w{n}@example.com", email_consent=True).external_id
        for n in range(count)
    ]
    with workers(app):
        for external_id in made:
            emit(app, EventInput("member.enrolled", external_id, id=f"e-{external_id}"))
    rows = enrollments(app)
    assert Counter(e.state for e in rows) == Counter({"waiting": count})
    return [e.id for e in rows]


def queued(broker: StubBroker, queue: str) -> list[dramatiq.Message[Any]]:
    """The messages waiting on an in-process queue, oldest first."""
    return [dramatiq.Message.decode(data) for data in list(broker.queues[queue].queue)]


def outbox_files(app: App) -> list[Path]:
    return [p for p in app.settings.outbox_dir.rglob("*") if p.is_file()]


def test_enrollments_waking_together_are_queued_in_batches_and_each_run_once(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given 40 enrollments whose two-day wait ends at the same moment, and workers of 4 threads
    app.settings = app.settings.model_copy(update={"worker_processes": 1, "worker_threads": 4})
    waiting = waiting_members(app, tmp_path, 40)
    clock.advance(timedelta(days=2, minutes=1))
    runtime.configure(app)
    broker = build_broker(app.settings)
    assert isinstance(broker, StubBroker)

    # When the wake-up tick runs twice before any worker takes its messages
    assert (wake_enrollments(app), wake_enrollments(app)) == (40, 0)

    # Then the first tick queued four messages of ten enrollments, one for each worker
    # thread, and the second left them to those messages
    sent = queued(broker, "journeys")
    assert [m.actor_name for m in sent] == ["run_enrollments"] * 4
    assert [len(m.args[0]) for m in sent] == [10] * 4
    assert sorted(i for m in sent for i in m.args[0]) == sorted(waiting)

    # When those messages are lost (with Redis, say), a tick a relay interval later queues
    # the enrollments again
    broker.flush_all()
    assert wake_enrollments(app) == 0
    clock.advance(timedelta(seconds=app.settings.event_relay_after_seconds + 1))
    assert wake_enrollments(app) == 40
    assert [len(m.args[0]) for m in queued(broker, "journeys")] == [10] * 4

    # When the workers run them
    with embedded_worker(broker, threads=2):
        pass

    # Then every enrollment ran once: completed, one email each, sent once
    rows = enrollments(app)
    assert Counter(e.state for e in rows) == Counter({"completed": 40})
    sent_mail = messages(app)
    assert sorted(m.enrollment_id or 0 for m in sent_mail) == sorted(waiting)
    assert Counter(m.state for m in sent_mail) == Counter({"sent": 40})
    assert len(outbox_files(app)) == 40
    assert list_dead_letters(app.database) == []
    assert wake_enrollments(app) == 0


def test_an_enrollment_that_cannot_run_holds_none_of_the_others_and_fails_alone(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given 30 waiting enrollments, one of which points at a step its version does not have
    app.settings = app.settings.model_copy(update={"worker_processes": 1, "worker_threads": 2})
    waiting = waiting_members(app, tmp_path, 30)
    broken = waiting[7]
    with app.database.transaction() as session:
        row = session.get_one(Enrollment, broken)
        row.context = {**row.context, "resume": "no_such_step"}
    clock.advance(timedelta(days=2, minutes=1))

    # When the wake-up tick runs (two batches of 15) and the workers take them
    with workers(app):
        assert wake_enrollments(app) == 30

    # Then the other 29 ran and sent their one email each
    states = {e.id: e.state for e in enrollments(app)}
    assert Counter(s for i, s in states.items() if i != broken) == Counter({"completed": 29})
    assert states[broken] == "waiting"
    with app.database.sessions() as session:
        assert entered_by_step(session, "later") == {"pause": 30, "mail": 29}
    sent_mail = messages(app)
    assert sorted(m.enrollment_id or 0 for m in sent_mail) == sorted(set(waiting) - {broken})
    assert Counter(m.state for m in sent_mail) == Counter({"sent": 29})
    # And the broken one is dead-lettered alone, under its own actor, and not its batch
    [dead] = list_dead_letters(app.database)
    assert (dead.actor, dead.args["args"]) == ("run_enrollment", [broken])
    assert "no_such_step" in (dead.error or "")

    # And later wake-up ticks leave it: it is not run, and dead-lettered, again at each tick
    with app.database.sessions() as session:
        assert session.get_one(Enrollment, broken).parked_at is not None
    clock.advance(timedelta(minutes=5))
    assert wake_enrollments(app) == 0

    # When the fault is fixed and the dead letter replayed, it runs once and sends its email
    with app.database.transaction() as session:
        row = session.get_one(Enrollment, broken)
        row.context = {**row.context, "resume": "mail"}
    runtime.configure(app)
    broker = build_broker(app.settings)
    with embedded_worker(broker, threads=2):
        replay(app.database, broker, dead.id, now=app.clock.now())
    replayed = session_enrollment(app, broken)
    assert (replayed.state, replayed.parked_at) == ("completed", None)
    assert len([m for m in messages(app) if m.enrollment_id == broken]) == 1


def session_enrollment(app: App, enrollment_id: int) -> Enrollment:
    with app.database.sessions() as session:
        return session.get_one(Enrollment, enrollment_id)
