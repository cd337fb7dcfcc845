"""Tokens: shown once, stored as a hash, 401 without a live one, 403 outside its scopes."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient

from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import ApiToken
from loyalty.tokens import TokenError, create_token, revoke_token
from tests.api.support import bearer, new_token, problems


def stored(app: App, name: str) -> ApiToken:
    with app.database.sessions() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == name))
        assert row is not None
        return row


def test_a_token_is_kept_only_as_its_hash(app: App) -> None:
    token = new_token(app, "pos", "events:write")
    assert token.startswith("lj_") and len(token) == 35
    row = stored(app, "pos")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.name) and row.scopes == ["events:write"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer lj_not-a-token-at-all-000000000000"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
)
def test_no_valid_token_is_401_with_a_bearer_challenge(
    client: TestClient, headers: dict[str, str]
) -> None:
    answer = client.get("/api/v1/members/m-1", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert problems(answer)[0]["loc"] == ["header", "Authorization"]


def test_a_revoked_token_is_refused_at_once(app: App, client: TestClient) -> None:
    token = new_token(app, "pos", "members:read")
    assert client.get("/api/v1/members/m-1", headers=bearer(token)).status_code == 404
    with app.database.transaction() as session:
        revoke_token(session, "pos", now=app.clock.now())
    assert client.get("/api/v1/members/m-1", headers=bearer(token)).status_code == 401


def test_a_route_outside_the_tokens_scopes_is_403_naming_the_scope(
    app: App, client: TestClient
) -> None:
    token = bearer(new_token(app, "reader", "members:read"))
    answer = client.post("/api/v1/events", json={"type": "x", "member": "m"}, headers=token)
    assert answer.status_code == 403
    assert "events:write" in problems(answer)[0]["msg"]
    answer = client.put("/api/v1/members/m-1", json={}, headers=token)
    assert answer.status_code == 403 and "members:write" in problems(answer)[0]["msg"]


def test_last_used_is_noted_about_once_a_minute(
    app: App, client: TestClient, clock: FrozenClock
) -> None:
    token = bearer(new_token(app, "pos", "members:read"))
    assert stored(app, "pos").last_used_at is None
    client.get("/api/v1/members/m-1", headers=token)
    assert stored(app, "pos").last_used_at == clock.now()
    first = clock.now()
    clock.advance(timedelta(seconds=30))
    client.get("/api/v1/members/m-1", headers=token)
    assert stored(app, "pos").last_used_at == first
    clock.advance(timedelta(seconds=31))
    client.get("/api/v1/members/m-1", headers=token)
    assert stored(app, "pos").last_used_at == clock.now()


@pytest.mark.parametrize(
    ("name", "scopes", "message"),
    [
        ("loyalty", ["events:write"], "reserved"),
        ("has space", ["events:write"], "a token name is"),
        ("x" * 65, ["events:write"], "a token name is"),
        ("pos", ["events:write,admin"], r"unknown scope\(s\) admin"),
        ("pos", [""], "at least one scope"),
    ],
)
def test_tokens_that_cannot_work_are_refused(
    app: App, name: str, scopes: list[str], message: str
) -> None:
    with app.database.transaction() as session, pytest.raises(TokenError, match=message):
        create_token(session, name, scopes, now=app.clock.now())


def test_the_tokens_commands_create_list_and_revoke(app: App) -> None:
    env = {"DATABASE_URL": app.database.url, "REDIS_URL": ""}
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["tokens", "create", "--name", "shopify", "--scope", "events:write,members:read"],
        env=env,
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("lj_") and stored(app, "shopify").token_hash != token

    again = runner.invoke(
        main, ["tokens", "create", "--name", "shopify", "--scope", "events:write"], env=env
    )
    assert again.exit_code == 2 and "exists" in again.stderr

    listed = runner.invoke(main, ["tokens", "list"], env=env)
    assert "shopify  scopes=events:write,members:read" in listed.stdout
    assert "revoked=-" in listed.stdout and token not in listed.stdout

    revoked = runner.invoke(main, ["tokens", "revoke", "shopify"], env=env)
    assert revoked.exit_code == 0 and stored(app, "shopify").revoked_at is not None
    assert "revoked=-" not in runner.invoke(main, ["tokens", "list"], env=env).stdout
    unknown = runner.invoke(main, ["tokens", "revoke", "nobody"], env=env)
    assert unknown.exit_code == 2 and "no token named 'nobody'" in unknown.stderr
