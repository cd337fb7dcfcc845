"""`loyalty crm …`: setup, check, push, pull and status (registered by cli.py)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
from sqlalchemy import func, select

from loyalty.errors import LoyaltyError
from loyalty.models import CrmLink, Member, SyncCursor

if TYPE_CHECKING:
    from loyalty.app import App

__all__ = ["crm"]

_CRM = click.option(
    "--crm",
    "crm_name",
    type=click.Choice(["hubspot", "salesforce"]),
    required=True,
    help="which CRM",
)


def _app() -> App:
    from cli import app_from_environment

    return app_from_environment()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
def crm() -> None:
    """Keep HubSpot and Salesforce contacts in step with the loyalty data."""


@crm.command()
@_CRM
def setup(crm_name: str) -> None:
    """Create the CRM properties the mapping needs (safe to run again)."""
    from crm_sync.adapters import make_adapter

    try:
        adapter = make_adapter(_app(), crm_name)
        created = adapter.ensure_schema()
        problems = adapter.check()
    except LoyaltyError as exc:
        _fail(str(exc))
        return
    for item in created:
        click.echo(f"created {item}")
    if not created:
        click.echo(f"{crm_name}: nothing to create")
    for problem in problems:
        click.echo(f"admin: {problem}")
    if problems:
        sys.exit(1)


@crm.command()
@_CRM
def check(crm_name: str) -> None:
    """List what the CRM lacks for the mapping (fields an admin must create)."""
    from crm_sync.adapters import make_adapter

    try:
        problems = make_adapter(_app(), crm_name).check()
    except LoyaltyError as exc:
        _fail(str(exc))
        return
    if not problems:
        click.echo(f"{crm_name}: every mapped field exists")
        return
    for problem in problems:
        click.echo(problem)
    sys.exit(1)


@crm.command()
@_CRM
@click.option("--full", is_flag=True, help="push every member, changed or not")
def push(crm_name: str, full: bool) -> None:
    """Push members whose mapped values changed since the last push."""
    from crm_sync.runs import run_push

    try:
        report = run_push(_app(), crm_name, full=full)
    except LoyaltyError as exc:
        _fail(str(exc))
        return
    click.echo(report.summary())
    if report.stopped:
        sys.exit(1)


@crm.command()
@_CRM
def pull(crm_name: str) -> None:
    """Apply CRM edits of the two-way fields since the last pull."""
    from crm_sync.pull import run_pull

    try:
        report = run_pull(_app(), crm_name)
    except LoyaltyError as exc:
        _fail(str(exc))
        return
    click.echo(report.summary())


@crm.command()
@click.option("--errors", "show_errors", default=20, show_default=True, help="errors to list")
def status(show_errors: int) -> None:
    """Last runs, cursors, pending changes and the latest errors per member."""
    from crm_sync.adapters import configured_crms, mapping_for
    from crm_sync.plan import changed_members

    app = _app()
    crms = configured_crms(app.settings)
    if not crms:
        click.echo("CRM sync is off: no CRM credentials are set")
        return
    mapping = mapping_for(app.settings)
    for name in crms:
        with app.database.transaction() as session:
            cursors = {
                row.direction: row
                for row in session.scalars(select(SyncCursor).where(SyncCursor.crm == name))
            }
            linked = session.scalar(select(func.count()).where(CrmLink.crm == name)) or 0
            errors = session.execute(
                select(Member.external_id, CrmLink.error, CrmLink.error_at)
                .join(Member, Member.id == CrmLink.member_id)
                .where(CrmLink.crm == name, CrmLink.error.is_not(None))
                .order_by(CrmLink.error_at.desc())
                .limit(show_errors)
            ).all()
        pending = sum(1 for _ in changed_members(app, name, mapping))
        click.echo(f"{name}: {linked} members linked, {pending} pending changes")
        for direction in ("push", "pull"):
            row = cursors.get(direction)
            if row is None:
                click.echo(f"  {direction}: never ran")
                continue
            line = (
                f"  {direction}: last run {row.last_run_at:%Y-%m-%d %H:%M:%S}Z"
                if row.last_run_at
                else f"  {direction}:"
            )
            if row.cursor:
                line += f", cursor {row.cursor}"
            if row.last_error:
                line += f", stopped: {row.last_error}"
            click.echo(line)
        for external_id, error, at in errors:
            click.echo(f"  member {external_id}: {error} ({at:%Y-%m-%d %H:%M}Z)")
