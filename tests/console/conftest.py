"""The console on an App with CONSOLE_SECRET set, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from starlette.testclient import TestClient

from loyalty import users
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from tests.conftest import make_settings
from tests.console.support import SECRET
from web.app import create_app


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """argon2id at its cheapest parameters for these tests, as test settings commonly do:
    each hash at the console's own parameters (RFC 9106's low-memory profile, checked in
    tests/console/test_sign_in.py) takes about a fifth of a second of CPU, and every
    sign-in here makes or checks one."""
    monkeypatch.setattr(users, "_hasher", PasswordHasher.from_parameters(CHEAPEST))
    users._dummy_hash.cache_clear()
    yield
    users._dummy_hash.cache_clear()


@pytest.fixture
def console(database: Database, clock: FrozenClock, tmp_path: Path) -> App:
    settings = make_settings(
        database,
        outbox_dir=tmp_path / "outbox",
        console_secret=SECRET,
        journeys_dir=tmp_path / "journeys",
    )
    return App(settings, database, clock)


@pytest.fixture
def client(console: App) -> Iterator[TestClient]:
    with TestClient(create_app(console)) as test_client:
        yield test_client
