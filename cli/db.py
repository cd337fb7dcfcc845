"""`loyalty db upgrade`."""

from __future__ import annotations

import click

from cli.context import app_from_environment, guard
from loyalty.db import upgrade

__all__ = ["db"]


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@guard
def db_upgrade(revision: str) -> None:
    """Create or migrate the tables (Alembic)."""
    app = app_from_environment(migrate=False)
    upgrade(app.database, revision)
    click.echo(f"database at {revision}: {app.database.engine.url.render_as_string()}")
