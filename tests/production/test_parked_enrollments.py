"""The production shape of a parked enrollment: a run that fails for good is set aside once.

30 members wait in a journey whose wait is over. One enrollment cannot run (it points at
a step its version does not have). `loyalty scheduler`, its wake-up tick every second,
and two `loyalty worker` processes run the 29 others, each sending its email once; the
broken one lands in the dead letters once and is parked, so later ticks neither run it
nor dead-letter it again. Once the fault is fixed, `loyalty dlq replay` runs it: its
email is sent, once.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from automations.runtime.dead_letters import list_dead_letters
from automations.runtime.ticks import enter_date_journeys
from automations.versions import publish
from bench.birthday_mail import TEMPLATE, birthdays_today, message_states
from bench.production import Stack
from bench.soak_processes import loyalty_command
from loyalty.app import App
from loyalty.clock import FrozenClock, ensure_utc
from loyalty.models import Enrollment
from loyalty.scheduler_ticks import last_ticks
from sandbox.sendgrid import SendGridSandbox
from tests.engine.helpers import enrollments, journey_folder, workers
from tests.processes import wait_for
from tests.production.test_wake_batches import JOURNEY

MEMBERS = 30


def wake_ticks_since(app: App, since: datetime) -> bool:
    """Whether the wake-up tick has run (and finished) since `since`."""
    ran = {tick.name: tick for tick in last_ticks(app.database)}.get("due_enrollments")
    return ran is not None and ensure_utc(ran.finished_at) > since


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_run_that_fails_for_good_is_dead_lettered_once_and_replayed_after_the_fix(
    postgres_app: App,
    clock: FrozenClock,
    redis_url: str,
    sendgrid_sandbox: SendGridSandbox,
    tmp_path: Path,
) -> None:
    # Given 30 members whose two-day wait in a birthday journey is over
    folder = journey_folder(
        tmp_path,
        {"later": JOURNEY.format(id="later", wait="2d")},
        {"en/birthday_mail.email": TEMPLATE},
    )
    app = postgres_app
    app.settings = app.settings.model_copy(update={"journeys_dir": folder})
    publish(app, folder)
    now = datetime.now(UTC)
    birthdays_today(app, MEMBERS, on=(now - timedelta(days=2)).date())
    clock.set(now - timedelta(days=2))
    with workers(app):
        assert enter_date_journeys(app, only=("later",)) == MEMBERS
    # And one of them cannot run: it resumes at a step its version does not have
    broken = enrollments(app)[7].id
    with app.database.transaction() as session:
        row = session.get_one(Enrollment, broken)
        row.context = {**row.context, "resume": "no_such_step"}
    stack = Stack.of(app, redis_url, tmp_path)
    ticks = {"SCHEDULER_TICK_SECONDS": "due_enrollments:1"}

    with stack.processes("worker", "scheduler", sendgrid=sendgrid_sandbox, **ticks) as running:
        # When the scheduler wakes them and the workers run them
        wait_for(
            lambda: (
                message_states(app)["sent"] == MEMBERS - 1 and bool(list_dead_letters(app.database))
            ),
            "29 emails sent and a dead letter",
            timeout=300,
            logs=running.logs,
        )
        # And the wake-up tick runs a few more times
        settled = datetime.now(UTC)
        time.sleep(0.1)
        wait_for(lambda: wake_ticks_since(app, settled), "a later wake-up tick", logs=running.logs)
        again = datetime.now(UTC)
        wait_for(lambda: wake_ticks_since(app, again), "one more wake-up tick", logs=running.logs)

        # Then the broken enrollment was dead-lettered once, and parked
        [dead] = list_dead_letters(app.database)
        assert (dead.actor, dead.args["args"]) == ("run_enrollment", [broken])
        states = {e.id: (e.state, e.parked_at is not None) for e in enrollments(app)}
        assert states.pop(broken) == ("waiting", True)
        assert set(states.values()) == {("completed", False)}

        # When the fault is fixed and the dead letter replayed through the command
        with app.database.transaction() as session:
            row = session.get_one(Enrollment, broken)
            row.context = {**row.context, "resume": "greeting"}
        replayed = subprocess.run(
            [*loyalty_command(), "dlq", "replay", str(dead.id)],
            env=stack.environment(sendgrid=sendgrid_sandbox, **ticks),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert replayed.returncode == 0, replayed.stderr
        wait_for(
            lambda: message_states(app)["sent"] == MEMBERS, "the replayed email", logs=running.logs
        )

    # Then it ran once: completed, unparked, its email sent once; no new dead letter
    final = {e.id: (e.state, e.parked_at) for e in enrollments(app)}
    assert final[broken] == ("completed", None)
    assert message_states(app) == Counter({"sent": MEMBERS})
    assert list_dead_letters(app.database) == []
    addresses = Counter(
        to["email"]
        for r in sendgrid_sandbox.requests("/v3/mail/send")
        for p in r.json()["personalizations"]
        for to in p["to"]
    )
    assert set(addresses.values()) == {1} and len(addresses) == MEMBERS
