"""`loyalty messages list|show|send-test`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from loyalty.models import Member, Message

__all__ = ["messages"]


def _app() -> Any:
    from cli import app_from_environment

    return app_from_environment()


@click.group()
def messages() -> None:
    """Messages of every channel: their state and the reasons behind it."""


@messages.command("list")
@click.option("--state", help="pending, deferred, sent, unknown, suppressed, failed…")
@click.option("--channel", type=click.Choice(["email", "sms", "crm"]))
@click.option("--member", "external_id", help="one member's messages")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def list_command(
    state: str | None, channel: str | None, external_id: str | None, limit: int, as_json: bool
) -> None:
    """The newest messages first."""
    app = _app()
    query = (
        select(Message, Member.external_id)
        .join(Member, Member.id == Message.member_id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    if state:
        query = query.where(Message.state == state)
    if channel:
        query = query.where(Message.channel == channel)
    if external_id:
        query = query.where(Member.external_id == external_id)
    with app.database.sessions() as session:
        rows = [_row(m, member) for m, member in session.execute(query)]
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


def _row(message: Message, member: str) -> dict[str, Any]:
    return {
        "id": message.id,
        "created_at": message.created_at.isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "channel": message.channel,
        "purpose": message.purpose,
        "state": message.state,
        "member": member,
        "journey": message.journey_id,
        "step": message.step_id,
        "template": message.template,
        "locale": message.locale,
        "provider_id": message.provider_id,
        "provider_status": message.provider_status,
        "attempts": message.attempts,
        "segments": message.segments,
        "cost": str(message.cost) if message.cost is not None else None,
        "error": message.error,
        "decisions": message.decisions,
    }


@messages.command("show")
@click.argument("message_id", type=int)
def show_command(message_id: int) -> None:
    """One message with every decision taken about it."""
    app = _app()
    with app.database.sessions() as session:
        found = session.execute(
            select(Message, Member.external_id)
            .join(Member, Member.id == Message.member_id)
            .where(Message.id == message_id)
        ).first()
    if found is None:
        click.echo(f"error: no message {message_id}; see `loyalty messages list`", err=True)
        sys.exit(2)
    click.echo(json.dumps(_row(*found), indent=2, ensure_ascii=False))


@messages.command("send-test")
@click.option("--template", "name", required=True, help="template name in JOURNEYS_DIR/templates")
@click.option("--to", "address", required=True, help="an email address or a phone number")
@click.option("--member", "external_id", help="render with this member's data")
@click.option("--locale", help="default: the member's, else DEFAULT_LOCALE")
def send_test_command(name: str, address: str, external_id: str | None, locale: str | None) -> None:
    """Render a template and send it to one address, for marketers checking their work."""
    from channels.test_send import send_test

    app = _app()
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
    except (LookupError, ValueError) as exc:
        click.echo(f"error: {str(exc).strip(chr(39))}", err=True)
        sys.exit(2)
    click.echo(result)
