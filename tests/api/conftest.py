"""A client for the web app (and its /api/v1) on each backend, and a token for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from tests.api.support import bearer, new_token
from web.app import create_app


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_app(app)) as test_client:
        yield test_client


@pytest.fixture
def auth(app: App) -> dict[str, str]:
    """Headers with a token named `shop` that has every scope."""
    return bearer(new_token(app))
