"""The date-trigger scan: which members a date journey should enter now.

One indexed query per scan, whatever the number of members. At any instant the
local dates on Earth span at most three calendar dates, so a scan only needs the
members whose date falls on one of those (shifted by ``days_before``):

- ``birthday``: ``(birth_month, birth_day)`` in a handful of pairs (index
  ``ix_members_birthday``);
- ``enrolled_at``: the local enrolment date is within a day of the UTC one, so
  one short ``enrolled_at`` range per past year (index ``ix_members_enrolled_at``);
- ``points_expiry``: lots with points left whose ``expires_at`` lies in a window
  of about three days (index ``ix_points_ledger_expires_at``);
- ``last_order_at`` (inactivity): members whose last order lies in a window of
  about three days, ``days_after`` ago. Its occurrence is each member's own
  (the last order's instant), so the already-entered are left out by a second
  query over the candidates rather than in the first.

The query over-selects by at most a day on each side; the exact decision (the
member's zone, DST, 29 February) is taken in Python by ``date_triggers``. Members
who already hold an enrollment for the occurrence are left out in the same query
(``NOT EXISTS``), so a scan repeated after entering them returns nothing new.

The statement depends only on the journey, the field and the dates looked at, which
stay the same for the scans of a whole day (every minute, or every zone's ``at`` in a
simulation): each is built once and kept (`_statement`), so a scan costs its query,
not the building and compiling of its SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from automations.definition.models import DateTrigger
from automations.triggers.date_rules import (
    EARLIEST_OFFSET,
    LATEST_OFFSET,
    DateField,
    Firing,
    LeapDayRule,
    anniversary_firing,
    birthday_firing,
    celebrations_at,
    expiry_firing,
    is_due,
    lapse_firing,
    member_zone,
    month_days_celebrated_on,
    occurrence_for,
)
from loyalty.clock import ensure_utc
from loyalty.models import Enrollment, LedgerEntry, Member
from loyalty.settings import Settings

__all__ = ["DEFAULT_GRACE", "DueEntry", "due_date_entries"]

_AnySelect = Select[*tuple[Any, ...]]

#: Without catch-up, how late after ``at`` a scan may still enter a member (a late tick).
DEFAULT_GRACE = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, order=True)
class DueEntry:
    """A member to enter for one occurrence; ``fire_at`` is the UTC instant of ``at``."""

    member_id: int
    occurrence: str
    fire_at: datetime


@dataclass(frozen=True, slots=True)
class _Group:
    """Candidates sharing one occurrence key: their SQL filter and the key."""

    occurrence: str
    where: ColumnElement[bool]


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a scan's statement is built from (and kept by): the same for a day's scans."""

    journey_id: str
    field: DateField
    leap_day: LeapDayRule
    exclude_enrolled: bool
    #: Per occurrence, the celebration dates looked at (a lapse's: the order dates).
    dates: tuple[tuple[str, tuple[date, ...]], ...]
    #: Anniversaries: the first enrolment year (one before the earliest enrolment).
    first_year: int = 0


#: Built scan statements kept: a few per date journey and day.
STATEMENTS_KEPT = 256
#: The earliest enrolment, for the anniversaries' years.
_EARLIEST_ENROLMENT = select(func.min(Member.enrolled_at))


