"""`loyalty tokens create|list|revoke`: the bearer tokens of /api/v1."""

from __future__ import annotations

import click

from cli.context import app_from_environment, guard, minute
from loyalty.tokens import SCOPES, create_token, list_tokens, revoke_token

__all__ = ["tokens"]


@click.group()
def tokens() -> None:
    """API tokens for /api/v1 (shops, POS, scripts)."""


@tokens.command("create")
@click.option("--name", required=True, help="who uses it; the source of the events it sends")
@click.option(
    "--scope",
    "scopes",
    required=True,
    multiple=True,
    help=f"comma-separated, or repeated: {', '.join(SCOPES)}",
)
@guard
def tokens_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a token and print it once: it is stored only as a hash."""
    app = app_from_environment()
    with app.database.transaction() as session:
        row, token = create_token(session, name, scopes, now=app.clock.now())
        granted = ", ".join(row.scopes)
    click.echo(token)
    click.echo(
        f"token {name!r} created with {granted}; it is shown only now: keep it secret "
        "and send it as `Authorization: Bearer <token>`",
        err=True,
    )


@tokens.command("list")
@guard
def tokens_list() -> None:
    """Every token: name, scopes, created, last used, revoked."""
    app = app_from_environment()
    with app.database.sessions() as session:
        rows = list_tokens(session)
    if not rows:
        click.echo("no tokens; create one with `loyalty tokens create --name NAME --scope …`")
        return
    for row in rows:
        click.echo(
            f"{row.name}  scopes={','.join(row.scopes)}  created={minute(row.created_at)}  "
            f"last_used={minute(row.last_used_at)}  revoked={minute(row.revoked_at)}"
        )


@tokens.command("revoke")
@click.argument("name")
@guard
def tokens_revoke(name: str) -> None:
    """Revoke the token NAME at once: requests with it get 401."""
    app = app_from_environment()
    with app.database.transaction() as session:
        row = revoke_token(session, name, now=app.clock.now())
        at = row.revoked_at
    click.echo(f"token {name!r} revoked at {minute(at)}")
