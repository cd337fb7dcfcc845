"""Entering members into journeys, once per (journey, member, occurrence)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Table,
    Text,
    any_,
    bindparam,
    column,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from automations.definition import Context, Journey, evaluate
from automations.versions import Published
from channels.engagement import engagement_counter
from loyalty.journey_pauses import is_paused
from loyalty.members import lazy_members_data
from loyalty.models import Enrollment, EntryRefusal, Event, Member
from loyalty.settings import Settings
from loyalty.states import EnrollmentState

__all__ = [
    "Entrant",
    "Refusal",
    "count_events_for",
    "enter",
    "enter_all",
    "occurrence_key",
    "record_refusal",
    "record_refusals",
]


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


@dataclass(frozen=True, slots=True)
class Entrant:
    """A member offered a journey for one occurrence, and what the enrollment's context adds."""

    member_id: int
    occurrence: str
    context: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Who:
    id: int
    time_zone: str | None
    erased_at: datetime | None


@dataclass(frozen=True, slots=True)
class Refusal:
    member_id: int
    occurrence: str
    reason: str
    detail: str


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
    entered = enter_all(
        session,
        published,
        [Entrant(member.id, occurrence, context)],
        now=now,
        settings=settings,
        event=event,
        members={member.id: member},
    )
    return entered[0] if entered else None


def enter_all(
    session: Session,
    published: Published,
    entrants: Sequence[Entrant],
    *,
    now: datetime,
    settings: Settings,
    event: dict[str, Any] | None = None,
    members: Mapping[int, Member] | None = None,
) -> list[int]:
    """Enroll those of `entrants` that the rules of `enter` allow, in one insert; the new ids.

    A few queries per call whatever the number of entrants (keep it to about a
    thousand): the members' zones, the pause, the cooldown's last entries, the
    audience's member data, the refusals and the insert, whose ``ON CONFLICT DO
    NOTHING`` on (journey, member, occurrence) leaves out anyone already entered,
    by this call or by another at the same moment. `members`: the entrants'
    rows when the caller holds them.
    """
    journey = published.journey
    if journey.status != "active" or not entrants:
        return []
    who = _who(session, {e.member_id for e in entrants}, members)
    offered: dict[tuple[int, str], Entrant] = {}
    for entrant in sorted(entrants, key=lambda e: (e.member_id, e.occurrence)):
        member = who.get(entrant.member_id)
        if member is None or member.erased_at is not None:
            continue
        zone = member.time_zone or settings.default_time_zone
        key = occurrence_key(journey, now=now, zone=zone, occurrence=entrant.occurrence)
        offered.setdefault((member.id, key), entrant)
    refusals: list[Refusal] = []
    if offered and is_paused(session, journey.id):
        refusals = [
            Refusal(m, key, "paused", "the journey is paused in the console") for m, key in offered
        ]
        offered = {}
    if offered and journey.entry.cooldown is not None:
        offered = _after_cooldown(session, journey, offered, now, refusals)
    if offered and journey.audience is not None:
        offered = _in_audience(session, published, offered, members, now, settings, event, refusals)
    record_refusals(session, journey.id, refusals, now=now)
    if not offered:
        return []
    return _insert_enrollments(session, published, offered, now)


def _insert_enrollments(
    session: Session, published: Published, offered: dict[tuple[int, str], Entrant], now: datetime
) -> list[int]:
    """One ``INSERT … ON CONFLICT DO NOTHING RETURNING id``; the ids of the rows it made.

    On PostgreSQL the rows travel as one JSON parameter (``INSERT … SELECT … FROM
    jsonb_to_recordset(…)``): one short statement whatever the batch, instead of a
    thousand rows of parameters to parse and quote on every call.
    """
    journey = published.journey
    table = Enrollment.__table__
    assert isinstance(table, Table)
    same = {
        "journey_id": journey.id,
        "journey_version_id": published.row_id,
        "state": EnrollmentState.ACTIVE,
        "current_step": journey.steps[0].id,
        "next_run_at": now,
        "entered_at": now,
    }
    contexts = [
        {"occurrence": entrant.occurrence, **(entrant.context or {})}
        for entrant in offered.values()
    ]
    keys = ["journey_id", "member_id", "occurrence"]
    if session.get_bind().dialect.name != "postgresql":
        rows = [
            {**same, "member_id": member_id, "occurrence": key, "context": context}
            for (member_id, key), context in zip(offered, contexts, strict=True)
        ]
        ignoring = sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
        return sorted(session.execute(ignoring.returning(table.c.id), rows).scalars())
    recordset = json.dumps(
        [
            {"member_id": member_id, "occurrence": key, "context": context}
            for (member_id, key), context in zip(offered, contexts, strict=True)
        ]
    )
    varying = (
        func.jsonb_to_recordset(bindparam("rows", recordset, type_=Text).cast(JSONB))
        .table_valued(
            column("member_id", BigInteger), column("occurrence", Text), column("context", JSONB)
        )
        .render_derived(with_types=True)
    )
    chosen = select(
        *(literal(value, table.c[name].type).label(name) for name, value in same.items()),
        varying.c.member_id,
        varying.c.occurrence,
        varying.c.context,
    )
    statement = (
        postgresql.insert(table)
        .from_select([*same, "member_id", "occurrence", "context"], chosen)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(table.c.id)
    )
    return sorted(session.execute(statement).scalars())


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _among(
    session: Session, column: InstrumentedAttribute[int], ids: list[int]
) -> ColumnElement[bool]:
    """`column` IN `ids`; on PostgreSQL ``= ANY(array)``, one parameter whatever the count."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, ids, type_=ARRAY(BigInteger)))
    return column.in_(ids)


def _who(session: Session, ids: set[int], members: Mapping[int, Member] | None) -> dict[int, _Who]:
    """Each entrant's zone and erasure, from the rows given or in one query."""
    if members is not None:
        return {i: _Who(m.id, m.time_zone, m.erased_at) for i, m in members.items() if i in ids}
    rows = session.execute(
        select(Member.id, Member.time_zone, Member.erased_at).where(
            _among(session, Member.id, sorted(ids))
        )
    )
    return {row.id: _Who(row.id, row.time_zone, row.erased_at) for row in rows}


