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
        entries = dict(
            session.execute(
                select(Enrollment.journey_id, func.count(Enrollment.id)).group_by(
                    Enrollment.journey_id
                )
            ).all()
        )
        conversions = dict(
            session.execute(
                select(Enrollment.journey_id, func.count(Enrollment.id))
                .where(Enrollment.converted_at.is_not(None))
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
                    "entries": int(entries.get(journey.id, 0)),
                    "conversions": int(conversions.get(journey.id, 0)),
                    "published_at": version.published_at.isoformat(),
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"{'journey':<28} {'status':<8} {'version':>7} {'trigger':<9} {'in flight':>9} "
        f"{'entries':>8} {'converted':>9}"
    )
    for row in rows:
        click.echo(
            f"{row['id']:<28} {row['status']:<8} {row['version']:>7} {row['trigger']:<9} "
            f"{row['active_enrollments']:>9} {row['entries']:>8} {row['conversions']:>9}"
        )


@journeys.command("simulate")
@click.option("--from", "start", required=True, help="YYYY-MM-DD or an ISO instant (UTC)")
@click.option("--to", "end", required=True, help="YYYY-MM-DD (inclusive) or an ISO instant")
@click.option("--journey", "journey_id", help="only this journey")
@click.option(
    "--members",
    "members_file",
    type=click.Path(exists=True, path_type=Path),
    help="CSV or JSONL members to use instead of the database's",
)
@click.option(
    "--events",
    "events_file",
    type=click.Path(exists=True, path_type=Path),
    help="JSONL events to emit at their `at`",
)
@click.option("--json", "as_json", is_flag=True, help="print the timeline as JSON")
def simulate_command(
    start: str,
    end: str,
    journey_id: str | None,
    members_file: Path | None,
    events_file: Path | None,
    as_json: bool,
) -> None:
    """Run the journeys over a period with a virtual clock; nothing is sent or stored."""
    from automations.simulate import parse_day, simulate

    app = _app()
    result = simulate(
        app,
        start=parse_day(start),
        end=parse_day(end, end=True),
        journey_id=journey_id,
        members_file=members_file,
        events_file=events_file,
    )
    for problem in result.problems:
        click.echo(problem, err=True)
    if as_json:
        click.echo(
            json.dumps(
                [r for r in result.records if r["action"] != "enter"], indent=2, ensure_ascii=False
            )
        )
        return
    for r in result.records:
        extra = " ".join(
            f"{k}={r[k]}"
            for k in (
                "channel",
                "template",
                "locale",
                "points",
                "suppressed",
                "error",
                "segments",
                "reason",
            )
            if k in r and r[k] is not None
        )
        click.echo(
            f"{r['at']}  {r['journey']:<24} {r['member']:<14} {r['step']:<16} "
            f"{r['action']:<13} {extra}"
        )
    click.echo("")
    for journey, row in sorted(result.summary().items()):
        sends = ", ".join(f"{n} {c}" for c, n in sorted(row["sends"].items())) or "no sends"
        click.echo(
            f"{journey}: {row['entries']} entries, {sends}, {row['points']} points, "
            f"{row['sms_segments']} SMS segments (~{row['sms_cost']})"
        )


@journeys.command("preview")
@click.argument("journey_id")
@click.option("--member", "external_id", required=True)
@click.option("--step", "step_id", help="only this send step")
@click.option("--json", "as_json", is_flag=True)
def preview_command(journey_id: str, external_id: str, step_id: str | None, as_json: bool) -> None:
    """Render what a member would get from a journey's send steps, with the data used."""
    from automations.preview import preview

    app = _app()
    try:
        previews = preview(app, journey_id, external_id, step_id)
    except LookupError as exc:
        click.echo(f"error: {str(exc).strip(chr(39))}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(previews, indent=2, ensure_ascii=False, default=str))
        return
    for item in previews:
        click.echo(f"== {item['step']} ({item['channel']}, {item.get('locale')})")
        if item.get("error"):
            click.echo(f"cannot render: {item['error']}")
            continue
        if item["channel"] == "email":
            click.echo(f"Subject: {item['subject']}")
            if item.get("preheader"):
                click.echo(f"Preheader: {item['preheader']}")
            click.echo(item["text"])
        else:
            click.echo(item["body"])
            click.echo(f"[{item['segments']} segment(s), {item['encoding']}]")
