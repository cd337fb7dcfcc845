"""`loyalty journeys validate|publish|list|preview|simulate|report`."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from automations.definition import Program, journey_files, load_journeys
from automations.preview import OutsideAudience, preview
from automations.report import JourneyReport, format_report, journey_report
from automations.simulate import parse_day, simulate
from automations.simulation.engagement import parse_rates
from automations.versions import journey_summaries, latest_versions, publish
from cli.context import (
    app_from_environment,
    fail,
    guard,
    minute,
    print_publish_report,
    settings_from_environment,
)

__all__ = ["journeys"]


@click.group()
def journeys() -> None:
    """Journey definitions: validate, publish, list, preview, simulate and report."""


@journeys.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Templates folder [default: templates/ next to each journey file].",
)
@guard
def validate(paths: tuple[Path, ...], templates_dir: Path | None) -> None:
    """Check journey files (default: JOURNEYS_DIR, else ./journeys); exit 1 on any error."""
    settings = settings_from_environment()
    targets = list(paths) or [settings.journeys_dir]
    for target in targets:
        if not target.exists():
            raise click.ClickException(f"{target}: no such file or folder")
    files = journey_files(targets)
    # Judged against this program: its tiers (TIER_THRESHOLDS) and event types (EVENT_TYPES).
    program = Program.from_settings(settings)
    loaded, problems = load_journeys(files, templates_dir, program=program)
    for problem in problems:
        click.echo(str(problem))
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    broken = len({p.file for p in errors})
    noun = "journey" if len(files) == 1 else "journeys"
    extra = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
    if errors:
        click.echo(
            f"{len(errors)} error{'s' * (len(errors) != 1)} in {broken} file"
            f"{'s' * (broken != 1)}{extra}; {len(loaded)} of {len(files)} {noun} valid",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"{len(loaded)} {noun} valid{extra}")


@journeys.command("publish")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@guard
def publish_command(folder: Path | None) -> None:
    """Store a new version of each journey whose file or templates changed."""
    app = app_from_environment()
    report = publish(app, folder)
    print_publish_report(report)
    problems = len(report.problems)
    with app.database.sessions() as session:
        count = len(latest_versions(session))
    click.echo(f"{count} journeys published; {problems} problem(s)")
    sys.exit(1 if problems else 0)


@journeys.command("list")
@click.option("--json", "as_json", is_flag=True)
@guard
def list_command(as_json: bool) -> None:
    """Each journey's status (paused in the console: by whom and when), version and figures."""
    app = app_from_environment()
    with app.database.sessions() as session:
        rows = journey_summaries(session)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        f"{'journey':<28} {'status':<8} {'version':>7} {'trigger':<9} {'in flight':>9} "
        f"{'entries':>8} {'converted':>9}  paused"
    )
    for row in rows:
        paused = "-"
        if row["paused_at"]:
            at = minute(datetime.fromisoformat(row["paused_at"]))
            paused = f"by {row['paused_by']} at {at}"
        click.echo(
            f"{row['id']:<28} {row['status']:<8} {row['version']:>7} {row['trigger']:<9} "
            f"{row['active_enrollments']:>9} {row['entries']:>8} {row['conversions']:>9}  {paused}"
        )


@journeys.command("report")
@click.argument("journey_id")
@click.option("--json", "as_json", is_flag=True)
@guard
def report_command(journey_id: str, as_json: bool) -> None:
    """Per split variant: entries, sends, conversions, rate, and the lift over the holdout."""
    app = app_from_environment()
    with app.database.sessions() as session:
        report = journey_report(session, journey_id)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
        return
    print_report(report)