def due_date_entries(
    session: Session,
    journey_id: str,
    trigger: DateTrigger,
    now: datetime,
    settings: Settings,
    *,
    grace: timedelta = DEFAULT_GRACE,
    exclude_enrolled: bool = True,
    fired_after: datetime | None = None,
    skip_zones: Collection[str] = (),
) -> list[DueEntry]:
    """The members whose firing of `trigger` is due at `now`, sorted by member id.

    Due: ``fire_at <= now`` and the member's local fire day not over (with
    ``settings.date_triggers_catch_up``), else ``now - fire_at < grace``. Erased
    members never; members already enrolled for the occurrence not when
    `exclude_enrolled`; with `fired_after`, only firings after that instant (a
    scan that saw every earlier one). `skip_zones`: not the members whose zone (as
    `member_zone` reads it) is one of these keys; the simulator, which scans each zone
    at its own `at`, names those whose `at` did not come since `fired_after`, for none
    of their members can have fired in between.
    """
    now = ensure_utc(now)
    scan = _Scan(journey_id, trigger, now, settings, grace, exclude_enrolled)
    scan.fired_after = ensure_utc(fired_after) if fired_after is not None else None
    scan.skip_zones = frozenset(skip_zones)
    if trigger.field == "birthday":
        return scan.birthdays(session)
    if trigger.field == "enrolled_at":
        return scan.anniversaries(session)
    if trigger.field == "last_order_at":
        return scan.lapses(session)
    return scan.expiries(session)


class _Scan:
    """One scan's parameters, and the zones it has looked up (members share a few hundred)."""

    def __init__(
        self,
        journey_id: str,
        trigger: DateTrigger,
        now: datetime,
        settings: Settings,
        grace: timedelta,
        exclude_enrolled: bool,
    ) -> None:
        self.journey_id = journey_id
        self.trigger = trigger
        self.now = now
        self.default_zone = settings.default_time_zone
        self.leap_day: LeapDayRule = settings.leap_day_birthdays
        self.catch_up = settings.date_triggers_catch_up
        self.grace = grace
        self.exclude_enrolled = exclude_enrolled
        self.celebrations = celebrations_at(now, trigger.days_before)
        self._zones: dict[str | None, ZoneInfo] = {}
        self.fired_after: datetime | None = None
        self.skip_zones: frozenset[str] = frozenset()

    # -- the three fields -------------------------------------------------------------------

    def birthdays(self, session: Session) -> list[DueEntry]:
        query, occurrences = _statement(self._shape())
        rows = _rows(session, query)

        # Members share a few hundred zones and a few dates: each pair is worked out once.
        firings: dict[tuple[Any, int, int], Firing | None] = {}

        def firing(row: Any, zone: ZoneInfo) -> Firing | None:
            key = (zone, row.birth_month, row.birth_day)
            if key not in firings:
                firings[key] = birthday_firing(
                    row.birth_month, row.birth_day, zone, self.trigger, self.now, self.leap_day
                )
            return firings[key]

        return self._decide(rows, occurrences, firing)

    def anniversaries(self, session: Session) -> list[DueEntry]:
        earliest = session.scalar(_EARLIEST_ENROLMENT)
        if earliest is None:
            return []
        # One year earlier too: a member's local date can be a day behind UTC.
        first_year = ensure_utc(earliest).year - 1
        query, occurrences = _statement(self._shape(first_year))
        rows = _rows(session, query)

        def firing(row: Any, zone: ZoneInfo) -> Firing | None:
            return anniversary_firing(row.enrolled_at, zone, self.trigger, self.now, self.leap_day)

        return self._decide(rows, occurrences, firing)

    def expiries(self, session: Session) -> list[DueEntry]:
        query, occurrences = _statement(self._shape())
        rows = _rows(session, query)

        def firing(row: Any, zone: ZoneInfo) -> Firing | None:
            return expiry_firing(row.expires_at, zone, self.trigger, self.now)

        return self._decide(rows, occurrences, firing)

    def lapses(self, session: Session) -> list[DueEntry]:
        ordered_on = celebrations_at(self.now, -(self.trigger.days_after or 0))
        query, _ = _statement(
            _Shape(
                self.journey_id, "last_order_at", self.leap_day, False, (("", tuple(ordered_on)),)
            )
        )

        def firing(row: Any, zone: ZoneInfo) -> Firing | None:
            return lapse_firing(row.last_order_at, zone, self.trigger, self.now)

        entries = self._decide(_rows(session, query), [], firing)
        if not self.exclude_enrolled or not entries:
            return entries
        entered = {
            (member_id, occurrence)
            for member_id, occurrence in session.execute(
                select(Enrollment.member_id, Enrollment.occurrence).where(
                    Enrollment.journey_id == self.journey_id,
                    Enrollment.member_id.in_(sorted({e.member_id for e in entries})),
                    Enrollment.occurrence.in_(sorted({e.occurrence for e in entries})),
                )
            )
        }
        return [e for e in entries if (e.member_id, e.occurrence) not in entered]

    # -- shared steps -----------------------------------------------------------------------

    def _shape(self, first_year: int = 0) -> _Shape:
        """What this scan's statement is built from: the celebrations, by occurrence."""
        grouped: dict[str, list[date]] = defaultdict(list)
        for celebration in self.celebrations:
            grouped[occurrence_for(self.trigger.field, celebration)].append(celebration)
        dates = tuple((occurrence, tuple(days)) for occurrence, days in grouped.items())
        return _Shape(
            self.journey_id,
            self.trigger.field,
            self.leap_day,
            self.exclude_enrolled,
            dates,
            first_year,
        )

    def _zone(self, name: str | None) -> ZoneInfo:
        zone = self._zones.get(name)
        if zone is None:
            zone = self._zones[name] = member_zone(name, self.default_zone)
        return zone

    def _decide(
        self,
        rows: Iterable[Any],
        occurrences: Sequence[str],
        firing_of: Callable[[Any, ZoneInfo], Firing | None],
    ) -> list[DueEntry]:
        open_column = {occurrence: f"open_{n}" for n, occurrence in enumerate(occurrences)}
        checked_columns = self.exclude_enrolled and len(occurrences) > 1
        entries: set[DueEntry] = set()
        skip_zones = self.skip_zones
        for row in rows:
            zone = self._zone(row.time_zone)
            if zone.key in skip_zones:
                continue
            firing = firing_of(row, zone)
            if firing is None:
                continue
            if checked_columns and not getattr(row, open_column[firing.occurrence]):
                continue
            if self.fired_after is not None and firing.fire_at <= self.fired_after:
                continue
            if is_due(firing, self.now, catch_up=self.catch_up, grace=self.grace):
                entries.add(DueEntry(row.id, firing.occurrence, firing.fire_at))
        return sorted(entries)


