"""The live database's state, copied into the simulation's database as the engine reads it.

Members, their ledger, consents, referrals, suppressions and processed events,
the journey versions with every enrollment and the variants they got at each
split (those in flight go on from where they wait), and the message history (so
frequency caps count what was already sent). Ids are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select

from loyalty.db import Database
from loyalty.models import (
    Consent,
    Enrollment,
    Event,
    JourneyVersion,
    LedgerEntry,
    Member,
    Message,
    Referral,
    SplitChoice,
    Suppression,
)
from loyalty.states import IN_FLIGHT, MessageState

__all__ = ["Copied", "copy_state"]


@dataclass
class Copied:
    """What the copy brought over, so the timeline shows only what the simulation did."""

    #: Enrollments copied: those already finished, and those still in flight.
    finished: set[int] = field(default_factory=set)
    in_flight: set[int] = field(default_factory=set)
    ledger_up_to: int = 0
    #: Messages whose fate was settled before the copy (sent, suppressed, failed…).
    settled_messages: set[int] = field(default_factory=set)


#: Copied in this order (foreign keys), ids kept. Events only once processed, so the
#: simulation replays no real event; the ledger then drops its link to events.
_COPIED_MODELS: tuple[Any, ...] = (
    JourneyVersion,
    Member,
    Consent,
    Referral,
    Event,
    LedgerEntry,
    Suppression,
    Enrollment,
    SplitChoice,
    Message,
)
_UNSETTLED = (MessageState.PENDING, MessageState.DEFERRED, MessageState.CLAIMED)


def copy_state(source: Database, target: Database) -> Copied:
    """The database's state as the engine reads it, in batches (ids kept)."""
    copied = Copied()
    for model in _COPIED_MODELS:
        table = model.__table__
        columns = [c.key for c in table.columns]
        query = select(table).order_by(*table.primary_key.columns)
        if model is Event:
            query = query.where(table.c.processed_at.is_not(None))
        with source.sessions() as reader:
            batch: list[dict[str, Any]] = []
            for row in reader.execute(query).mappings():
                values = {c: row[c] for c in columns}
                if model is LedgerEntry:
                    values["event_id"] = None
                    copied.ledger_up_to = max(copied.ledger_up_to, values["id"])
                elif model is Member:
                    values["referred_by_id"] = None  # a referrer may come later in id order
                elif model is Enrollment:
                    going = values["state"] in IN_FLIGHT
                    (copied.in_flight if going else copied.finished).add(values["id"])
                elif model is Message and values["state"] not in _UNSETTLED:
                    copied.settled_messages.add(values["id"])
                batch.append(values)
                if len(batch) == 1000:
                    _insert(target, model, batch)
                    batch = []
            _insert(target, model, batch)
    return copied


def _insert(target: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        with target.transaction() as session:
            session.execute(insert(model.__table__), rows)
