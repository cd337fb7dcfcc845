"""The production shape of date ticks and email batching: birthdays due together are
entered once, and their emails leave in full requests.

2,500 members have their birthday today. `loyalty scheduler` enters them into a
birthday journey whose one step sends an email (a batch of members per insert, a
batch of first steps per queued message); two `loyalty worker` processes of four
threads each run the enrollments and deliver the emails on PostgreSQL and Redis,
against the SendGrid emulator. Whichever worker picks a delivery up, the emails of
the step gather into SendGrid's largest requests: 1,000, 1,000 and 500. A second
scheduler, started after the first stops, runs the date tick again and enters nobody.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from automations.versions import publish
from bench.birthday_mail import birthday_journey, birthdays_today, message_states
from bench.production import Stack
from loyalty.app import App
from loyalty.models import Enrollment, Message, SchedulerTick
from sandbox.sendgrid import SendGridSandbox
from tests.processes import wait_for

MEMBERS = 2500


def date_tick(app: App) -> SchedulerTick | None:
    """The last run of the scheduler's date tick."""
    with app.database.sessions() as session:
        return session.get(SchedulerTick, "date_triggers")


def mail_sends(sandbox: SendGridSandbox) -> list[tuple[int | None, dict[str, Any]]]:
    return [(r.status, json.loads(r.body)) for r in sandbox.requests(path="/v3/mail/send")]


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_2500_birthday_emails_leave_in_three_requests_through_worker_processes(
    postgres_app: App, redis_url: str, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    # Given 2,500 members whose birthday is today, and a journey that mails them on it
    folder = birthday_journey(tmp_path / "journeys")
    app = postgres_app
    app.settings = app.settings.model_copy(update={"journeys_dir": folder})
    publish(app, folder)
    birthdays_today(app, MEMBERS)
    processes = Stack.of(app, redis_url, tmp_path).processes(
        "worker",
        "scheduler",
        sendgrid=sendgrid_sandbox,
        # The step makes its emails at the workers' pace (about 75/s here, 20 s for a
        # full request); a busy machine (two cores shared with other suites) may take
        # longer than the default 30 s, which would send a batch before it is full.
        EMAIL_BATCH_MAX_WAIT_MS="300000",
    )

    # When the scheduler's date tick enters them and two worker processes run the journey
    with processes as supervisor:
        wait_for(
            lambda: message_states(app)["sent"] == MEMBERS,
            "every birthday email sent",
            timeout=720,
            logs=supervisor.logs,
        )
        # And another scheduler takes over and runs the date tick again
        ran = date_tick(app)
        assert ran is not None
        first_holder = ran.holder
        supervisor.stop(supervisor.of("scheduler")[0])
        supervisor.scheduler()
        wait_for(
            lambda: (tick := date_tick(app)) is not None and tick.holder != first_holder,
            "the second scheduler's date tick",
            timeout=120,
            logs=supervisor.logs,
        )

    # Then each member entered once, and the second tick entered nobody
    with app.database.sessions() as session:
        entered = session.execute(select(Enrollment.member_id, Enrollment.state)).all()
    assert len(entered) == MEMBERS
    assert len({member_id for member_id, _ in entered}) == MEMBERS
    assert {state for _, state in entered} == {"completed"}
    second = date_tick(app)
    assert second is not None and (second.queued, second.error) == (0, None)

    # Then SendGrid got three requests of at most 1,000 emails (the fewest that carry 2,500),
    # each email once
    sends = mail_sends(sendgrid_sandbox)
    assert [status for status, _ in sends] == [202, 202, 202]
    sizes = [len(body["personalizations"]) for _, body in sends]
    assert sum(sizes) == MEMBERS and max(sizes) <= 1000, sizes
    sent_ids = [
        int(p["custom_args"]["message_id"]) for _, body in sends for p in body["personalizations"]
    ]
    assert len(set(sent_ids)) == MEMBERS
    assert message_states(app) == Counter({"sent": MEMBERS})
    with app.database.sessions() as session:
        assert sorted(sent_ids) == sorted(session.scalars(select(Message.id)).all())
        assert session.scalar(select(func.count(func.distinct(Message.member_id)))) == MEMBERS
