"""The production shape of the wake-up tick: many waits that end together, each woken once.

300 members entered a journey two days ago and wait two days in it, their waits all
over now (the journey since paused: no one new enters it, those in it go on); 200
more have their birthday today and enter a journey whose wait is 20 seconds.
`loyalty scheduler` wakes the first (its wake-up tick, every second here, queues them
a batch per message) and enters the second, whose short wait ends both through the
delayed message the worker queued for it and through the tick. Two `loyalty worker`
processes run them on PostgreSQL and Redis against the SendGrid emulator: each
member's email is sent once.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from automations.runtime.dead_letters import list_dead_letters
from automations.runtime.ticks import enter_date_journeys
from automations.versions import publish
from bench.birthday_mail import TEMPLATE, birthdays_today, message_states
from bench.production import Stack
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.journey_pauses import pause
from loyalty.models import Enrollment
from sandbox.sendgrid import SendGridSandbox
from tests.engine.helpers import journey_folder, workers
from tests.processes import wait_for

WAITED, SHORT = 300, 200
JOURNEY = """
id: {id}
name: {id}
status: active
locale: en
trigger: {{type: date, field: birthday, days_before: 0, at: "00:00"}}
entry: {{once_per: year}}
steps:
  - {{id: pause, type: wait, duration: {wait}}}
  - {{id: greeting, type: send_email, template: birthday_mail}}
"""


def enrollment_states(app: App) -> Counter[tuple[str, str]]:
    with app.database.sessions() as session:
        rows = session.execute(
            select(Enrollment.journey_id, Enrollment.state, func.count()).group_by(
                Enrollment.journey_id, Enrollment.state
            )
        )
        return Counter({(journey, state): count for journey, state, count in rows})


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_waits_that_end_together_wake_each_enrollment_once_through_worker_processes(
    postgres_app: App,
    clock: FrozenClock,
    redis_url: str,
    sendgrid_sandbox: SendGridSandbox,
    tmp_path: Path,
) -> None:
    # Given a journey that waits two days before its email, and one that waits 20 seconds
    journeys = {
        "two_days": JOURNEY.format(id="two_days", wait="2d"),
        "short": JOURNEY.format(id="short", wait="20s"),
    }
    folder = journey_folder(tmp_path, journeys, {"en/birthday_mail.email": TEMPLATE})
    app = postgres_app
    app.settings = app.settings.model_copy(update={"journeys_dir": folder})
    publish(app, folder)
    # And 300 members who entered the first two days ago, on their birthday: due now
    now = datetime.now(UTC)
    birthdays_today(app, WAITED, on=(now - timedelta(days=2)).date(), start=0)
    clock.set(now - timedelta(days=2))
    with workers(app):
        assert enter_date_journeys(app, only=("two_days",)) == WAITED
    assert enrollment_states(app) == Counter({("two_days", "waiting"): WAITED})
    with app.database.transaction() as session:  # no one new enters it; those in it go on
        pause(session, "two_days", by="ops@example.com", now=clock.now())
    # And 200 members whose birthday is today
    birthdays_today(app, SHORT, on=now.date(), start=WAITED)
    processes = Stack.of(app, redis_url, tmp_path).processes(
        "worker",
        "scheduler",
        sendgrid=sendgrid_sandbox,
        SCHEDULER_TICK_SECONDS="due_enrollments:1,date_triggers:1",
    )

    # When the scheduler and two worker processes of four threads run
    with processes as supervisor:
        wait_for(
            lambda: message_states(app)["sent"] == WAITED + SHORT,
            "every email sent",
            timeout=420,
            logs=supervisor.logs,
        )

    # Then every enrollment woke and completed
    assert enrollment_states(app) == Counter(
        {("two_days", "completed"): WAITED, ("short", "completed"): SHORT}
    )
    assert message_states(app) == Counter({"sent": WAITED + SHORT})
    assert list_dead_letters(app.database) == []
    # And SendGrid got each member's email once
    sends = [(r.status, json.loads(r.body)) for r in sendgrid_sandbox.requests("/v3/mail/send")]
    assert {status for status, _ in sends} == {202}
    addresses = Counter(
        to["email"] for _, body in sends for p in body["personalizations"] for to in p["to"]
    )
    assert set(addresses.values()) == {1}
    assert sorted(addresses) == sorted(f"member{n}@example.com" for n in range(WAITED + SHORT))
