"""`loyalty events emit|ingest`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from automations.intake import describe_events, ingest_file, store_and_queue, wait_processed
from cli.context import app_from_environment, fail, guard, workers
from loyalty.app import App
from loyalty.event_types import EventInput, parse_instant

__all__ = ["events"]

RELAY_NOTE = (
    "note: the broker (REDIS_URL) is unreachable; {count} stored, and the scheduler's "
    "relay will queue them once it is back"
)


@click.group()
def events() -> None:
    """Send events (orders, refunds, redemptions, custom types)."""


def _wait(app: App, ids: list[int], timeout: float = 60.0) -> None:
    if not wait_processed(app, ids, timeout=timeout):
        fail(f"events not processed within {timeout:.0f}s; is `loyalty worker` running?", 1)


@events.command("emit")
@click.argument("event_type")
@click.option("--member", "member", required=True, help="the member's external_id")
@click.option("--id", "event_id", help="idempotency id; the same id is stored once")
@click.option("--at", "at", help="when it happened, ISO 8601 with offset")
@click.option("--data", "data", default="{}", help="JSON object payload")
@click.option("--source", default="shop", show_default=True)
@click.option("--wait", is_flag=True, help="with Redis: wait until processed")
@guard
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
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        fail(f"--data is not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(payload, dict):
        fail('--data must be a JSON object such as \'{"order_id": "1001"}\'')
    app = app_from_environment()
    event = EventInput(
        type=event_type,
        member=member,
        id=event_id,
        at=parse_instant(at) if at else None,
        data=payload,
        source=source,
    )
    with workers(app, wait) as poll:
        emitted = store_and_queue(app, event)
    row = emitted.row
    if not emitted.queued:
        click.echo(RELAY_NOTE.format(count="the event"), err=True)
    elif poll:
        _wait(app, [row.id])
    if not emitted.created:
        click.echo(f"event {source}/{row.external_id} was already stored; nothing changed")
    for summary in describe_events(app, [row.id]):
        click.echo(str(summary))


@events.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default="shop", show_default=True)
@click.option("--wait", is_flag=True, help="with Redis: wait until processed")
@guard
def events_ingest(path: Path, source: str, wait: bool) -> None:
    """Emit every event of a JSONL file (type, member, id, at, data per line)."""
    app = app_from_environment()
    with workers(app, wait) as poll:
        report = ingest_file(app, path, source=source)
    if report.queue_later:
        click.echo(RELAY_NOTE.format(count=f"{len(report.queue_later)} event(s)"), err=True)
    elif poll:
        _wait(app, report.event_ids)
    for number, reason in report.errors:
        click.echo(f"{path}:{number}: {reason}", err=True)
    click.echo(
        f"{report.lines} lines: {report.stored} stored, {report.duplicates} already "
        f"stored, {len(report.errors)} rejected"
    )
    sys.exit(1 if report.errors else 0)