def print_report(report: JourneyReport) -> None:
    """The report as text; a journey without splits gets one line saying so, then its totals."""
    if not report.has_splits:
        click.echo(
            f"journey `{report.journey_id}` has no split step, so no variants to compare "
            "(add a split with a holdout); its totals:",
            err=True,
        )
    for line in format_report(report):
        click.echo(line)


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
@click.option("--json", "as_json", is_flag=True, help="print the timeline and the summary as JSON")
@click.option(
    "--report",
    "with_report",
    is_flag=True,
    help="also print `journeys report` of each journey with a split, on the simulated data",
)
@click.option(
    "--open-rate",
    "open_rates",
    multiple=True,
    metavar="RATE|TEMPLATE=RATE",
    help="share of sent emails opened (0 to 1), for every email or one template; repeatable "
    "[default: 0, no opens]",
)
@click.option(
    "--click-rate",
    "click_rates",
    multiple=True,
    metavar="RATE|TEMPLATE=RATE",
    help="share of sent emails clicked (a click counts as an open); repeatable [default: 0]",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="draw of the opens and clicks: the same seed gives the same members",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="show how far the virtual clock has gone, on stderr [default: when stderr is a terminal]",
)
@guard
def simulate_command(
    start: str,
    end: str,
    journey_id: str | None,
    members_file: Path | None,
    events_file: Path | None,
    as_json: bool,
    with_report: bool,
    open_rates: tuple[str, ...],
    click_rates: tuple[str, ...],
    seed: int,
    progress: bool | None,
) -> None:
    """Run the journeys over a period with a virtual clock; nothing is sent or stored.

    Nobody opens or clicks a simulated email unless --open-rate/--click-rate say how
    many do, so journeys branching on engagement take their "not engaged" path.
    """
    try:
        period = parse_day(start), parse_day(end, end=True)
    except ValueError as exc:
        fail(f"--from/--to: {exc}; use YYYY-MM-DD or an ISO instant", 2)
    try:
        rates = parse_rates(open_rates, click_rates, seed)
    except ValueError as exc:
        fail(str(exc), 2)
    if period[0] > period[1]:
        fail(f"--from {start} is after --to {end}", 2)
    app = app_from_environment()
    shown = sys.stderr.isatty() if progress is None else progress
    bar = _ProgressLine(*period) if shown else None
    try:
        result = simulate(
            app,
            start=period[0],
            end=period[1],
            journey_id=journey_id,
            members_file=members_file,
            events_file=events_file,
            with_reports=with_report,
            progress=bar,
            engagement=rates,
        )
    finally:
        if bar is not None:
            bar.close()
    for problem in result.problems:
        click.echo(problem, err=True)
    if as_json:
        document: dict[str, object] = {"timeline": result.records, "summary": result.summary()}
        if with_report:
            document["reports"] = [r.as_json() for r in result.reports]
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
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
            f"{journey}: {_counted(row)}, {row['conversions']} conversions, {sends}"
            f"{_engaged(row)}, {row['points']} points, "
            f"{row['sms_segments']} SMS segments (~{row['sms_cost']})"
        )
        for split, arms in sorted(row["splits"].items()):
            if len(row["splits"]) > 1:
                click.echo(f"  split {split}:")
            for variant, figures in sorted(arms.items()):
                click.echo(
                    f"  {variant}: {_counted(figures)}, {figures['sends']} sends"
                    f"{_engaged(figures)}, {figures['conversions']} conversions"
                )
    for report in result.reports:
        click.echo("")
        print_report(report)


def _counted(figures: dict[str, Any]) -> str:
    """Entries, and the members in flight at the start when there are."""
    text = f"{figures['entries']} entries"
    if figures["in_flight"]:
        text += f" (+{figures['in_flight']} in flight at the start)"
    return text


def _engaged(figures: dict[str, Any]) -> str:
    """Simulated opens and clicks, when there are."""
    if figures["opens"] or figures["clicks"]:
        return f", {figures['opens']} opens, {figures['clicks']} clicks"
    return ""


class _ProgressLine:
    """One line on stderr, rewritten in place: the simulated date and the share of the period."""

    WIDTH = 30

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.span = start, max((end - start).total_seconds(), 1.0)
        self.began = time.monotonic()
        self.shown = -1

    def __call__(self, now: datetime) -> None:
        share = min(max((now - self.start).total_seconds() / self.span, 0.0), 1.0)
        permille = int(share * 1000)
        if permille == self.shown:
            return
        self.shown = permille
        filled = int(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        elapsed = time.monotonic() - self.began
        sys.stderr.write(
            f"\rsimulating [{bar}] {share:6.1%}  {now:%Y-%m-%d %H:%M}Z  {elapsed:5.0f} s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()


@journeys.command("preview")
@click.argument("journey_id")
@click.option("--member", "external_id", required=True)
@click.option("--step", "step_id", help="only this send step")
@click.option(
    "--event",
    "event_json",
    metavar="JSON",
    help="the triggering event's data as a JSON object (or a whole event: type and data) "
    "[default: the member's latest event of the trigger's type]",
)
@click.option("--json", "as_json", is_flag=True)
@guard
def preview_command(
    journey_id: str, external_id: str, step_id: str | None, event_json: str | None, as_json: bool
) -> None:
    """Render what a member would get from a journey's send steps, with the data used.

    A member outside the journey's audience (or an event outside its trigger's
    conditions) gets one line saying so, and exit status 1.
    """
    event = None
    if event_json is not None:
        try:
            event = json.loads(event_json)
        except ValueError as exc:
            fail(f"--event is not JSON ({exc})", 2)
        if not isinstance(event, dict):
            fail('--event must be a JSON object, e.g. \'{"order_id": "1001", "total": 40}\'', 2)
    app = app_from_environment()
    try:
        previews = preview(app, journey_id, external_id, step_id, event=event)
    except OutsideAudience as exc:
        click.echo(str(exc))
        sys.exit(1)
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