def _after_cooldown(
    session: Session,
    journey: Journey,
    offered: dict[tuple[int, str], Entrant],
    now: datetime,
    refusals: list[Refusal],
) -> dict[tuple[int, str], Entrant]:
    """Those not entered within the cooldown, nor twice in this call (one after the other)."""
    assert journey.entry.cooldown is not None
    since = now - journey.entry.cooldown
    last: dict[int, datetime] = {
        key: value
        for key, value in session.execute(
            select(Enrollment.member_id, func.max(Enrollment.entered_at))
            .where(
                Enrollment.journey_id == journey.id,
                _among(session, Enrollment.member_id, sorted({m for m, _ in offered})),
            )
            .group_by(Enrollment.member_id)
        )
    }
    kept: dict[tuple[int, str], Entrant] = {}
    for (member_id, key), entrant in offered.items():
        entered = last.get(member_id)
        if entered is not None and entered > since:
            detail = f"entered {entered:%Y-%m-%d %H:%M} UTC, within the cooldown"
            refusals.append(Refusal(member_id, key, "cooldown", detail))
            continue
        kept[member_id, key] = entrant
        last[member_id] = now
    return kept


def _in_audience(
    session: Session,
    published: Published,
    offered: dict[tuple[int, str], Entrant],
    members: Mapping[int, Member] | None,
    now: datetime,
    settings: Settings,
    event: dict[str, Any] | None,
    refusals: list[Refusal],
) -> dict[tuple[int, str], Entrant]:
    """Those in the journey's audience, judged on member data read in bulk."""
    audience = published.journey.audience
    assert audience is not None
    ids = sorted({m for m, _ in offered})
    rows = (
        [members[i] for i in ids]
        if members is not None
        else list(session.scalars(select(Member).where(Member.id.in_(ids))))
    )
    # The derived fields (points expiring, referrals) read only if the audience asks.
    data = lazy_members_data(
        session,
        rows,
        now=now,
        public_base_url=settings.public_base_url,
        default_zone=settings.default_time_zone,
    )
    rule = json.dumps(
        audience.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":")
    )
    kept: dict[tuple[int, str], Entrant] = {}
    for (member_id, key), entrant in offered.items():
        context = Context(
            member=data[member_id],
            now=now,
            event=event,
            count_events=count_events_for(session, member_id),
            count_engagements=engagement_counter(session, member_id),
            tiers=tuple(settings.tier_thresholds),
        )
        if evaluate(audience, context):
            kept[member_id, key] = entrant
        else:
            refusals.append(
                Refusal(member_id, key, "audience", f"not in the audience {rule}"[:1000])
            )
    return kept


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
    record_refusals(session, journey_id, [Refusal(member_id, occurrence, reason, detail)], now=now)


def record_refusals(
    session: Session, journey_id: str, refusals: Sequence[Refusal], *, now: datetime
) -> None:
    """`record_refusal` of many members in one statement (a member's last refusal kept)."""
    last = {refusal.member_id: refusal for refusal in refusals}
    if not last:
        return
    statement = _insert(session)(EntryRefusal.__table__)
    excluded = statement.excluded
    table = EntryRefusal.__table__.c
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["member_id", "journey_id"],
            set_={
                "occurrence": excluded.occurrence,
                "reason": excluded.reason,
                "detail": excluded.detail,
                "decided_at": excluded.decided_at,
            },
            where=(table.occurrence != excluded.occurrence) | (table.reason != excluded.reason),
        ),
        [
            {
                "journey_id": journey_id,
                "member_id": r.member_id,
                "occurrence": r.occurrence,
                "reason": r.reason,
                "detail": r.detail,
                "decided_at": now,
            }
            for _, r in sorted(last.items())
        ],
    )
