"""What the scheduler's periodic jobs do: find due work and queue it, nothing more.

Each tick is safe to run twice or on two machines at once: the actors it
queues act only when the rows say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from automations import actors
from loyalty.app import App
from loyalty.models import Event, LedgerEntry

__all__ = ["TICKS", "Tick"]

#: Rows a tick queues at most per run; the next run takes the rest.
TICK_BATCH = 5000


@dataclass(frozen=True)
class Tick:
    name: str
    seconds: int
    run: Callable[[App], int]
    description: str
    placeholder: bool = False


def relay_events(app: App) -> int:
    """Queue stored events that no worker has processed (lost with Redis, say)."""
    cutoff = app.clock.now() - timedelta(seconds=app.settings.event_relay_after_seconds)
    with app.database.sessions() as session:
        ids = session.scalars(
            select(Event.id)
            .where(Event.processed_at.is_(None), Event.received_at <= cutoff)
            .order_by(Event.id)
            .limit(TICK_BATCH)
        ).all()
    for event_id in ids:
        actors.send("process_event", event_id)
    return len(ids)


def expire_points(app: App) -> int:
    """Queue an expiry for each member holding a lot past its expiry."""
    with app.database.sessions() as session:
        member_ids = session.scalars(
            select(LedgerEntry.member_id)
            .where(LedgerEntry.remaining > 0, LedgerEntry.expires_at <= app.clock.now())
            .distinct()
            .limit(TICK_BATCH)
        ).all()
    for member_id in member_ids:
        actors.send("expire_points", member_id)
    return len(member_ids)


def _placeholder(app: App) -> int:
    return 0


TICKS = (
    Tick("outbox_relay", 30, relay_events, "queue stored events and messages not yet processed"),
    Tick("expire_points", 3600, expire_points, "post expiry entries for lots past expires_at"),
    Tick("due_enrollments", 30, _placeholder, "wake enrollments whose wait is over", True),
    Tick("date_triggers", 300, _placeholder, "enter members into date journeys", True),
    Tick("cron_journeys", 60, _placeholder, "fire scheduled journeys", True),
    Tick("crm_push", 300, _placeholder, "push changed members to the CRMs", True),
    Tick("crm_pull", 900, _placeholder, "pull CRM edits back", True),
)
