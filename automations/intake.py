"""Taking events in: store each once, then hand it to the workers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dramatiq
import redis
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from automations.runtime import actors
from automations.triggers.entry_batches import batch_size, chunks
from loyalty.app import App
from loyalty.errors import InvalidEventError, SkippableError
from loyalty.event_types import INTERNAL_SOURCE, EventInput
from loyalty.events import Recorded, record, record_event
from loyalty.models import Event, LedgerEntry
from loyalty.states import EventState

__all__ = [
    "Emitted",
    "EventSummary",
    "IngestReport",
    "describe_events",
    "emit",
    "ingest_file",
    "queue_events",
    "queue_together",
    "store_and_queue",
    "store_batch",
    "wait_processed",
]

log = logging.getLogger(__name__)

#: What a broker that cannot be reached raises when asked to queue.
BROKER_OUTAGES: tuple[type[Exception], ...] = (redis.RedisError, dramatiq.errors.BrokerError)


@dataclass(frozen=True)
class Emitted:
    row: Event
    created: bool
    #: False when the broker could not be reached: the scheduler's relay queues it later.
    queued: bool


def store_and_queue(app: App, event: EventInput) -> Emitted:
    """Store the event (once per source and id), then queue it for the workers.

    Queueing happens after the commit; should the broker be unreachable, the
    event stays stored and the scheduler's relay queues it later, so nothing is lost.
    """
    _check_source(event)
    with app.database.transaction() as session:
        row, created = record_event(session, event, settings=app.settings, now=app.clock.now())
    if not created:
        return Emitted(row, False, True)
    try:
        actors.send("process_event", row.id)
    except BROKER_OUTAGES as exc:
        log.info("event.queue_later", extra={"event_id": row.id, "error": type(exc).__name__})
        return Emitted(row, True, False)
    return Emitted(row, True, True)


def _check_source(event: EventInput) -> None:
    if event.source == INTERNAL_SOURCE:
        raise InvalidEventError(
            f"source {INTERNAL_SOURCE!r} is reserved for the program's own events; "
            "name the shop or system that sends them (--source or `source`)"
        )


def store_batch(app: App, events: Sequence[EventInput]) -> list[Recorded | SkippableError]:
    """Store each event once, all in one transaction; a bad one is answered, the rest stored.

    First with no savepoint but for events that may create their member (what nearly
    every batch needs: an event found wrong is answered before it writes anything).
    Should the database refuse one (one that another request stored at the same
    moment, a value it cannot hold), the batch is rolled back and stored again with a
    savepoint per event, so that the refused one undoes only itself. Nothing is
    queued: see `queue_events`, after the commit.
    """
    try:
        return _store_batch(app, events, guarded=False)
    except (IntegrityError, DataError):
        return _store_batch(app, events, guarded=True)


def _store_batch(
    app: App, events: Sequence[EventInput], *, guarded: bool
) -> list[Recorded | SkippableError]:
    results: list[Recorded | SkippableError] = []
    with app.database.transaction() as session:
        now = app.clock.now()
        for event in events:
            try:
                _check_source(event)
                if guarded or event.profile is not None:
                    results.append(_record_once(app, session, event, now))
                else:  # `record` writes only once the event passed its checks
                    results.append(record(session, event, settings=app.settings, now=now))
            except SkippableError as exc:
                results.append(exc)
    return results


def _record_once(app: App, session: Session, event: EventInput, now: datetime) -> Recorded:
    for attempt in range(2):
        try:
            with session.begin_nested():
                return record(session, event, settings=app.settings, now=now)
        except IntegrityError:
            # Another transaction stored this event or created its member meanwhile:
            # the second look finds theirs.
            if attempt:
                raise InvalidEventError("the database refused the event (a conflict)") from None
        except DataError as exc:
            cause = type(exc.orig).__name__ if exc.orig is not None else "DataError"
            raise InvalidEventError(f"the database refused the event ({cause})") from None
    raise AssertionError("unreachable")


def queue_events(ids: Sequence[int], actor: str = "process_event", *, spread: int = 1) -> list[int]:
    """Hand stored events (or shop deliveries) to the workers; those left for the relay.

    Several that arrived together go a batch per message (`actors.send_batches`, over at
    least `spread` messages when there are enough), so that the journeys they start run
    together too; one goes on its own, straight to `actor`. Needs the broker built in
    this process (`automations.runtime.broker`).
    """
    together = actors.BATCH_ACTORS.get(actor)
    size = batch_size(len(ids), spread) if together else 1
    batches = list(chunks(ids, size))
    for position, batch in enumerate(batches):
        try:
            if len(batch) == 1 or together is None:
                actors.send(actor, batch[0])
            else:
                actors.send(together, batch)
        except BROKER_OUTAGES as exc:
            log.info("event.queue_later", extra={"event_id": batch[0], "error": type(exc).__name__})
            return [i for later in batches[position:] for i in later]
    return []


def queue_together(ids: Sequence[int], actor: str) -> list[int]:
    """Hand stored rows to the workers in one message (`actor` takes the list of ids);
    those left for the relay (all of them when the broker is unreachable)."""
    if not ids:
        return []
    try:
        actors.send(actor, list(ids))
    except BROKER_OUTAGES as exc:
        log.info("event.queue_later", extra={"rows": len(ids), "error": type(exc).__name__})
        return list(ids)
    return []


def emit(app: App, event: EventInput) -> tuple[Event, bool]:
    """Store the event and queue it (see `store_and_queue`); returns (row, created)."""
    emitted = store_and_queue(app, event)
    return emitted.row, emitted.created


@dataclass
class IngestReport:
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    #: Stored while the broker was unreachable: the scheduler's relay queues them.
    queue_later: list[int] = field(default_factory=list)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield number, line


def ingest_file(app: App, path: Path, *, source: str) -> IngestReport:
    """Emit every event of a JSONL file; a bad line is reported and the rest go on."""
    report = IngestReport()
    for number, line in _lines(path):
        report.lines += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            report.errors.append((number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        try:
            emitted = store_and_queue(app, EventInput.from_json(value, source=source))
        except SkippableError as exc:
            report.errors.append((number, str(exc)))
            continue
        report.event_ids.append(emitted.row.id)
        if not emitted.queued:
            report.queue_later.append(emitted.row.id)
        if emitted.created:
            report.stored += 1
        else:
            report.duplicates += 1
    return report


def wait_processed(app: App, ids: list[int], *, timeout: float = 60.0) -> bool:
    """Poll until every event in `ids` is processed or parked; False when `timeout` passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.database.sessions() as session:
            pending = session.scalar(
                select(Event.id)
                .where(Event.id.in_(ids), Event.processed_at.is_(None), Event.parked_at.is_(None))
                .limit(1)
            )
        if pending is None:
            return True
        time.sleep(0.2)
    return False


