"""Events into journeys: new enrollments, waits that were waiting for it, goals reached."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, bindparam, select
from sqlalchemy.orm import Session

from automations.definition import Context, EventTrigger, Wait, evaluate
from automations.definition.conditions import Condition
from automations.enrollments import Entrant, count_events_for, enter, enter_all
from automations.versions import Published, latest_published, published_version
from channels.engagement import engagement_counter
from loyalty import ledger
from loyalty.db import among, per_transaction
from loyalty.members import LazyMemberData
from loyalty.models import Enrollment, Event, JourneyVersion, Member
from loyalty.settings import Settings
from loyalty.states import IN_FLIGHT, EnrollmentState

__all__ = ["heard_types", "occurrence_of", "route_event"]

#: Enrollments a goal event converts: in flight (it ends them) or already through the steps.
GOAL_OPEN = (*IN_FLIGHT, EnrollmentState.COMPLETED, EnrollmentState.EXITED)

#: Longest occurrence kept as written (the column holds 128); longer ones are hashed.
MAX_OCCURRENCE_CHARS = 100


def occurrence_of(event: Event) -> str:
    """What entering on this event is, for the entry rule: the order for orders and refunds.

    A shop may send one order under two event ids (a webhook and an import, say):
    the ledger earns once by order id, and so an `every_time` journey enters once.
    A refund is one refund of its order (by `refund_id` when the shop names it).
    """
    payload = event.payload
    if event.type == "order.completed" and payload.get("order_id") is not None:
        name = f"order:{payload['order_id']}"
    elif event.type == "order.refunded" and payload.get("order_id") is not None:
        refund = payload.get("refund_id")
        name = f"refund:{payload['order_id']}" + (f":{refund}" if refund is not None else "")
    else:
        return f"event:{event.id}"
    if len(name) > MAX_OCCURRENCE_CHARS:
        kind = name.split(":", 1)[0]
        name = f"{kind}:sha256:{hashlib.sha256(name.encode()).hexdigest()[:40]}"
    return name


def waiting_enrollments(session: Session, member_ids: set[int]) -> dict[int, list[Enrollment]]:
    """The waiting enrollments of these members, locked, by member (for a batch of events)."""
    found: dict[int, list[Enrollment]] = {}
    if member_ids:
        for enrollment in session.scalars(_WAITING_OF, {"members": sorted(member_ids)}):
            found.setdefault(enrollment.member_id, []).append(enrollment)
    return found


def _waiting(member: ColumnElement[bool]) -> Select[Enrollment]:
    return (
        select(Enrollment)
        .where(member, Enrollment.state == EnrollmentState.WAITING)
        .order_by(Enrollment.id)
        .with_for_update()
    )


@dataclass
class Entries:
    """Entries a batch of events makes, kept to be made together: one insert a journey
    (`enter_all`) instead of one an event."""

    by_version: dict[int, tuple[Published, list[Entrant]]] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)

    def add(self, published: Published, entrant: Entrant, member: Member) -> None:
        self.by_version.setdefault(published.row_id, (published, []))[1].append(entrant)
        self.members[member.id] = member

    def enter(self, session: Session, *, now: datetime, settings: Settings) -> list[int]:
        """Make the entries kept so far (as `enter` would have, one by one); their ids."""
        entered: list[int] = []
        for published, entrants in self.by_version.values():
            entered += enter_all(
                session, published, entrants, now=now, settings=settings, members=self.members
            )
        self.by_version.clear()
        self.members.clear()
        return entered


#: `waiting_enrollments`' statement, built once (the members go as a parameter).
_WAITING_OF = _waiting(among(Enrollment.member_id, "members"))
#: A member's enrollments of a journey that its goal event converts, entered within the
#: goal's window before the event (built once: the values go as parameters).
_CONVERTING = (
    select(Enrollment)
    .where(
        Enrollment.journey_id == bindparam("journey"),
        Enrollment.member_id == bindparam("member"),
        Enrollment.state.in_(GOAL_OPEN),
        Enrollment.converted_at.is_(None),
        Enrollment.entered_at >= bindparam("since", type_=Enrollment.entered_at.type),
        Enrollment.entered_at <= bindparam("until", type_=Enrollment.entered_at.type),
    )
    .with_for_update()
)


def route_event(
    session: Session,
    event: Event,
    *,
    settings: Settings,
    waiting: list[Enrollment] | None = None,
    entries: Entries | None = None,
) -> list[int]:
    """Apply one processed event to the journeys; returns enrollment ids to run now.

    `waiting`: the member's waiting enrollments, when the caller holds them. `entries`:
    where a batch keeps the entries it makes together (those of journeys with no
    audience, which may read the event); the caller makes them before this member's
    next event is routed, so that its goals and waits see them."""
    member = session.get(Member, event.member_id)
    if member is None or member.erased_at is not None:
        return []
    now = event.processed_at or event.received_at
    to_run: list[int] = []
    contexts: list[Context] = []

    def context() -> Context:
        # Built when a condition first asks: most events meet none (points.changed, say);
        # the member's derived fields only when one reads them (most read the event).
        if not contexts:
            data = LazyMemberData(
                session,
                member,
                now=now,
                public_base_url=settings.public_base_url,
                default_zone=settings.default_time_zone,
            )
            contexts.append(
                Context(
                    member=data,
                    now=now,
                    event=event.payload,
                    count_events=count_events_for(session, member.id),
                    count_engagements=engagement_counter(session, member.id),
                    tiers=tuple(settings.tier_thresholds),
                )
            )
        return contexts[0]

    def holds(condition: Condition | None) -> bool:
        return condition is None or evaluate(condition, context())

    for published in latest_published(session):
        journey = published.journey
        trigger = journey.trigger
        if (
            isinstance(trigger, EventTrigger)
            and trigger.event == event.type
            and holds(trigger.conditions)
        ):
            occurrence = occurrence_of(event)
            given = {"event": event.payload, "event_id": event.id}
            if entries is not None and journey.audience is None:
                entries.add(published, Entrant(member.id, occurrence, given), member)
            else:
                enrolled = enter(
                    session,
                    published,
                    member,
                    occurrence=occurrence,
                    now=now,
                    settings=settings,
                    context=given,
                    event=event.payload,
                )
                if enrolled is not None:
                    to_run.append(enrolled)
        if (
            journey.goal is not None
            and journey.goal.event == event.type
            and holds(journey.goal.conditions)
        ):
            # Members who already went through the steps convert too while the window
            # lasts, so that a variant is measured over the same window as its holdout.
            window = {
                "journey": journey.id,
                "member": member.id,
                "since": event.occurred_at - journey.goal.within,
                "until": event.occurred_at,
            }
            for enrollment in session.scalars(_CONVERTING, window):
                if enrollment.state in IN_FLIGHT:
                    enrollment.exited_at = now
                    enrollment.exit_reason = "goal"
                    enrollment.next_run_at = None
                enrollment.state = EnrollmentState.CONVERTED
                enrollment.converted_at = now
    if waiting is None:
        waiting = list(session.scalars(_waiting(Enrollment.member_id == member.id)))
    for enrollment in waiting:
        waits_for = enrollment.context.get("waiting_for")
        if enrollment.state != EnrollmentState.WAITING:
            continue  # (an earlier event of a batch woke it, or its goal converted it)
        if not waits_for or waits_for.get("event") != event.type:
            continue
        conditions = waits_for.get("conditions")
        if conditions is not None:
            from pydantic import TypeAdapter

            from automations.definition.durations import STORED

            stored = TypeAdapter(Condition).validate_python(conditions, context=STORED)
            if not evaluate(stored, context()):
                continue
        new_context = {
            k: v for k, v in enrollment.context.items() if k not in ("waiting_for", "resume")
        }
        new_context["event"] = event.payload
        enrollment.context = new_context
        enrollment.current_step = waits_for["on_event"]
        enrollment.state = EnrollmentState.ACTIVE
        enrollment.next_run_at = now
        to_run.append(enrollment.id)
    return to_run


#: Every stored version's key (published versions never change; new ones add rows).
_VERSION_KEYS = select(JourneyVersion.id, JourneyVersion.content_hash).order_by(JourneyVersion.id)
#: The event types the journeys of each set of stored versions listen for.
_heard: dict[tuple[tuple[int, str], ...], frozenset[str]] = {}
#: Where a transaction keeps what it found.
_HEARD = "routing.heard"


def heard_types(session: Session) -> frozenset[str]:
    """The event types `route_event` may act on: a trigger, a goal or a wait for an event
    (`until_event`) of any stored version of any journey, whatever its status (an
    enrollment of an older version may wait for an event its newer one no longer
    names). Read once per transaction, parsed once per set of versions.

    An event of another type only gets its `processed_at` from routing: the ledger
    stores the program's own ones already processed (`ledger.heard_by`).
    """
    memo = per_transaction(session, _HEARD)
    found: frozenset[str] | None = memo.get("heard")
    if found is None:
        keys = tuple((int(i), str(h)) for i, h in session.execute(_VERSION_KEYS))
        found = _heard.get(keys)
        if found is None:
            types: set[str] = set()
            for row_id, _ in keys:
                published = published_version(session, row_id)
                if published is not None:
                    types |= _listens_for(published)
            if len(_heard) > 16:  # a long-lived process that published many times
                _heard.clear()
            found = _heard[keys] = frozenset(types)
        memo["heard"] = found
    return found


def _listens_for(published: Published) -> set[str]:
    journey = published.journey
    types = {s.until_event.event for s in journey.steps if isinstance(s, Wait) and s.until_event}
    if isinstance(journey.trigger, EventTrigger):
        types.add(journey.trigger.event)
    if journey.goal is not None:
        types.add(journey.goal.event)
    return types


# Events are routed in this process: the program's own ones no journey hears need no routing.
ledger.heard_by(heard_types)
