"""Shared test configuration.

Database tests run once on SQLite and once on PostgreSQL. PostgreSQL and
Redis tests skip with a reason when the service is unreachable, and fail
instead when CI=true.

Under pytest-xdist (`make test` runs `pytest -n ...`) every worker is isolated: each
session makes PostgreSQL databases of its own, and worker gwN uses the Redis database N
below the one in TEST_REDIS_URL (default 15: gw0 15, gw1 14, ...).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text

from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database, upgrade
from loyalty.models import Base
from loyalty.settings import Settings, load_settings

if TYPE_CHECKING:  # imported as a plugin below, before assertion rewriting would see it
    from sandbox.pytest_plugin import AcceptedCheck
pytest_plugins = ["sandbox.pytest_plugin"]

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")


def worker_redis_url(url: str, worker: str) -> str:
    """The Redis database of xdist worker `worker` ("gw2"): N below the one in `url` for gwN.

    Outside xdist (`worker` empty) it is `url` itself.
    """
    if not worker:
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or "0")
    number = base - int(worker.removeprefix("gw"))
    if number < 0:
        raise pytest.UsageError(
            f"TEST_REDIS_URL {url} leaves no Redis database for xdist worker {worker}:"
            " use a higher database number or fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{number}"))


REDIS_URL = worker_redis_url(
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("PYTEST_XDIST_WORKER", ""),
)
IN_CI = os.environ.get("CI", "").lower() == "true"
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

#: Modules that run their own processes for minutes (the soak, the console in Chromium, the
#: production shape: tests/production and *_production.py), longest first: under
#: pytest-xdist they then overlap the rest of the suite instead of finishing it alone.
LONG_FIRST = ("production/test_soak.py", "browser/", "production")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        if not item.path.is_relative_to(tests):
            return len(LONG_FIRST)
        where = item.path.relative_to(tests).as_posix()
        return next((i for i, p in enumerate(LONG_FIRST) if p in where), len(LONG_FIRST))

    items.sort(key=rank)


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is down on a laptop; fail under CI=true."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: integration tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "loyalty.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"loyalty_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{POSTGRES_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{POSTGRES_URL}/{name}"
    database = Database(url)
    upgrade(database)
    database.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "loyalty.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        database = Database(f"sqlite:///{path}")
    else:
        database = _emptied(request.getfixturevalue("postgres_database"))
    yield database
    database.dispose()


#: Tables that triggers write to when rows of other tables are deleted: emptied last.
TRIGGER_FED = ("message_counts",)


_databases: dict[str, Database] = {}


def _emptied(url: str) -> Database:
    """The database with no rows and every id sequence back at 1.

    DELETE rather than TRUNCATE: a test leaves a few rows, which DELETE removes in
    milliseconds, while TRUNCATE of every table takes about 0.3 s per test. Only the
    sequences a test drew from are set back, with `setval` (no catalog change, where
    ALTER SEQUENCE … RESTART of every sequence took 27 ms per test). The Database (its
    engine, whose first connection asks the server about itself) is made once per URL:
    tests dispose of its connections, not of it.
    """
    database = _databases.get(url) or _databases.setdefault(url, Database(url))
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in TRIGGER_FED]
    deletes = [f'DELETE FROM "{name}"' for name in [*tables, *TRIGGER_FED]]
    restart = (
        "SELECT setval(format('%I', sequencename)::regclass, 1, false) FROM pg_sequences"
        " WHERE schemaname = current_schema() AND last_value IS NOT NULL"
    )
    with database.engine.begin() as connection:
        connection.execute(text("; ".join([*deletes, restart])))
    return database


@pytest.fixture
def postgres_app(postgres_database: str, clock: FrozenClock, tmp_path: Path) -> Iterator[App]:
    """The app on an empty PostgreSQL database only: for tests of the production shape."""
    database = _emptied(postgres_database)
    yield App(make_settings(database, outbox_dir=tmp_path / "outbox"), database, clock)
    database.dispose()


#: How long a member's event waits for an earlier one in tests (200 ms in production): the
#: same retry, without a fifth of a second on each event that two worker threads race to.
EVENT_ORDER_WAIT_MS = 10


def make_settings(database: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database.url,
        "redis_url": None,
        "event_order_wait_ms": EVENT_ORDER_WAIT_MS,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def app(database: Database, clock: FrozenClock, tmp_path: Path) -> App:
    return App(make_settings(database, outbox_dir=tmp_path / "outbox"), database, clock)


@pytest.fixture
def redis_url() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(scope="session")
def sandbox_accepted() -> AcceptedCheck:
    """The requests SendGrid and Twilio accepted in a test are checked against the providers'
    OpenAPI documents after it (tests/sandbox/contract.py)."""
    from tests.sandbox.contract import check_accepted  # loads openapi-core when first needed

    return check_accepted
