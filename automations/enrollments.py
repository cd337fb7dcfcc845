"""Entering members into journeys, once per (journey, member, occurrence)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from automations.definition import Context, Journey, evaluate
from automations.versions import Published
from channels.engagement import engagement_counter
from loyalty.db import insert_ignore
from loyalty.journey_pauses import is_paused
from loyalty.members import member_data, member_zone
from loyalty.models import Enrollment, EntryRefusal, Event, Member
from loyalty.settings import Settings
from loyalty.states import EnrollmentState

__all__ = ["count_events_for", "enter", "occurrence_key", "record_refusal"]


def occurrence_key(journey: Journey, *, now: datetime, zone: str, occurrence: str) -> str:
    """The enrollment's business key under the journey's entry rule.

    `occurrence` is what this trigger firing is (the event id, the fire time,
    the date occurrence); `once` collapses all of them, `once_per` keeps the
    member's local year or month.
    """
    entry = journey.entry
    if entry.once:
        return "once"
    if entry.once_per:
        # A date trigger names its own year; others use the member's local date now.
        if entry.once_per == "year" and len(occurrence) == 4 and occurrence.isdigit():
            return occurrence
        local = now.astimezone(ZoneInfo(zone))
        return f"{local:%Y}" if entry.once_per == "year" else f"{local:%Y-%m}"
    return occurrence


def count_events_for(session: Session, member_id: int) -> Any:
    def count(event_type: str, since: datetime) -> int:
        return int(
            session.scalar(
                select(func.count(Event.id)).where(
                    Event.member_id == member_id,
                    Event.type == event_type,
                    Event.occurred_at >= since,
                )
            )
            or 0
        )

    return count


def enter(
    session: Session,
    published: Published,
    member: Member,
    *,
    occurrence: str,
    now: datetime,
    settings: Settings,
    context: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
) -> int | None:
    """Enroll the member if the entry rule, cooldown and audience allow; the new id or None.

    A refusal by the console's pause, the cooldown or the audience is recorded
    (`record_refusal`), so the console can say why a member is not in the journey.
    """
    journey = published.journey
    if journey.status != "active" or member.erased_at is not None:
        return None
    zone = member_zone(member, settings)
    key = occurrence_key(journey, now=now, zone=zone, occurrence=occurrence)

    def refused(reason: str, detail: str) -> None:
        record_refusal(session, journey.id, member.id, key, reason, detail, now=now)

    if is_paused(session, journey.id):
        refused("paused", "the journey is paused in the console")
        return None
    if journey.entry.cooldown is not None:
        last = session.scalar(
            select(func.max(Enrollment.entered_at)).where(
                Enrollment.journey_id == journey.id, Enrollment.member_id == member.id
            )
        )
        if last is not None and last > now - journey.entry.cooldown:
            refused("cooldown", f"entered {last:%Y-%m-%d %H:%M} UTC, within the cooldown")
            return None
    if journey.audience is not None:
        data = member_data(
            session,
            member,
            now=now,
            public_base_url=settings.public_base_url,
            default_zone=settings.default_time_zone,
        )
        audience = Context(
            member=data,
            now=now,
            event=event,
            count_events=count_events_for(session, member.id),
            count_engagements=engagement_counter(session, member.id),
            tiers=tuple(settings.tier_thresholds),
        )
        if not evaluate(journey.audience, audience):
            rule = json.dumps(
                journey.audience.model_dump(mode="json", by_alias=True, exclude_none=True),
                separators=(",", ":"),
            )
            refused("audience", f"not in the audience {rule}"[:1000])
            return None
    row = {
        "journey_id": journey.id,
        "member_id": member.id,
        "occurrence": key,
        "journey_version_id": published.row_id,
        "state": EnrollmentState.ACTIVE,
        "current_step": journey.steps[0].id,
        "next_run_at": now,
        "context": {"occurrence": occurrence, **(context or {})},
        "entered_at": now,
    }
    if not insert_ignore(session, Enrollment, [row], ["journey_id", "member_id", "occurrence"]):
        return None
    return session.scalar(
        select(Enrollment.id).where(
            Enrollment.journey_id == journey.id,
            Enrollment.member_id == member.id,
            Enrollment.occurrence == key,
        )
    )


def record_refusal(
    session: Session,
    journey_id: str,
    member_id: int,
    occurrence: str,
    reason: str,
    detail: str,
    *,
    now: datetime,
) -> None:
    """Keep why the member did not enter: one row per (journey, member), rewritten only when the
    occurrence or the reason changes (a date scan asks again on every tick of the day)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(EntryRefusal).values(
        journey_id=journey_id,
        member_id=member_id,
        occurrence=occurrence,
        reason=reason,
        detail=detail,
        decided_at=now,
    )
    excluded = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["member_id", "journey_id"],
            set_={
                "occurrence": excluded.occurrence,
                "reason": excluded.reason,
                "detail": excluded.detail,
                "decided_at": excluded.decided_at,
            },
            where=(EntryRefusal.occurrence != excluded.occurrence)
            | (EntryRefusal.reason != excluded.reason),
        )
    )
