"""`loyalty members import|show|erase|export`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import click

from channels.outbox import erase_files
from cli.context import app_from_environment, guard
from crm_sync.runs import erase_everywhere
from loyalty.export import export_member, outbox_bodies
from loyalty.importer import import_members
from loyalty.members import get_member, member_view

__all__ = ["members"]

#: Files larger than this get a progress bar on import.
PROGRESS_BAR_BYTES = 1 << 20


@click.group()
def members() -> None:
    """Import and inspect loyalty members."""


@members.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="default: by suffix")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="write JSON")
@guard
def members_import(path: Path, fmt: str | None, report_path: Path | None) -> None:
    """Import or update members from CSV or JSONL (upsert by external_id).

    Exit status: 0 all rows imported, 1 some rows rejected, 2 the file is unusable.
    """
    app = app_from_environment()
    size = path.stat().st_size if path.exists() else 0
    with _progress(size, f"importing {path.name}") as progress:
        report = import_members(
            app.database, path, app.settings, app.clock, fmt=fmt, progress=progress
        )
    for problem in report.rejected:
        click.echo(f"row {problem.row}: {problem.field}: {problem.reason}", err=True)
    for problem in report.warnings:
        click.echo(f"row {problem.row}: warning: {problem.field}: {problem.reason}", err=True)
    click.echo(
        f"{report.rows} rows: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.rejected_rows} rejected"
    )
    if report_path is not None:
        report_path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    sys.exit(1 if report.rejected else 0)


@contextmanager
def _progress(size: int, label: str) -> Iterator[Callable[[int], None] | None]:
    if size < PROGRESS_BAR_BYTES:
        yield None
        return
    with click.progressbar(length=size, label=label, file=sys.stderr) as bar:
        done = 0

        def advance(position: int) -> None:
            nonlocal done
            if position > done:
                bar.update(position - done)
                done = position

        yield advance


@members.command("show")
@click.argument("external_id")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@guard
def members_show(external_id: str, as_json: bool) -> None:
    """Show one member with their loyalty fields."""
    app = app_from_environment()
    with app.database.sessions() as session:
        member = get_member(session, external_id)
        view = member_view(
            session,
            member,
            now=app.clock.now(),
            public_base_url=app.settings.public_base_url,
            default_zone=app.settings.default_time_zone,
        )
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    for key, value in view.items():
        click.echo(f"{key:<20} {'' if value is None else value}")


@members.command("erase")
@click.argument("external_id")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@guard
def members_erase(external_id: str, yes: bool) -> None:
    """Erase a member's personal data here and in the connected CRMs (GDPR)."""
    app = app_from_environment()
    with app.database.sessions() as session:
        member_id = get_member(session, external_id).id
    if not yes:
        click.confirm(f"Erase member {external_id} everywhere?", abort=True)
    reached, stopped = erase_everywhere(
        app, member_id, erase_files=partial(erase_files, app.settings.outbox_dir)
    )
    crms = ", ".join(
        f"{crm}: {'erased' if found else 'not there'}" for crm, found in reached.items()
    )
    click.echo(
        f"erased {external_id}; {stopped['messages_cancelled']} queued message(s) cancelled, "
        f"{stopped['enrollments_ended']} journey(s) ended; CRMs: {crms or 'none configured'}; "
        f"{stopped['files_removed']} outbox file(s) removed"
    )


@members.command("export")
@click.argument("external_id")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="default: stdout"
)
@guard
def members_export(external_id: str, out: Path | None) -> None:
    """Write everything held about a member as one JSON document (GDPR access request)."""
    app = app_from_environment()
    with app.database.sessions() as session:
        member = get_member(session, external_id)
        document = export_member(
            session, member.id, bodies=outbox_bodies(app.settings.outbox_dir), now=app.clock.now()
        )
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    # Personal data: readable by its owner only.
    with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as stream:
        stream.write(text)
    click.echo(f"exported {external_id} to {out}", err=True)
