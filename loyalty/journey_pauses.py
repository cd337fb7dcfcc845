"""Pausing a journey from the console: an emergency stop that lets no new member in.

Members already in the journey go on. The pause lives in the database, so every
worker and scheduler sees it on its next entry decision; resuming lifts it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.db import per_transaction
from loyalty.models import ConsoleAction, JourneyPause

__all__ = ["is_paused", "pause", "paused_journeys", "record_action", "resume"]


def is_paused(session: Session, journey_id: str) -> bool:
    """Whether the console has paused this journey (read once per transaction: a batch of
    entries asks for each journey many times)."""
    known = per_transaction(session, _KNOWN)
    if journey_id not in known:
        paused = session.scalar(
            select(JourneyPause.paused_at).where(JourneyPause.journey_id == journey_id)
        )
        known[journey_id] = paused is not None
    return bool(known[journey_id])


#: Where a transaction keeps the pauses it has read.
_KNOWN = "journey_pauses.known"


def paused_journeys(session: Session) -> dict[str, JourneyPause]:
    """Every journey paused now, by id."""
    rows = session.scalars(select(JourneyPause).where(JourneyPause.paused_at.is_not(None)))
    return {row.journey_id: row for row in rows}


def pause(session: Session, journey_id: str, *, by: str, now: datetime) -> None:
    """Pause the journey (once; pausing a paused journey changes nothing) and record who."""
    row = session.get(JourneyPause, journey_id, with_for_update=True)
    if row is None:
        row = JourneyPause(journey_id=journey_id)
        session.add(row)
    per_transaction(session, _KNOWN).pop(journey_id, None)
    if row.paused_at is None:
        row.paused_at, row.paused_by = now, by
        record_action(session, by, "pause", f"journey:{journey_id}", now=now)


def resume(session: Session, journey_id: str, *, by: str, now: datetime) -> None:
    """Lift the journey's pause and record who."""
    row = session.get(JourneyPause, journey_id, with_for_update=True)
    per_transaction(session, _KNOWN).pop(journey_id, None)
    if row is None or row.paused_at is None:
        return
    row.paused_at = row.paused_by = None
    row.resumed_at, row.resumed_by = now, by
    record_action(session, by, "resume", f"journey:{journey_id}", now=now)


def record_action(session: Session, by: str, action: str, target: str, *, now: datetime) -> None:
    """Append what a console user did to the console's action log."""
    session.add(ConsoleAction(at=now, user_email=by, action=action, target=target))
