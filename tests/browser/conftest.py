"""A real `loyalty serve`, worker and scheduler on PostgreSQL and Redis, and Debian's Chromium.

The console is driven through Playwright with `executable_path` pointing at the
system Chromium (`make test` installs it with apt when it is missing; Playwright's
own browser download is not used). Screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from bench.soak_processes import Supervisor, free_port, loyalty_command
from loyalty.db import Database, upgrade
from tests.conftest import POSTGRES_URL, REDIS_URL, require_service
from tests.console.support import PASSWORD, SECRET
from tests.processes import answers, wait_for

#: Debian's Chromium (`apt-get install chromium`; `make chromium`).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"
ROLES = ("viewer", "marketer", "operator")
#: Days from today to w-new's birthday.
SOON_DAYS = 3


def email_of(role: str) -> str:
    return f"{role}@example.com"


@dataclass
class Site:
    """The running processes, their database and how to call the CLI with their settings."""

    base: str
    database: Database
    env: dict[str, str]
    logs: Path
    zone: str
    today: str

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*loyalty_command(), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout


def zone_after_nine() -> tuple[str, str]:
    """A fixed-offset zone where it is now between 10:00 and 22:59, and its local date.

    A member whose birthday is that date enters the birthday journey at once: its 09:00
    has passed and the day lasts (DATE_TRIGGERS_CATCH_UP).
    """
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        local = now + timedelta(hours=offset)
        if 10 <= local.hour <= 22:
            return f"Etc/GMT{-offset:+d}", local.strftime("%Y-%m-%d")
    raise AssertionError("some offset always has local time between 10:00 and 22:59")


def soon_birthday() -> str:
    """A birthday three days from now (UTC): inside a simulated week, not today."""
    soon = datetime.now(UTC).date() + timedelta(days=SOON_DAYS)
    return f"2000-{soon:%m-%d}"


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM} and could not be installed "
            "(`make chromium` runs `apt-get install -y chromium`)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    folder = tmp_path_factory.mktemp("console")
    name = f"loyalty_console_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{POSTGRES_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(f"{POSTGRES_URL}/{name}")
    upgrade(database)
    queues = redis.Redis.from_url(REDIS_URL)
    queues.flushdb()
    zone, today = zone_after_nine()
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "CONSOLE_SECRET": SECRET,
        "JOURNEYS_DIR": str(JOURNEYS),
        "OUTBOX_DIR": str(folder / "outbox"),
        "LOG_LEVEL": "WARNING",
        "SMS_QUIET_HOURS": "",
    }
    port = free_port()
    found = Site(f"http://127.0.0.1:{port}", database, env, folder, zone, today)
    for role in ROLES:
        found.cli(
            "users", "create", "--email", email_of(role), "--role", role, "--password-stdin",
            stdin=PASSWORD + "\n",
        )  # fmt: skip
    # Two members whose birthday is today where they live: one agreed to email, one did not.
    members = folder / "members.csv"
    members.write_text(
        "external_id,email,first_name,time_zone,birthday,email_consent,sms_consent\n"
        f"b-yes,yes@example.com,Ada,{zone},{today},yes,no\n"
        f"b-no,no@example.com,Bob,{zone},{today},no,no\n"
        f"w-new,new@example.com,Cy,UTC,{soon_birthday()},yes,no\n",
        encoding="utf-8",
    )
    found.cli("members", "import", str(members))
    supervisor = Supervisor(env, folder, folder)
    try:
        supervisor.start("serve", [*loyalty_command(), "serve", "--port", str(port)])
        supervisor.start(
            "worker", [*loyalty_command(), "worker", "--processes", "1", "--threads", "2"]
        )
        supervisor.start("scheduler", [*loyalty_command(), "scheduler"])
        wait_for(lambda: answers(f"{found.base}/healthz"), "loyalty serve to answer", logs=folder)
        yield found
    finally:
        supervisor.stop_all()
        queues.flushdb()
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
