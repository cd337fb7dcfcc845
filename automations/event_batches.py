"""Processing events that arrive together: one transaction for the events and the steps
they start.

Processed one by one, each event costs its own transaction (its row, its member, the
published journeys, the pauses, a commit), and the journeys it starts another. Here a
batch holds its events and their members first (in id order; on PostgreSQL rows
another worker holds are skipped, not waited for, and handed back to go on their own),
applies each event and routes it into the journeys as `process_event` does, runs the
steps of the enrollments they started or woke on the rows it holds, and commits once.
A failure rolls the batch back; each of its events then goes on its own, with that
actor's retries, parking and dead letter, so that one never holds the rest.
"""

from __future__ import annotations

from sqlalchemy import select

from automations.routing import Entries, route_event, waiting_enrollments
from automations.runner_batches import RanBatch, run_held
from loyalty import events
from loyalty.app import App
from loyalty.db import among
from loyalty.models import Enrollment

__all__ = ["process_events"]

#: The enrollments a batch routed, read for their steps (built once: the ids go as a parameter).
_ROUTED = select(Enrollment).where(among(Enrollment.id, "ids"))


def process_events(app: App, event_ids: list[int]) -> RanBatch:
    """Apply and route each event of the batch, in id order, and run the enrollments they
    started until each waits or ends, all in one transaction.

    A failure raises, and rolls the whole batch back: the caller then sends each alone.
    """
    out = RanBatch()
    now = app.clock.now()
    settings = app.settings
    with app.database.transaction() as session:
        # (the rows stay referenced here, so the session's identity map keeps them)
        held, out.alone = events.hold_events(
            session, event_ids, now=now, skip_locked=not app.database.is_sqlite
        )
        waiting = waiting_enrollments(session, {m.id for _, m in held})
        started: list[int] = []
        processed: dict[int, int] = {}  # stored together: member → its event processed here
        entries = Entries()  # made together, a journey at a time
        for event, member in held:
            if event.processed_at is not None or event.parked_at is not None:
                continue  # done before (a message delivered twice), or set aside
            if member.id in entries.members:  # its next event sees the entries it made
                started += entries.enter(session, now=now, settings=settings)
            if member.id in processed:  # and its earlier ones processed (a refund reads them)
                events.store_processed(session, list(processed.values()), now)
                processed.clear()
            out.events += events.process_held(session, event, member, settings=settings, now=now)
            processed[member.id] = event.id
            mine = waiting.get(member.id, [])
            started += route_event(session, event, settings=settings, waiting=mine, entries=entries)
        started += entries.enter(session, now=now, settings=settings)
        events.store_processed(session, list(processed.values()), now)
        # Every enrollment routed here is this transaction's: inserted by it, or locked;
        # read in one query for the steps (and kept here, so the identity map keeps them).
        routed = {e.id: e for e in session.scalars(_ROUTED, {"ids": started})} if started else {}
        run_held(session, app, sorted(routed), out, shard=held[0][0].id if held else 0)
    return out
