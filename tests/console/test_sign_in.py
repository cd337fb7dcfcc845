"""Console users, sign-in and roles: who may see and do what, and what is refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY
from click.testing import CliRunner
from sqlalchemy import func, select
from starlette.testclient import TestClient

from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from loyalty.errors import ConfigError
from loyalty.models import ConsoleUser, JourneyPause, SignInFailure
from loyalty.settings import load_settings
from loyalty.users import disable_user
from tests.conftest import make_settings
from tests.console.support import PASSWORD, SECRET, make_user, post_form, sign_in, text_of
from tests.engine.helpers import journey_folder, published
from web.app import create_app

JOURNEY = """
id: thanks
name: Thanks for ordering
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - id: bonus
    type: award_points
    amount: 10
    reason: Thank-you bonus
"""


def test_passwords_are_kept_at_rfc_9106s_low_memory_argon2id_parameters(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the console's own hasher, not these tests' cheap one
    env = {"DATABASE_URL": app.database.url, "REDIS_URL": ""}
    args = ["users", "create", "--email", "bo@example.com", "--role", "viewer", "--password-stdin"]
    created = CliRunner().invoke(main, args, input=PASSWORD + "\n", env=env)
    assert created.exit_code == 0, created.output
    with app.database.sessions() as session:
        stored = session.scalar(select(ConsoleUser.password_hash))
    assert stored is not None
    assert extract_parameters(stored) == RFC_9106_LOW_MEMORY


def test_the_users_commands_create_list_and_disable(app: App) -> None:
    env = {"DATABASE_URL": app.database.url, "REDIS_URL": ""}
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["users", "create", "--email", "Ann@Example.com", "--role", "marketer", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
    )
    assert created.exit_code == 0, created.output
    assert "user ann@example.com created with the role marketer" in created.stdout
    with app.database.sessions() as session:
        row = session.scalar(select(ConsoleUser))
    assert row is not None and row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash

    again = runner.invoke(
        main,
        ["users", "create", "--email", "ann@example.com", "--role", "viewer", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
    )
    assert again.exit_code == 2 and "exists" in again.stderr
    short = runner.invoke(
        main,
        ["users", "create", "--email", "bo@example.com", "--role", "viewer", "--password-stdin"],
        input="short\n",
        env=env,
    )
    assert short.exit_code == 2 and "at least 12 characters" in short.stderr
    assert "role=marketer" in runner.invoke(main, ["users", "list"], env=env).stdout

    disabled = runner.invoke(main, ["users", "disable", "ann@example.com"], env=env)
    assert disabled.exit_code == 0
    assert "disabled=-" not in runner.invoke(main, ["users", "list"], env=env).stdout


def test_each_role_sees_what_it_may_and_is_refused_the_rest(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    published(console, journey_folder(tmp_path, {"thanks": JOURNEY}, {}))
    for role in ("viewer", "marketer", "operator"):
        make_user(console, f"{role}@example.com", role)

    # Signed out: every page leads to the sign-in form
    answer = client.get("/console/journeys", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/sign-in")

    expected = {
        # role: (operations page, pausing a journey)
        "viewer": (403, 403),
        "marketer": (403, 303),
        "operator": (200, 303),
    }
    for role, (operations, pausing) in expected.items():
        assert sign_in(client, f"{role}@example.com").status_code == 303
        journeys = client.get("/console/journeys")
        assert journeys.status_code == 200 and "thanks" in journeys.text
        assert f"{role}@example.com ({role})" in text_of(journeys.text)
        assert client.get("/console/journeys/thanks").status_code == 200
        assert client.get("/console/members").status_code == 200
        assert client.get("/console/messages").status_code == 200
        page = client.get("/console/operations")
        assert page.status_code == operations
        if operations == 403:
            assert "This needs the operator role" in page.text
        assert ("Operations" in journeys.text) is (role == "operator")
        answer = post_form(client, "/console/journeys/thanks/pause")
        assert answer.status_code == pausing
        assert post_form(client, "/console/sign-out").status_code == 303
        assert client.get("/console/journeys", follow_redirects=False).status_code == 303

    with console.database.sessions() as session:
        paused = session.get(JourneyPause, "thanks")
    # The marketer paused it; the operator's pause changed nothing more.
    assert paused is not None and paused.paused_by == "marketer@example.com"


def test_a_form_without_its_token_is_refused(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    published(console, journey_folder(tmp_path, {"thanks": JOURNEY}, {}))
    make_user(console, "mark@example.com", "marketer")
    sign_in(client, "mark@example.com")
    forged = client.post("/console/journeys/thanks/pause", data={"csrf": "guessed"})
    assert forged.status_code == 403 and "Form expired" in forged.text
    bare = client.post("/console/journeys/thanks/pause")
    assert bare.status_code == 403
    with console.database.sessions() as session:
        assert session.get(JourneyPause, "thanks") is None


@pytest.mark.parametrize("store", ["database", "redis"])
def test_failed_sign_ins_are_limited_per_email_and_address(
    database: Database,
    clock: FrozenClock,
    tmp_path: Path,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    app = App(make_settings(database, console_secret=SECRET, redis_url=redis_url), database, clock)
    make_user(app, "ann@example.com", "viewer")
    with TestClient(create_app(app)) as client:
        for _ in range(app.settings.console_sign_in_attempts):
            wrong = sign_in(client, "ann@example.com", "not the password")
            assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
        # Now even the right password waits for the window to pass
        blocked = sign_in(client, "ann@example.com")
        assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
        # Another email from the same address is not blocked
        make_user(app, "bo@example.com", "viewer")
        assert sign_in(client, "bo@example.com").status_code == 303
    if store == "database":
        with database.sessions() as session:
            assert session.scalar(select(func.count(SignInFailure.id))) == 5
        clock.advance(timedelta(minutes=app.settings.console_sign_in_window_minutes, seconds=1))
        with TestClient(create_app(app)) as client:
            assert sign_in(client, "ann@example.com").status_code == 303
            with database.sessions() as session:
                assert session.scalar(select(func.count(SignInFailure.id))) == 0


def test_a_disabled_user_is_out_at_once(console: App, client: TestClient) -> None:
    make_user(console, "ann@example.com", "operator")
    assert sign_in(client, "ann@example.com").status_code == 303
    assert client.get("/console/journeys").status_code == 200
    with console.database.transaction() as session:
        disable_user(session, "ann@example.com", now=console.clock.now())
    answer = client.get("/console/journeys", follow_redirects=False)
    assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]
    assert sign_in(client, "ann@example.com").status_code == 401


def test_sign_in_goes_back_only_to_console_pages(console: App, client: TestClient) -> None:
    make_user(console, "ann@example.com", "viewer")
    page = client.get("/console/sign-in?next=https://evil.example/")
    assert 'value="/console/journeys"' in page.text
    assert "evil.example" not in page.text


def test_the_console_is_off_without_a_secret(database: Database, clock: FrozenClock) -> None:
    app = App(make_settings(database), database, clock)
    with TestClient(create_app(app)) as client:
        answer = client.get("/console/journeys")
    assert answer.status_code == 503
    assert answer.text.startswith("the console is off: set CONSOLE_SECRET")
    assert "\n" not in answer.text
    with pytest.raises(ConfigError, match="CONSOLE_SECRET: needs at least 32"):
        load_settings(database_url=database.url, console_secret="short")


def test_the_console_says_so_in_a_line_when_the_database_is_down(clock: FrozenClock) -> None:
    down = Database("postgresql+psycopg://postgres@127.0.0.1:1/loyalty")
    app = App(make_settings(down, console_secret=SECRET), down, clock)
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        answer = sign_in(client, "ann@example.com")
    assert answer.status_code == 503
    assert "The console cannot reach the database just now" in answer.text
    assert "Traceback" not in answer.text and "psycopg" not in answer.text
