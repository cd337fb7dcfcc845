"""`loyalty crm setup|check|push|pull|status`."""

from __future__ import annotations

import sys

import click

from cli.context import app_from_environment, guard
from crm_sync.adapters import make_adapter
from crm_sync.pull import run_pull
from crm_sync.runs import next_try, run_push
from crm_sync.status import crm_status

__all__ = ["crm"]

_CRM = click.option(
    "--crm",
    "crm_name",
    type=click.Choice(["hubspot", "salesforce"]),
    required=True,
    help="which CRM",
)


@click.group()
def crm() -> None:
    """Keep HubSpot and Salesforce contacts in step with the loyalty data."""


@crm.command()
@_CRM
@guard
def setup(crm_name: str) -> None:
    """Create the CRM properties the mapping needs (safe to run again)."""
    adapter = make_adapter(app_from_environment(), crm_name)
    created = adapter.ensure_schema()
    problems = adapter.check()
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
@guard
def check(crm_name: str) -> None:
    """List what the CRM lacks for the mapping (fields an admin must create)."""
    problems = make_adapter(app_from_environment(), crm_name).check()
    if not problems:
        click.echo(f"{crm_name}: every mapped field exists")
        return
    for problem in problems:
        click.echo(problem)
    sys.exit(1)


@crm.command()
@_CRM
@click.option("--full", is_flag=True, help="push every member, changed or not")
@guard
def push(crm_name: str, full: bool) -> None:
    """Push members whose mapped values changed since the last push."""
    report = run_push(app_from_environment(), crm_name, full=full)
    click.echo(report.summary())
    if report.stopped:
        sys.exit(1)


@crm.command()
@_CRM
@guard
def pull(crm_name: str) -> None:
    """Apply CRM edits of the two-way fields since the last pull."""
    report = run_pull(app_from_environment(), crm_name)
    click.echo(report.summary())


@crm.command()
@click.option("--errors", "show_errors", default=20, show_default=True, help="errors to list")
@guard
def status(show_errors: int) -> None:
    """Last runs, cursors, pending changes and the latest errors per member."""
    app = app_from_environment()
    found = crm_status(app, errors=show_errors)
    if not found:
        click.echo("CRM sync is off: no CRM credentials are set")
        return
    for state in found:
        click.echo(f"{state.crm}: {state.linked} members linked, {state.pending} pending changes")
        for direction in ("push", "pull"):
            row = state.cursors.get(direction)
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
            after = next_try(row)
            if after is not None:
                line += f" ({row.refusals} run(s) in a row; next try after {after:%H:%M:%S}Z)"
            click.echo(line)
        for external_id, error, at in state.errors:
            click.echo(f"  member {external_id}: {error} ({at:%Y-%m-%d %H:%M}Z)")
