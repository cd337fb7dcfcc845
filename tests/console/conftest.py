"""The console on an App with CONSOLE_SECRET set, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from tests.conftest import make_settings
from tests.console.support import SECRET
from web.app import create_app


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