@dataclass(frozen=True)
class EventSummary:
    """What became of one stored event: processed, queued or parked, and the points it moved."""

    id: int
    type: str
    source: str
    external_id: str
    processed: bool
    points: int | None
    error: str | None
    parked: bool = False

    def __str__(self) -> str:
        state = EventState.PROCESSED if self.processed else EventState.QUEUED
        if self.parked:
            state = EventState.PARKED
        detail = f", points {self.points:+d}" if self.points is not None else ""
        note = f" ({self.error})" if self.error else ""
        return (
            f"event {self.id} {self.type} [{self.source}/{self.external_id}]: {state}{detail}{note}"
        )


def describe_events(app: App, ids: list[int]) -> list[EventSummary]:
    """A summary of each event in `ids`."""
    summaries = []
    with app.database.sessions() as session:
        for event in session.scalars(select(Event).where(Event.id.in_(ids))):
            deltas = session.scalars(
                select(LedgerEntry.delta).where(LedgerEntry.event_id == event.id)
            ).all()
            summaries.append(
                EventSummary(
                    id=event.id,
                    type=event.type,
                    source=event.source,
                    external_id=event.external_id,
                    processed=event.processed_at is not None,
                    points=sum(deltas) if deltas else None,
                    error=event.error,
                    parked=event.parked_at is not None,
                )
            )
    return summaries
