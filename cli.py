"""The `loyalty` command: thin commands over the packages."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import select

from loyalty import ledger
from loyalty.app import App
from loyalty.db import upgrade
from loyalty.errors import ConfigError, FatalError, SkippableError
from loyalty.events import EventInput, parse_instant
from loyalty.logs import configure_logging
from loyalty.members import get_member, member_view
from loyalty.models import Event, LedgerEntry
from loyalty.settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])

#: Files larger than this get a progress bar on import.
PROGRESS_BAR_BYTES = 1 << 20


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def app_from_environment() -> App:
    """The App from settings, migrated (the entry point of package commands)."""
    return _app()


def _app(*, migrate: bool = True) -> App:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level)
    app = App.from_settings(settings)
    if migrate and not app.database.is_migrated():
        if not app.database.is_sqlite:
            _fail("the database schema is not current; run `loyalty db upgrade` first")
        upgrade(app.database)
    return app


def _guard(fn: F) -> F:
    """Turn the program's own errors into one line and an exit status."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SkippableError as exc:
            _fail(str(exc), 1)
        except (FatalError, LookupError) as exc:
            _fail(str(exc).strip("'\""), 2)

    return run  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="loyalty-journeys")
def main() -> None:
    """Loyalty members, points, journeys, messages and CRM sync."""


# --- db ---------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@_guard
def db_upgrade(revision: str) -> None:
    """Create or migrate the tables (Alembic)."""
    app = _app(migrate=False)
    upgrade(app.database, revision)
    click.echo(f"database at {revision}: {app.database.engine.url.render_as_string()}")


# --- members ----------------------------------------------------------------------------


@main.group()
def members() -> None:
    """Import and inspect loyalty members."""


@members.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="default: by suffix")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="write JSON")
@_guard
def members_import(path: Path, fmt: str | None, report_path: Path | None) -> None:
    """Import or update members from CSV or JSONL (upsert by external_id).

    Exit status: 0 all rows imported, 1 some rows rejected, 2 the file is unusable.
    """
    from loyalty.importer import import_members

    app = _app()
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
@_guard
def members_show(external_id: str, as_json: bool) -> None:
    """Show one member with their loyalty fields."""
    app = _app()
    with app.database.sessions() as session:
        member = get_member(session, external_id)
        view = member_view(
            session, member, now=app.clock.now(), public_base_url=app.settings.public_base_url
        )
    if as_json:
        click.echo(json.dumps(view, indent=2, ensure_ascii=False))
        return
    for key, value in view.items():
        click.echo(f"{key:<20} {'' if value is None else value}")


@members.command("erase")
@click.argument("external_id")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@_guard
def members_erase(external_id: str, yes: bool) -> None:
    """Erase a member's personal data here and in the connected CRMs (GDPR)."""
    from crm_sync.runs import erase_member as erase_in_crms
    from loyalty.erasure import erase_member

    app = _app()
    with app.database.sessions() as session:
        member_id = get_member(session, external_id).id
    if not yes:
        click.confirm(f"Erase member {external_id} everywhere?", abort=True)
    reached = erase_in_crms(app, member_id)  # first: it needs the ids we are about to blank
    with app.database.transaction() as session:
        member = ledger.lock_member(session, member_id)
        stopped = erase_member(session, member, now=app.clock.now())
    crms = ", ".join(
        f"{crm}: {'erased' if found else 'not there'}" for crm, found in reached.items()
    )
    click.echo(
        f"erased {external_id}; {stopped['messages_cancelled']} queued message(s) cancelled, "
        f"{stopped['enrollments_ended']} journey(s) ended; CRMs: {crms or 'none configured'}"
    )


# --- points -----------------------------------------------------------------------------


@main.group()
def points() -> None:
    """The points ledger."""


@points.command("balance")
@click.argument("external_id")
@_guard
def points_balance(external_id: str) -> None:
    """Points balance, tier and the next points to expire."""
    app = _app()
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
@_guard
def points_history(external_id: str, as_json: bool) -> None:
    """Every ledger entry of a member, oldest first."""
    app = _app()
    with app.database.sessions() as session:
        member = get_member(session, external_id)
        entries = session.scalars(
            select(LedgerEntry).where(LedgerEntry.member_id == member.id).order_by(LedgerEntry.id)
        ).all()
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
@_guard
def points_adjust(external_id: str, delta: int, reason: str, key: str | None) -> None:
    """Add (positive) or take (negative) points by hand."""
    import uuid

    app = _app()
    now = app.clock.now()
    with app.database.transaction() as session:
        member = ledger.lock_member(session, get_member(session, external_id).id)
        posting = ledger.apply(
            session,
            member,
            "adjust",
            delta,
            key=key or f"manual:{uuid.uuid4()}",
            reason=reason,
            now=now,
            thresholds=app.settings.tier_thresholds,
            expires_at=ledger.default_expiry(now, app.settings.points_expiry_days),
        )
    state = "applied" if posting.applied else "already applied"
    click.echo(f"{state}: {posting.entry.delta:+d}; balance {member.points_balance}")


