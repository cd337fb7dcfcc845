"""`loyalty users create|list|disable`: the people who sign in to the console."""

from __future__ import annotations

import sys

import click

from cli.context import app_from_environment, fail, guard, minute
from loyalty.users import create_user, disable_user, list_users

__all__ = ["users"]


@click.group()
def users() -> None:
    """Console users (viewer < marketer < operator); apart from the API tokens."""


@users.command("create")
@click.option("--email", required=True, help="the sign-in name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "marketer", "operator"]),
    help="viewer reads; marketer also pauses journeys; operator also replays dead letters",
)
@click.option(
    "--password-stdin", is_flag=True, help="read the password from the first line of stdin"
)
@guard
def users_create(email: str, role: str, password_stdin: bool) -> None:
    """Create a console user; the password is asked for (or read from stdin), never an option."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("no password given")
    app = app_from_environment()
    with app.database.transaction() as session:
        row = create_user(session, email, role, password, now=app.clock.now())
        created = (row.email, row.role)
    click.echo(f"user {created[0]} created with the role {created[1]}")


@users.command("list")
@guard
def users_list() -> None:
    """Every console user: email, role, created, last sign-in, disabled."""
    app = app_from_environment()
    with app.database.sessions() as session:
        rows = list_users(session)
    if not rows:
        click.echo("no users; create one with `loyalty users create --email E --role R`")
        return
    for row in rows:
        click.echo(
            f"{row.email}  role={row.role}  created={minute(row.created_at)}  "
            f"last_sign_in={minute(row.last_sign_in_at)}  disabled={minute(row.disabled_at)}"
        )


@users.command("disable")
@click.argument("email")
@guard
def users_disable(email: str) -> None:
    """Disable EMAIL at once: no more sign-ins, and open sessions end."""
    app = app_from_environment()
    with app.database.transaction() as session:
        row = disable_user(session, email, now=app.clock.now())
        at = row.disabled_at
    click.echo(f"user {email.strip().lower()} disabled at {minute(at)}")
