"""Taking events in: store each once, then hand it to the workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from automations import actors
from loyalty.app import App
from loyalty.errors import SkippableError
from loyalty.events import EventInput, record_event
from loyalty.models import Event

__all__ = ["IngestReport", "emit", "ingest_file"]


def emit(app: App, event: EventInput) -> tuple[Event, bool]:
    """Store the event (once per source and id) and queue it; returns (row, created).

    Queueing happens after the commit; should it fail, the scheduler's relay
    queues the stored event later, so nothing is lost.
    """
    with app.database.transaction() as session:
        row, created = record_event(session, event, settings=app.settings, now=app.clock.now())
    if created:
        actors.send("process_event", row.id)
    return row, created


@dataclass
class IngestReport:
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)


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
            row, created = emit(app, EventInput.from_json(value, source=source))
        except SkippableError as exc:
            report.errors.append((number, str(exc)))
            continue
        report.event_ids.append(row.id)
        if created:
            report.stored += 1
        else:
            report.duplicates += 1
    return report