# --- events -----------------------------------------------------------------------------


@main.group()
def events() -> None:
    """Send events (orders, refunds, redemptions, custom types)."""


@contextmanager
def _workers(app: App, wait: bool) -> Iterator[bool]:
    """Build the broker; on the embedded default run worker threads until the work is done.

    Yields whether the caller should wait for processing by polling (Redis with --wait).
    """
    from automations import runtime
    from automations.broker import build_broker, embedded_worker, is_embedded
    from automations.journey_commands import publish_and_report

    runtime.configure(app)
    broker = build_broker(app.settings)
    if is_embedded(broker):
        publish_and_report(app, quiet=True)
        with embedded_worker(broker, app.settings.worker_threads):
            yield False
    else:
        yield wait


def _wait_processed(app: App, ids: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.database.sessions() as session:
            pending = session.scalar(
                select(Event.id).where(Event.id.in_(ids), Event.processed_at.is_(None)).limit(1)
            )
        if pending is None:
            return
        time.sleep(0.2)
    _fail(f"events not processed within {timeout:.0f}s; is `loyalty worker` running?", 1)


def _describe(app: App, event_ids: list[int]) -> None:
    with app.database.sessions() as session:
        for event in session.scalars(select(Event).where(Event.id.in_(event_ids))):
            deltas = session.scalars(
                select(LedgerEntry.delta).where(LedgerEntry.event_id == event.id)
            ).all()
            state = "processed" if event.processed_at else "queued"
            detail = f", points {sum(deltas):+d}" if deltas else ""
            note = f" ({event.error})" if event.error else ""
            click.echo(
                f"event {event.id} {event.type} [{event.source}/{event.external_id}]: "
                f"{state}{detail}{note}"
            )


@events.command("emit")
@click.argument("event_type")
@click.option("--member", "member", required=True, help="the member's external_id")
@click.option("--id", "event_id", help="idempotency id; the same id is stored once")
@click.option("--at", "at", help="when it happened, ISO 8601 with offset")
@click.option("--data", "data", default="{}", help="JSON object payload")
@click.option("--source", default="shop", show_default=True)
@click.option("--wait", is_flag=True, help="with Redis: wait until processed")
@_guard
def events_emit(
    event_type: str,
    member: str,
    event_id: str | None,
    at: str | None,
    data: str,
    source: str,
    wait: bool,
) -> None:
    """Store one event once and process it."""
    from automations.intake import emit

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        _fail(f"--data is not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(payload, dict):
        _fail('--data must be a JSON object such as \'{"order_id": "1001"}\'')
    app = _app()
    event = EventInput(
        type=event_type,
        member=member,
        id=event_id,
        at=parse_instant(at) if at else None,
        data=payload,
        source=source,
    )
    with _workers(app, wait) as poll:
        row, created = emit(app, event)
    if poll:
        _wait_processed(app, [row.id])
    if not created:
        click.echo(f"event {source}/{row.external_id} was already stored; nothing changed")
    _describe(app, [row.id])


@events.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default="shop", show_default=True)
@click.option("--wait", is_flag=True, help="with Redis: wait until processed")
@_guard
def events_ingest(path: Path, source: str, wait: bool) -> None:
    """Emit every event of a JSONL file (type, member, id, at, data per line)."""
    from automations.intake import ingest_file

    app = _app()
    with _workers(app, wait) as poll:
        report = ingest_file(app, path, source=source)
    if poll:
        _wait_processed(app, report.event_ids)
    for number, reason in report.errors:
        click.echo(f"{path}:{number}: {reason}", err=True)
    click.echo(
        f"{report.lines} lines: {report.stored} stored, {report.duplicates} already "
        f"stored, {len(report.errors)} rejected"
    )
    sys.exit(1 if report.errors else 0)


def _register_package_commands() -> None:
    from automations.journey_commands import journeys
    from automations.runtime_commands import dlq, run, scheduler_command, worker
    from channels.commands import messages
    from crm_sync.commands import crm
    from sandbox.command import sandbox
    from web.command import serve

    main.add_command(crm)
    main.add_command(journeys)
    main.add_command(messages)
    main.add_command(sandbox)
    main.add_command(serve)
    for command in (dlq, worker, scheduler_command, run):
        main.add_command(command)


_register_package_commands()

if __name__ == "__main__":
    main()
