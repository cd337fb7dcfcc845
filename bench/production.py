"""The production shape that benchmarks and production tests run: `loyalty` processes on
PostgreSQL and Redis, with journeys published, in the environment an operator gives them.

A benchmark takes a `Stack` of its own (`stack`): a throwaway database on
BENCH_POSTGRES_URL, a redis-server of its own and a temporary folder. A production test
brings its database and Redis (fixtures): `Stack.of(app, redis_url, tmp_path)`. Both
start the processes with `Stack.processes`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from automations.versions import publish
from bench.soak_processes import WORKER_PROCESSES, RedisServer, Supervisor, free_port
from loyalty.app import App
from loyalty.clock import Clock, SystemClock
from loyalty.db import Database, upgrade
from loyalty.settings import Settings, load_settings

if TYPE_CHECKING:
    from sandbox.sendgrid import SendGridSandbox

__all__ = [
    "POSTGRES_URL",
    "SetupError",
    "Stack",
    "load_average",
    "process_environment",
    "stack",
    "temporary_database",
    "wait_for_workers",
]

#: The PostgreSQL server the benchmarks make their databases on (without a database).
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


class SetupError(RuntimeError):
    """A service a benchmark needs could not be set up (a database it cannot create, say)."""


@contextlib.contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A database of its own on the server at `server_url`, dropped at the end; its URL."""
    name = f"loyalty_soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    try:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except OperationalError as exc:
            raise SetupError(f"cannot create a database on {server_url}: {exc.orig}") from exc
        try:
            yield f"{server_url}/{name}"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def process_environment(**settings: str) -> dict[str, str]:
    """This environment without any program setting, then `settings` (names in capitals)."""
    known = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in known}
    env.update(settings)
    return env


def wait_for_workers(
    redis_url: str, processes: int = WORKER_PROCESSES, timeout: float = 60.0
) -> None:
    """Until `processes` worker processes beat on this Redis (or `timeout` passed), and their
    threads settled on their queues."""
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while client.zcard("dramatiq:__heartbeats__") < processes and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        client.close()
    time.sleep(1.0)  # the processes' threads settle on their queues


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user and system) used so far by these processes and all their descendants
    still running (Linux `/proc`); 0 where it cannot be read. Unlike wall time, it moves
    little with other work on the machine."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    ticks, seen, todo = 0, set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """Where `loyalty` processes run: a database (migrated), a Redis, a folder for their
    outbox and logs, and the journeys folder."""

    root: Path
    database: Database
    redis_url: str
    journeys: Path

    @classmethod
    def of(cls, app: App, redis_url: str, root: Path) -> Stack:
        """The stack of an app (its database and journeys) with this Redis and folder."""
        return cls(root, app.database, redis_url, app.settings.journeys_dir)

    @property
    def database_url(self) -> str:
        return self.database.url

    def app(self, clock: Clock | None = None, **settings: object) -> App:
        """An app on the database with these settings (besides the database and journeys)
        whose journeys are published."""
        overrides = {"database_url": self.database_url, "journeys_dir": self.journeys}
        app = App(load_settings(**{**overrides, **settings}), self.database, clock or SystemClock())
        publish(app, self.journeys)
        return app

    def environment(
        self, *, sendgrid: SendGridSandbox | None = None, **settings: str
    ) -> dict[str, str]:
        """The environment of `loyalty` processes on this stack: its database, Redis and
        journeys, the outbox in the folder, SendGrid's emulator when given, the sender's
        name and address, warnings only in the logs; then `settings` (names in capitals)."""
        env = process_environment(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            JOURNEYS_DIR=str(self.journeys),
            OUTBOX_DIR=str(self.root / "outbox"),
            EMAIL_FROM="club@example.com",
            POSTAL_ADDRESS="1 Main St, Springfield",
            LOG_LEVEL="WARNING",
        )
        if sendgrid is not None:
            env.update(SENDGRID_API_KEY=sendgrid.api_key, SENDGRID_BASE_URL=sendgrid.base_url)
        env.update(settings)
        return env

    @contextlib.contextmanager
    def processes(
        self, *roles: str, sendgrid: SendGridSandbox | None = None, **settings: str
    ) -> Iterator[Supervisor]:
        """`loyalty` processes in `environment(...)`, one for each of `roles` ("worker": two
        processes of four threads, "scheduler"), their logs in the folder's `logs`; all
        stopped at the end."""
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        env = self.environment(sendgrid=sendgrid, **settings)
        with Supervisor(env, self.root, logs) as supervisor:
            starts = {"worker": supervisor.worker, "scheduler": supervisor.scheduler}
            for role in roles:
                starts[role]()
            yield supervisor


@contextlib.contextmanager
def stack(journeys: Callable[[Path], Path], postgres_url: str = POSTGRES_URL) -> Iterator[Stack]:
    """A fresh database on `postgres_url` and a redis-server of its own; `journeys` writes the
    journeys into the folder it is given and returns it. All is dropped at the end."""
    with tempfile.TemporaryDirectory() as folder, temporary_database(postgres_url) as url:
        root = Path(folder)
        redis_server = RedisServer(free_port(), root)
        redis_server.start()
        database = Database(url)
        try:
            upgrade(database)
            yield Stack(root, database, redis_server.url, journeys(root / "journeys"))
        finally:
            database.dispose()
            redis_server.kill()
