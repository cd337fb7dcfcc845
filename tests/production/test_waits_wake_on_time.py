"""The production shape: a short journey `wait` ends on time through `loyalty worker` alone.

No scheduler runs here, so no wake-up tick could have woken the enrollment: the
worker queued its own delayed message when the wait began.
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.soak_processes import Supervisor, loyalty_command
from loyalty.app import App
from loyalty.db import Database
from loyalty.models import Enrollment, LedgerEntry, Member
from tests.conftest import REDIS_URL
from tests.processes import wait_for

JOURNEY = """\
id: thanks_later
name: Thanks, a moment later
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: pause, type: wait, duration: 3s}
  - {id: bonus, type: award_points, amount: 25, reason: Thanks for joining}
"""


def bonus_entries(database: Database) -> list[LedgerEntry]:
    with database.sessions() as session:
        return list(
            session.scalars(
                select(LedgerEntry)
                .join(Member, Member.id == LedgerEntry.member_id)
                .where(Member.external_id == "m-1", LedgerEntry.delta == 25)
            )
        )


@pytest.mark.integration
def test_a_short_wait_ends_on_time_with_no_scheduler_running(
    postgres_app: App, redis_url: str, tmp_path: Path
) -> None:
    database = postgres_app.database
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "thanks_later.yaml").write_text(JOURNEY, encoding="utf-8")
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "JOURNEYS_DIR": str(folder),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "LOG_LEVEL": "INFO",
    }
    loyalty = loyalty_command()

    def run(*args: str) -> None:
        done = subprocess.run(
            [*loyalty, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr

    run("journeys", "publish")
    (tmp_path / "members.csv").write_text("external_id,email\nm-1,ada@example.com\n")
    run("members", "import", str(tmp_path / "members.csv"))
    supervisor = Supervisor(env, tmp_path, tmp_path)
    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        run("events", "emit", "member.enrolled", "--member", "m-1", "--id", "e-1")
        # The wait began; no scheduler runs, and the points still come once it is over
        wait_for(lambda: bool(bonus_entries(database)), "the bonus after the wait", logs=tmp_path)
    finally:
        supervisor.stop_all()
    [entry] = bonus_entries(database)
    with database.sessions() as session:
        enrollment = session.scalars(select(Enrollment)).one()
    assert enrollment.state == "completed"
    waited = entry.created_at - enrollment.entered_at
    assert timedelta(seconds=3) <= waited < timedelta(seconds=60)
