"""Helpers for the API tests: tokens, authorised headers, and the one fault shape."""

from __future__ import annotations

from typing import Any

import httpx

from loyalty.app import App
from loyalty.tokens import SCOPES, create_token

ALL_SCOPES = ",".join(SCOPES)


def new_token(app: App, name: str = "shop", scopes: str = ALL_SCOPES) -> str:
    with app.database.transaction() as session:
        return create_token(session, name, [scopes], now=app.clock.now())[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problems(response: httpx.Response) -> list[dict[str, Any]]:
    """The faults of a 4xx answer; each names where it is (`loc`) and what (`msg`)."""
    assert 400 <= response.status_code < 500, response.status_code
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), list), body
    for problem in body["detail"]:
        assert problem["loc"] and all(isinstance(part, str | int) for part in problem["loc"])
        assert isinstance(problem["msg"], str) and problem["msg"]
    return list(body["detail"])