# -- SQL statements -----------------------------------------------------------------------------


def _rows(session: Session, query: _AnySelect) -> Sequence[Any]:
    """The candidates' rows, run on the session's connection: columns only, so the ORM's
    handling of a statement (a few hundred microseconds a scan) adds nothing."""
    return session.connection().execute(query).all()


@lru_cache(maxsize=STATEMENTS_KEPT)
def _statement(shape: _Shape) -> tuple[_AnySelect, tuple[str, ...]]:
    """The candidates' statement of a scan shaped so, and its occurrences in column order.

    Built once per shape: a statement keeps its compiled form's cache key, so running it
    again costs only the query.
    """
    journey_id, field, leap_day, dates = shape.journey_id, shape.field, shape.leap_day, shape.dates
    query: _AnySelect
    if field == "last_order_at":
        query = select(Member.id, Member.time_zone, Member.last_order_at).where(
            Member.erased_at.is_(None), _local_dates_in(Member.last_order_at, dates[0][1])
        )
        return query, ()
    groups: list[_Group]
    member_id: InstrumentedAttribute[int] = Member.id
    if field == "birthday":
        groups = [
            _Group(occurrence, _month_day_in(_celebrated_pairs(days, leap_day)))
            for occurrence, days in dates
        ]
        query = select(Member.id, Member.time_zone, Member.birth_month, Member.birth_day)
    elif field == "enrolled_at":
        groups = [
            _Group(
                occurrence,
                _local_dates_in(
                    Member.enrolled_at, _enrolment_dates(days, leap_day, shape.first_year)
                ),
            )
            for occurrence, days in dates
        ]
        query = select(Member.id, Member.time_zone, Member.enrolled_at)
    else:
        groups = [
            _Group(occurrence, _local_dates_in(LedgerEntry.expires_at, days))
            for occurrence, days in dates
        ]
        query = (
            select(LedgerEntry.member_id.label("id"), Member.time_zone, LedgerEntry.expires_at)
            .join(Member, Member.id == LedgerEntry.member_id)
            .where(LedgerEntry.remaining > 0)
        )
        member_id = LedgerEntry.member_id
    occurrences = tuple(g.occurrence for g in groups)
    return _restrict(query, groups, journey_id, member_id, shape.exclude_enrolled), occurrences


