"""Events: stored once per (source, id), then processed once.

Recording validates the type, the member and the payload (`event_types`) and
stores the row; nothing is stored when any of them is wrong. An event for a
member nobody knows yet may carry the member's profile: the member is then
created from it (`member_upsert`), in the same transaction as the event. Processing applies
the built-in effect of the type (`event_effects`: points for orders, clawbacks
for refunds) in one transaction and stamps `processed_at`, so running it twice
changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, func, not_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from loyalty import ledger
from loyalty.db import Database, among
from loyalty.errors import (
    InvalidEventError,
    RetriableError,
    RowError,
    SkippableError,
    UnknownMemberError,
)
from loyalty.event_effects import HANDLERS, apply_effect
from loyalty.event_types import (
    INTERNAL_SOURCE,
    PROGRAM_TYPES,
    EventInput,
    check_envelope,
    check_payload,
    check_type,
)
from loyalty.member_upsert import upsert_member
from loyalty.models import Event, Member
from loyalty.settings import Settings

__all__ = [
    "Recorded",
    "handle_event",
    "hold_events",
    "park_event",
    "process_event",
    "process_held",
    "record",
    "record_event",
    "store_processed",
    "unpark_event",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    row: Event
    #: False when the event was already stored (same source and id): nothing changed.
    created: bool
    #: The member was created from the event's profile.
    member_created: bool = False
    #: Profile fields left out of the new member because their value was invalid.
    warnings: tuple[RowError, ...] = ()


def record_event(
    session: Session,
    event: EventInput,
    *,
    settings: Settings,
    now: datetime,
) -> tuple[Event, bool]:
    """Store the event once per (source, id); returns (row, created)."""
    recorded = record(session, event, settings=settings, now=now)
    return recorded.row, recorded.created


def record(session: Session, event: EventInput, *, settings: Settings, now: datetime) -> Recorded:
    """Store the event once per (source, id), creating its member from its profile if new."""
    check_type(event.type, settings)
    if event.type in PROGRAM_TYPES and event.source != INTERNAL_SOURCE:
        raise InvalidEventError(
            f"type {event.type} is recorded by the program itself when the balance, tier or "
            "rewards change; send what causes it instead (an order, a refund, a points adjustment)"
        )
    check_envelope(event)
    found = session.execute(_MEMBER_NAMED, {"member": event.member}).first()
    if found is None and event.profile is None:
        raise UnknownMemberError(event.member)
    data = event.data or {}
    check_payload(event.type, data)
    member_created = False
    warnings: tuple[RowError, ...] = ()
    if found is None:
        profile = event.profile or {}  # not None: checked above
        upserted = upsert_member(
            session, event.member, profile, settings=settings, now=now, source=event.source
        )
        member_id, erased_at = upserted.member.id, None
        member_created, warnings = upserted.created, tuple(upserted.warnings)
    else:
        member_id, erased_at = found
    if erased_at is not None and event.source != INTERNAL_SOURCE:
        raise InvalidEventError(
            f"member {event.member!r} was erased (GDPR); events for erased members are refused"
        )
    external_id = event.id or str(uuid.uuid4())
    existing = session.scalar(_STORED, {"source": event.source, "external_id": external_id})
    if existing is not None:
        return Recorded(existing, False)
    row = Event(
        source=event.source,
        external_id=external_id,
        type=event.type,
        member_id=member_id,
        payload=data,
        occurred_at=event.at or now,
        received_at=now,
    )
    session.add(row)
    session.flush()
    return Recorded(row, True, member_created, warnings)


#: `record`'s reads, built once (the values go as parameters).
_MEMBER_NAMED = select(Member.id, Member.erased_at).where(Member.external_id == bindparam("member"))
_STORED = select(Event).where(
    Event.source == bindparam("source"), Event.external_id == bindparam("external_id")
)


def process_event(
    session: Session, event_id: int, *, settings: Settings, now: datetime
) -> list[int]:
    """Apply the event's effect once. Returns the ids of events it caused."""
    event = session.get(Event, event_id, with_for_update=True)
    if event is None:
        return []
    return _process(session, event, settings=settings, now=now)[0]


