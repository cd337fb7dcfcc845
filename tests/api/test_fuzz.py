"""Schemathesis against /api/v1/openapi.json: no input makes a 5xx, every 4xx names the field.

Bounded (25 examples per operation and mode, derandomized) so it runs in well under a
minute per backend. The schema is loaded once at import from an app on no database (the
OpenAPI document needs none); each test then calls the app of its own database, through
`routed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from loyalty.app import App
from loyalty.db import Database
from loyalty.settings import load_settings
from tests.api.support import bearer, new_token
from tests.factories import make_member
from web.app import create_app


class Routed:
    """An ASGI app that calls whichever app the running test gave it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


_nowhere = Database("sqlite://")
routed = Routed(create_app(App(load_settings(database_url=_nowhere.url, redis_url=None), _nowhere)))
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", routed)


@pytest.fixture
def token(app: App) -> Iterator[dict[str, str]]:
    """The test's app behind `routed`, a member to find, and a token with every scope."""
    previous = routed.app
    routed.app = create_app(app)
    make_member(app, external_id="m-1")
    try:
        yield bearer(new_token(app, "fuzz"))
    finally:
        routed.app = previous


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_breaks_the_api(case: Any, token: dict[str, str]) -> None:
    response = case.call(headers={**(case.headers or {}), **token})
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    if 400 <= response.status_code < 500:
        detail = response.json()["detail"]
        assert detail and all(problem["loc"] and problem["msg"] for problem in detail), detail
