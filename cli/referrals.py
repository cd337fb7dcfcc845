"""`loyalty referrals review|approve|reject`: the referrals waiting to be paid."""

from __future__ import annotations

import json

import click

from cli.context import app_from_environment, guard
from loyalty.referral_review import ReviewItem, approve, reject, review_list

__all__ = ["referrals"]


@click.group()
def referrals() -> None:
    """Referrals held before the referrer is paid, and the ones a fraud check flagged."""


@referrals.command("review")
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@guard
def referrals_review(limit: int, as_json: bool) -> None:
    """Flagged referrals (review) with their reasons, then held ones with their hold."""
    app = app_from_environment()
    with app.database.sessions() as session:
        items = review_list(session, limit=limit)
    if as_json:
        click.echo(json.dumps([_plain(item) for item in items], indent=2))
        return
    if not items:
        click.echo("no referrals waiting")
        return
    for item in items:
        click.echo(_line(item))


@referrals.command("approve")
@click.argument("referral_id", type=int)
@guard
def referrals_approve(referral_id: int) -> None:
    """Pay a flagged referral once its hold is over (the scheduler pays it)."""
    app = app_from_environment()
    referral = approve(app.database, referral_id, now=app.clock.now())
    hold = referral.hold_until.isoformat() if referral.hold_until else "now"
    click.echo(f"referral {referral_id} approved: paid after {hold}")


@referrals.command("reject")
@click.argument("referral_id", type=int)
@click.option("--reason", help="kept with the referral")
@guard
def referrals_reject(referral_id: int, reason: str | None) -> None:
    """Pay nothing for a referral."""
    app = app_from_environment()
    reject(app.database, referral_id, now=app.clock.now(), reason=reason)
    click.echo(f"referral {referral_id} rejected: nothing will be paid")


def _line(item: ReviewItem) -> str:
    reasons = ",".join(item.reasons) or "-"
    hold = item.hold_until.isoformat() if item.hold_until else "-"
    note = f"  ({item.review_note})" if item.review_note else ""
    return (
        f"{item.id}  {item.status:<6}  referrer {item.referrer}  referee {item.referee}  "
        f"order {item.order_id or '-'}  hold until {hold}  reasons {reasons}{note}"
    )


def _plain(item: ReviewItem) -> dict[str, object]:
    return {
        "id": item.id,
        "status": item.status,
        "referrer": item.referrer,
        "referee": item.referee,
        "order_id": item.order_id,
        "ordered_at": item.ordered_at.isoformat() if item.ordered_at else None,
        "hold_until": item.hold_until.isoformat() if item.hold_until else None,
        "reasons": item.reasons,
        "review_note": item.review_note,
    }