def _process(
    session: Session,
    event: Event,
    *,
    settings: Settings,
    now: datetime,
    held: Member | None = None,
) -> tuple[list[int], Member | None]:
    """`process_event` of a locked event; also the member it locked (None: nothing to do).
    `held`: the event's member, when the transaction already holds its row."""
    if event.processed_at is not None or event.parked_at is not None:
        return [], None
    if held is not None:
        member = held  # `hold_events` checked the order for the batch
    else:
        member = ledger.lock_member(session, event.member_id)
        _wait_for_earlier(session, event, now, settings.event_order_wait_ms / 1000)
    caused: list[int] = []
    for effect in apply_effect(session, event, member, settings, now):
        row, created = record_event(session, effect, settings=settings, now=now)
        if created and ledger.unheard(session, row.type):
            row.processed_at = now  # as processing would leave it (`ledger.heard_by`)
        else:
            caused.append(row.id)
    caused += ledger.take_emitted(session)
    if held is not None:
        # The batch stores its events' processed_at in one statement (`store_processed`):
        # the row is not left for the ORM to flush, a statement each.
        set_committed_value(event, "processed_at", now)
    else:
        event.processed_at = now
    return caused, member


def hold_events(
    session: Session, event_ids: list[int], *, now: datetime, skip_locked: bool
) -> tuple[list[tuple[Event, Member]], list[int]]:
    """Lock a batch's events, then their members, each in id order (so two batches never
    deadlock); the events this transaction holds with their member, in id order, and the
    ids left to process on their own. `skip_locked` (PostgreSQL): rows another worker
    holds are skipped, not waited for, and so are left to go alone; so are the events an
    earlier one of their member still holds back, which wait for it on their own."""
    ids = sorted(set(event_ids))
    options = {"populate_existing": True}
    rows = session.scalars(_HOLD_EVENTS[skip_locked], {"ids": ids}, execution_options=options)
    events = rows.all()
    members = {"ids": sorted({e.member_id for e in events})}
    found = session.scalars(_HOLD_MEMBERS[skip_locked], members, execution_options=options)
    locked = {m.id: m for m in found}
    held = [(e, locked[e.member_id]) for e in events if e.member_id in locked]
    # A member's events wait for an earlier one outside the batch (`_wait_for_earlier`):
    # those go alone, and so do the member's later ones in the batch, to keep their order.
    first = _earliest_open(session, [e for e, _ in held], now)
    held = [(e, m) for e, m in held if first.get(m.id, e.id) >= e.id]
    taken = {e.id for e, _ in held}
    return held, [i for i in ids if i not in taken]


def _holding_back(since: datetime | BindParameter[Any]) -> list[ColumnElement[bool]]:
    """Events that hold a member's later ones back (`_wait_for_earlier`): received after
    `since` (the ordering window's start)."""
    return [
        Event.type.in_(HANDLERS),
        Event.processed_at.is_(None),
        Event.parked_at.is_(None),
        Event.received_at > since,
    ]


def _locking(query: Select[Any]) -> dict[bool, Select[Any]]:
    """The query as it is, and (for `skip_locked`) locking its rows, skipping held ones."""
    return {False: query, True: query.with_for_update(skip_locked=True)}


#: A batch's statements, built once: their ids (and the moment) go as parameters.
_HOLD_EVENTS = _locking(select(Event).where(among(Event.id, "ids")).order_by(Event.id))
_HOLD_MEMBERS = _locking(select(Member).where(among(Member.id, "ids")).order_by(Member.id))
_EARLIEST_OPEN = (
    select(Event.member_id, func.min(Event.id))
    .where(
        among(Event.member_id, "members"),
        not_(among(Event.id, "events")),
        *_holding_back(bindparam("since", type_=Event.received_at.type)),
    )
    .group_by(Event.member_id)
)


