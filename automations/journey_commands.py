"""`loyalty journeys publish|list|preview|simulate`: added to the `journeys` group."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy import func, select

from automations.definition.commands import journeys
from automations.versions import latest_versions, load_version, publish
from loyalty.app import App
from loyalty.models import Enrollment

__all__ = ["journeys", "publish_and_report"]


def _app() -> App:
    from cli import app_from_environment

    return app_from_environment()


def publish_and_report(app: App, journeys_dir: Path | None = None, *, quiet: bool = False) -> int:
    """Publish changed journeys; print problems and what changed; returns the problem count."""
    report = publish(app, journeys_dir)
    for problem in report.problems:
        click.echo(str(problem), err=True)
    if not quiet:
        for journey_id, version in report.published:
            click.echo(f"published {journey_id} version {version}")
    return len(report.problems)


@journeys.command("publish")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
def publish_command(folder: Path | None) -> None:
    """Store a new version of each journey whose file or templates changed."""
    app = _app()
    problems = publish_and_report(app, folder)
    with app.database.sessions() as session:
        count = len(latest_versions(session))
    click.echo(f"{count} journeys published; {problems} problem(s)")
    sys.exit(1 if problems else 0)


@journeys.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_command(as_json: bool) -> None:
    """Each journey's status, version and enrollments in flight."""
    app = _app()
    with app.database.sessions() as session:
        in_flight = dict(
            session.execute(
                select(Enrollment.journey_id, func.count(Enrollment.id))
                .where(Enrollment.state.in_(("active", "waiting")))
                .group_by(Enrollment.journey_id)
            ).all()
        )
        rows = []
        for version in latest_versions(session):
            journey = load_version(version).journey
            rows.append(
                {
                    "id": journey.id,
                    "status": journey.status,
                    "version": version.version,
                    "trigger": journey.trigger.type,
                    "active_enrollments": int(in_flight.get(journey.id, 0)),
                    "published_at": version.published_at.isoformat(),
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'journey':<28} {'status':<8} {'version':>7} {'trigger':<9} {'in flight':>9}")
    for row in rows:
        click.echo(
            f"{row['id']:<28} {row['status']:<8} {row['version']:>7} {row['trigger']:<9} "
            f"{row['active_enrollments']:>9}"
        )