def _celebrated_pairs(days: Iterable[date], leap_day: LeapDayRule) -> list[tuple[int, int]]:
    return [pair for day in days for pair in month_days_celebrated_on(day, leap_day)]


def _enrolment_dates(days: Iterable[date], leap_day: LeapDayRule, first_year: int) -> list[date]:
    """The enrolment dates whose anniversaries fall on `days` (from `first_year` on)."""
    return [
        enrolled
        for celebration in days
        for year in range(first_year, celebration.year)
        for month, day_of_month in month_days_celebrated_on(celebration, leap_day)
        if (enrolled := _date_or_none(year, month, day_of_month)) is not None
    ]


def _restrict(
    query: _AnySelect,
    groups: Sequence[_Group],
    journey_id: str,
    member_id: InstrumentedAttribute[int],
    exclude_enrolled: bool,
) -> _AnySelect:
    """Add the candidate filter, erasure and the already-enrolled exclusion."""
    query = query.where(Member.erased_at.is_(None), or_(false(), *(g.where for g in groups)))
    if not exclude_enrolled:
        return query
    if len(groups) == 1:
        return query.where(_not_enrolled(journey_id, member_id, groups[0].occurrence))
    # Which occurrence a row belongs to depends on its zone, known only in
    # Python; so each group says in its own column whether the row is open
    # for that group's occurrence, and the row is kept if any group is.
    opens = [
        and_(group.where, _not_enrolled(journey_id, member_id, group.occurrence)).label(f"open_{n}")
        for n, group in enumerate(groups)
    ]
    return query.add_columns(*opens).where(or_(*opens))


def _not_enrolled(
    journey_id: str, member_id: InstrumentedAttribute[int], occurrence: str
) -> ColumnElement[bool]:
    return ~exists().where(
        Enrollment.journey_id == journey_id,
        Enrollment.member_id == member_id,
        Enrollment.occurrence == occurrence,
    )


# -- SQL filters --------------------------------------------------------------------------------


def _date_or_none(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _month_day_in(pairs: Iterable[tuple[int, int]]) -> ColumnElement[bool]:
    """``(birth_month, birth_day)`` among `pairs`, in a shape both planners take to the index."""
    days_by_month: dict[int, set[int]] = defaultdict(set)
    for month, day in pairs:
        days_by_month[month].add(day)
    return or_(
        false(),
        *(
            and_(Member.birth_month == month, Member.birth_day.in_(sorted(days)))
            for month, days in sorted(days_by_month.items())
        ),
    )


def _local_dates_in(
    column: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None],
    dates: Iterable[date],
) -> ColumnElement[bool]:
    """`column` (UTC) falls on one of `dates` in some zone: merged half-open UTC ranges."""
    ranges: list[list[datetime]] = []
    for day in sorted(set(dates)):
        midnight = datetime.combine(day, time(0), UTC)
        low, high = midnight - LATEST_OFFSET, midnight + timedelta(days=1) - EARLIEST_OFFSET
        if ranges and low <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], high)
        else:
            ranges.append([low, high])
    return or_(false(), *(and_(column >= low, column < high) for low, high in ranges))
