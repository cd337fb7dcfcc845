"""`loyalty rewards list|validate|redeem|redemptions`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from automations.intake import BROKER_OUTAGES
from automations.runtime import actors
from cli.context import app_from_environment, fail, guard, settings_from_environment, workers
from loyalty.app import App
from loyalty.members import get_member
from loyalty.models import Redemption
from loyalty.redemptions import redeem_member, redemptions_of
from loyalty.rewards import (
    FixedAmount,
    Percentage,
    RedemptionState,
    catalog_path,
    check_catalog,
    load_catalog,
)

__all__ = ["rewards"]


@click.group()
def rewards() -> None:
    """The rewards catalog (journeys/rewards.yaml) and redemptions."""


@rewards.command("validate")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def rewards_validate(path: Path | None) -> None:
    """Check the catalog; every problem as file:line:column."""
    settings = settings_from_environment()
    target = path or catalog_path(settings.journeys_dir)
    if not target.exists():
        fail(f"{target} does not exist")
    catalog, problems = check_catalog(target, settings.tier_thresholds)
    for problem in problems:
        click.echo(str(problem), err=True)
    if catalog is None:
        fail(f"{len(problems)} problem(s) in {target}", 1)
    click.echo(f"{target}: {len(catalog.rewards)} reward(s), no problems")


@rewards.command("list")
@click.option("--json", "as_json", is_flag=True)
@guard
def rewards_list(as_json: bool) -> None:
    """Every reward: id, cost, what it gives, who may take it."""
    settings = settings_from_environment()
    catalog = load_catalog(settings.journeys_dir, settings.tier_thresholds)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in catalog.rewards], indent=2))
        return
    for reward in catalog.rewards:
        if isinstance(reward, FixedAmount):
            gives = ", ".join(f"{amount} {cur}" for cur, amount in reward.value.items()) + " off"
        elif isinstance(reward, Percentage):
            gives = f"{reward.percentage}% off"
        else:
            gives = "free shipping"
        rules = [f"valid {reward.valid_for}"]
        if reward.min_tier:
            rules.append(f"tier {reward.min_tier}+")
        if reward.limit_per_member:
            rules.append(f"{reward.limit_per_member} per member")
        click.echo(
            f"{reward.id:<20} {reward.cost:>7} points  {gives}  ({', '.join(rules)})  "
            f"{reward.display_name(settings.default_locale)}"
        )
    if not catalog.rewards:
        click.echo(f"no rewards in {catalog_path(settings.journeys_dir)}")


def _line(redemption: Redemption) -> str:
    value = ""
    if redemption.value is not None:
        value = f" {redemption.value} {redemption.currency or '%'}"
    code = f" code {redemption.code}" if redemption.code else ""
    error = f" ({redemption.error})" if redemption.error else ""
    return (
        f"redemption {redemption.id} {redemption.reward_id}{value}: {redemption.state}{code}, "
        f"{redemption.points} points, expires {redemption.expires_at.isoformat()}{error}"
    )


def _row(redemption: Redemption, external_id: str | None = None) -> dict[str, Any]:
    return {
        "id": redemption.id,
        "member": external_id,
        "reward": redemption.reward_id,
        "state": redemption.state,
        "points": redemption.points,
        "code": redemption.code,
        "value": None if redemption.value is None else str(redemption.value),
        "currency": redemption.currency,
        "expires_at": redemption.expires_at.isoformat(),
        "shop": redemption.shop,
        "error": redemption.error,
        "created_at": redemption.created_at.isoformat(),
    }


def _settled(app: App, redemption_id: int, timeout: float) -> Redemption | None:
    deadline = time.monotonic() + timeout
    while True:
        with app.database.sessions() as session:
            redemption = session.get(Redemption, redemption_id)
        if redemption is None or redemption.state != RedemptionState.PENDING:
            return redemption
        if time.monotonic() > deadline:
            return redemption
        time.sleep(0.2)


@rewards.command("redeem")
@click.argument("external_id")
@click.argument("reward_id")
@click.option("--key", required=True, help="idempotency key: the same key redeems once")
@click.option("--currency", help="currency of a fixed-amount reward with several")
@click.option("--wait", is_flag=True, help="with Redis: wait until the code is issued")
@guard
def rewards_redeem(
    external_id: str, reward_id: str, key: str, currency: str | None, wait: bool
) -> None:
    """Take a member's points for a reward and have its code made at the shop."""
    app = app_from_environment()
    with workers(app, wait) as poll:
        redeemed = redeem_member(
            app.database,
            external_id,
            reward_id,
            key,
            settings=app.settings,
            now=app.clock.now(),
            currency=currency,
        )
        redemption = redeemed.redemption
        if redemption.state == RedemptionState.PENDING:
            # A pending one asked again is queued again: the code is made once either way.
            try:
                actors.send("create_reward_code", redemption.id)
                for event_id in redeemed.caused:
                    actors.send("process_event", event_id)
            except BROKER_OUTAGES:
                click.echo(
                    "note: the broker (REDIS_URL) is unreachable; the points are taken and the "
                    "same command with the same --key queues the code once it is back",
                    err=True,
                )
    settled = _settled(app, redemption.id, 60.0 if poll else 0.0) or redemption
    if not redeemed.created:
        click.echo(f"key {key!r} was already used; nothing new was taken")
    click.echo(_line(settled))
    if settled.state == RedemptionState.FAILED:
        fail(f"the code was not issued: {settled.error}; the points were returned", 1)


@rewards.command("redemptions")
@click.option("--member", "external_id", help="only this member's")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@guard
def rewards_redemptions(external_id: str | None, limit: int, as_json: bool) -> None:
    """The newest redemptions first."""
    app = app_from_environment()
    with app.database.sessions() as session:
        member_id = get_member(session, external_id).id if external_id else None
        rows = redemptions_of(session, member_id, limit)
    if as_json:
        click.echo(json.dumps([_row(r, external_id) for r in rows], indent=2))
        return
    for redemption in rows:
        click.echo(_line(redemption))
    if not rows:
        click.echo("no redemptions")