def _earliest_open(session: Session, batch: list[Event], now: datetime) -> dict[int, int]:
    """Per member of the batch, the first event outside it that holds its later ones back."""
    if not batch:
        return {}
    values = {
        "members": sorted({e.member_id for e in batch}),
        "events": [e.id for e in batch],
        "since": now - ORDERING_WINDOW,
    }
    found = session.execute(_EARLIEST_OPEN, values)
    return {int(member_id): int(first) for member_id, first in found}


def process_held(
    session: Session, event: Event, member: Member, *, settings: Settings, now: datetime
) -> list[int]:
    """`process_event` of an event `hold_events` holds with its member (and found no earlier
    event holding back); the events it caused. One already processed or parked is left.

    Its processed_at is the caller's to store, with the batch's (`store_processed`).
    """
    return _process(session, event, settings=settings, now=now, held=member)[0]


#: The batch's events processed (their objects hold the value already: nothing to sync).
_PROCESSED = (
    update(Event)
    .where(among(Event.id, "ids"))
    .values(processed_at=bindparam("now", type_=Event.processed_at.type))
    .execution_options(synchronize_session=False)
)


def store_processed(session: Session, event_ids: list[int], now: datetime) -> None:
    """Store that the batch's events `process_held` processed were processed at `now`."""
    if event_ids:
        session.execute(_PROCESSED, {"ids": event_ids, "now": now})


#: How long a member's later events wait for an earlier one still in flight.
ORDERING_WINDOW = timedelta(seconds=60)


def _wait_for_earlier(session: Session, event: Event, now: datetime, wait: float) -> None:
    """Keep one member's events in the order they arrived (a redeem after its order, say).

    Only events with a ledger effect (orders, refunds, redemptions) hold the later
    ones back: the order of the rest (`points.changed`, a sign-up, a survey answer)
    changes no balance. A parked event (one that failed for good) never holds them,
    and one still unprocessed after the window (its message lost with Redis, say)
    no longer does either.
    """
    earlier = session.scalar(
        select(Event.id)
        .where(
            Event.member_id == event.member_id,
            Event.id < event.id,
            *_holding_back(now - ORDERING_WINDOW),
        )
        .limit(1)
    )
    if earlier is not None:
        raise RetriableError(f"event {earlier} of the same member goes first", retry_after=wait)


def handle_event(
    database: Database,
    event_id: int,
    *,
    settings: Settings,
    now: datetime,
    also: Callable[[Session, Event], list[int]] | None = None,
) -> tuple[list[int], list[int]]:
    """Process one event in its own transaction; `also` runs in it once the effect is applied.

    Returns (ids of events it caused, what `also` returned). A skippable
    failure (a redeem beyond the balance, say) is recorded on the event, which
    then counts as processed: retrying cannot change the outcome.
    """
    try:
        with database.transaction() as session:
            event = session.get(Event, event_id, with_for_update=True)
            if event is None:
                return [], []
            already = event.processed_at is not None or event.parked_at is not None
            # The member stays referenced, so `also` finds it in the session, locked.
            caused, _member = _process(session, event, settings=settings, now=now)
            extra = also(session, event) if also is not None and not already else []
            return caused, extra
    except SkippableError as exc:
        with database.transaction() as session:
            event = session.get(Event, event_id, with_for_update=True)
            if event is not None and event.processed_at is None:
                event.processed_at = now
                event.error = str(exc)
        log.warning("event.rejected", extra={"event_id": event_id, "reason": str(exc)})
        return [], []


#: Characters of the failure kept on a parked event.
PARK_REASON_CHARS = 1000


def park_event(session: Session, event_id: int, reason: str, *, now: datetime) -> bool:
    """Set aside an event whose processing failed for good; False when it needs no parking."""
    event = session.get(Event, event_id, with_for_update=True)
    if event is None or event.processed_at is not None:
        return False
    event.parked_at = now
    event.error = reason[:PARK_REASON_CHARS]
    log.warning("event.parked", extra={"event_id": event_id, "type": event.type})
    return True


def unpark_event(session: Session, event_id: int) -> None:
    """Let a parked event be processed again (a replay after the fix)."""
    event = session.get(Event, event_id, with_for_update=True)
    if event is not None and event.processed_at is None:
        event.parked_at = None
        event.error = None
