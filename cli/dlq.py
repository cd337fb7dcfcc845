"""`loyalty dlq list|replay`: worker messages that failed for good."""

from __future__ import annotations

import click
import dramatiq

from automations.runtime.dead_letters import list_dead_letters, replay
from cli.context import app_from_environment, guard, workers

__all__ = ["dlq"]


@click.group()
def dlq() -> None:
    """Dead letters: worker messages that failed for good."""


@dlq.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="include replayed ones")
@guard
def dlq_list(include_replayed: bool) -> None:
    """Dead letters, oldest first."""
    rows = list_dead_letters(app_from_environment().database, include_replayed=include_replayed)
    for row in rows:
        replayed = f" replayed {row.replayed_at.isoformat()}" if row.replayed_at else ""
        click.echo(
            f"{row.id:>5}  {row.failed_at.isoformat()}  {row.actor}"
            f"{tuple(row.args['args'])}  {row.error}{replayed}"
        )
    click.echo(f"{len(rows)} dead letter(s)")


@dlq.command("replay")
@click.argument("ids", nargs=-1, type=int, required=True)
@guard
def dlq_replay(ids: tuple[int, ...]) -> None:
    """Send dead messages again."""
    app = app_from_environment()
    with workers(app, wait=False):
        for dead_id in ids:
            row = replay(app.database, dramatiq.get_broker(), dead_id, now=app.clock.now())
            click.echo(f"replayed {row.id}: {row.actor}{tuple(row.args['args'])}")
