"""`loyalty points balance|history|adjust`."""

from __future__ import annotations

import json
import uuid

import click

from automations.intake import queue_events
from cli.context import app_from_environment, guard, workers
from loyalty import ledger
from loyalty.members import get_member
from loyalty.states import LedgerKind

__all__ = ["points"]


@click.group()
def points() -> None:
    """The points ledger."""


@points.command("balance")
@click.argument("external_id")
@guard
def points_balance(external_id: str) -> None:
    """Points balance, tier and the next points to expire."""
    app = app_from_environment()
    with app.database.sessions() as session:
        member = get_member(session, external_id)
        expiring = ledger.next_expiring(session, member, now=app.clock.now())
    line = f"{member.external_id}: {member.points_balance} points, tier {member.tier}"
    line += f", lifetime {member.lifetime_points}"
    if expiring:
        line += f"; {expiring[0]} expire at {expiring[1].isoformat()}"
    click.echo(line)


@points.command("history")
@click.argument("external_id")
@click.option("--json", "as_json", is_flag=True)
@guard
def points_history(external_id: str, as_json: bool) -> None:
    """Every ledger entry of a member, oldest first."""
    app = app_from_environment()
    with app.database.sessions() as session:
        member = get_member(session, external_id)
        entries = ledger.history(session, member)
    rows = [
        {
            "at": e.created_at.isoformat(),
            "kind": e.kind,
            "delta": e.delta,
            "reason": e.reason,
            "key": e.idempotency_key,
            "expires_at": e.expires_at.isoformat() if e.expires_at else None,
        }
        for e in entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        expiry = f" (expires {row['expires_at']})" if row["expires_at"] else ""
        click.echo(f"{row['at']}  {row['kind']:<7} {row['delta']:>+8}  {row['reason']}{expiry}")
    click.echo(f"balance {member.points_balance}")


@points.command("adjust")
@click.argument("external_id")
@click.argument("delta", type=int)
@click.option("--reason", required=True)
@click.option("--key", help="idempotency key; default: a new one")
@guard
def points_adjust(external_id: str, delta: int, reason: str, key: str | None) -> None:
    """Add (positive) or take (negative) points by hand."""
    app = app_from_environment()
    now = app.clock.now()
    # The points.changed / tier.changed events of the entry journeys may start on.
    with workers(app, False):
        with app.database.transaction() as session:
            member = ledger.lock_member(session, get_member(session, external_id).id)
            posting = ledger.apply(
                session,
                member,
                LedgerKind.ADJUST,
                delta,
                key=key or f"manual:{uuid.uuid4()}",
                reason=reason,
                now=now,
                thresholds=app.settings.tier_thresholds,
                expires_at=ledger.default_expiry(now, app.settings.points_expiry_days),
            )
            caused = ledger.take_emitted(session)
        queue_events(caused)
    state = "applied" if posting.applied else "already applied"
    click.echo(f"{state}: {posting.entry.delta:+d}; balance {member.points_balance}")
