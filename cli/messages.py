"""`loyalty messages list|show|send-test`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from channels.message_log import find_message, list_messages
from channels.proofs import send_test
from cli.context import app_from_environment, fail, guard
from loyalty.members import get_member

__all__ = ["messages"]


@click.group()
def messages() -> None:
    """Messages of every channel: their state and the reasons behind it."""


@messages.command("list")
@click.option("--state", help="pending, deferred, sent, unknown, suppressed, failed…")
@click.option("--channel", type=click.Choice(["email", "sms", "crm", "http", "crm_task"]))
@click.option("--member", "external_id", help="one member's messages")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@guard
def list_command(
    state: str | None, channel: str | None, external_id: str | None, limit: int, as_json: bool
) -> None:
    """The newest messages first."""
    app = app_from_environment()
    with app.database.sessions() as session:
        if external_id is not None:
            get_member(session, external_id)  # an unknown member is an error, not "0 messages"
        rows = list_messages(
            session, state=state, channel=channel, external_id=external_id, limit=limit
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        reason = f" ({r['error']})" if r["error"] else ""
        click.echo(
            f"{r['id']:>6} {r['created_at'][:19]} {r['channel']:<5} {r['state']:<10} "
            f"{r['member']:<14} {r['journey'] or '-'}/{r['step'] or '-'}{reason}"
        )
    click.echo(f"{len(rows)} message(s)")


@messages.command("show")
@click.argument("message_id", type=int)
@guard
def show_command(message_id: int) -> None:
    """One message with every decision taken about it."""
    app = app_from_environment()
    with app.database.sessions() as session:
        found = find_message(session, message_id)
    if found is None:
        fail(f"no message {message_id}; see `loyalty messages list`")
    click.echo(json.dumps(found, indent=2, ensure_ascii=False))


@messages.command("send-test")
@click.option("--template", "name", required=True, help="template name in JOURNEYS_DIR/templates")
@click.option("--to", "address", required=True, help="an email address or a phone number")
@click.option("--member", "external_id", help="render with this member's data")
@click.option("--locale", help="default: the member's, else DEFAULT_LOCALE")
@guard
def send_test_command(name: str, address: str, external_id: str | None, locale: str | None) -> None:
    """Render a template and send it to one address, for marketers checking their work."""
    app = app_from_environment()
    try:
        result = send_test(
            app,
            name,
            address,
            external_id=external_id,
            locale=locale,
            templates_dir=Path(app.settings.journeys_dir) / "templates",
            now=datetime.now(UTC),
        )
    except ValueError as exc:
        fail(str(exc))
    click.echo(result)
