"""When a date trigger fires for one member: local celebration day, UTC instant, occurrence.

Pure functions of (member date, member zone, trigger, instant); the scan in
``date_scan`` decides which members to ask about. Time rules (DESIGN §7):

- the trigger fires ``days_before`` the celebration, at wall time ``at`` in the
  member's zone on that *fire day*;
- a wall time that does not exist (spring-forward gap) fires at the first
  instant after the gap; one that happens twice (fall-back) fires the first time,
  so a DST change neither skips nor doubles a day;
- 29 February is celebrated on 28 February (or 1 March, a setting) in common years;
- the occurrence key, unique per (journey, member) in ``enrollments``, is the
  celebration's year (``"2026"``) for birthdays and enrolment anniversaries, and
  the local expiry date (``"2026-12-31"``) for points expiry;
- inactivity (``last_order_at``) fires ``days_after`` the local date of the last
  order; its occurrence is the last order's instant, so each lapse enters once
  and a new order starts a new lapse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automations.definition.models import DateTrigger
from loyalty.clock import ensure_utc, local_instant

__all__ = [
    "EARLIEST_OFFSET",
    "LATEST_OFFSET",
    "DateField",
    "Firing",
    "LeapDayRule",
    "anniversary_firing",
    "birthday_firing",
    "celebrated_on",
    "celebrations_at",
    "expiry_firing",
    "firing_for",
    "is_due",
    "lapse_firing",
    "lapse_occurrence",
    "local_date",
    "local_day_bounds",
    "member_zone",
    "month_days_celebrated_on",
    "occurrence_for",
]

DateField = Literal["birthday", "enrolled_at", "points_expiry", "last_order_at"]
LeapDayRule = Literal["feb28", "mar1"]

#: The westernmost and easternmost UTC offsets in use (Etc/GMT+12, Pacific/Kiritimati).
#: At any instant the local dates on Earth lie between now+EARLIEST and now+LATEST,
#: which is why a scan only ever looks at three calendar dates.
EARLIEST_OFFSET = timedelta(hours=-12)
LATEST_OFFSET = timedelta(hours=14)

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Firing:
    """One member's firing for one celebration; instants are aware UTC."""

    occurrence: str
    celebration: date
    fire_day: date
    fire_at: datetime
    day_ends_at: datetime


# -- zones and wall time ------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def member_zone(name: str | None, default: str) -> ZoneInfo:
    """The member's zone; members without one (or with a zone we cannot read) get the default.

    Kept per name: scans ask it for every candidate row, and members share a few hundred zones.
    """
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    """The calendar date on the wall in `zone` at `instant`."""
    return instant.astimezone(zone).date()


def local_day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) during which `day` is the date on the wall in `zone`."""
    return local_instant(day, time(0), zone), local_instant(day + _DAY, time(0), zone)


# -- calendar -----------------------------------------------------------------------------------


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def celebrated_on(month: int, day: int, year: int, leap_day: LeapDayRule) -> date | None:
    """The date in `year` on which a yearly month/day is celebrated (None: no such date)."""
    if (month, day) == (2, 29) and not _is_leap(year):
        return date(year, 2, 28) if leap_day == "feb28" else date(year, 3, 1)
    try:
        return date(year, month, day)
    except ValueError:
        return None


def month_days_celebrated_on(celebration: date, leap_day: LeapDayRule) -> list[tuple[int, int]]:
    """Every (month, day) whose yearly celebration falls on `celebration`."""
    pairs = [(celebration.month, celebration.day)]
    if not _is_leap(celebration.year) and celebrated_on(2, 29, celebration.year, leap_day) == (
        celebration
    ):
        pairs.append((2, 29))
    return pairs


def celebrations_at(instant: datetime, days_before: int) -> list[date]:
    """Every celebration date some zone can be firing for at `instant` (at most three)."""
    first = (instant + EARLIEST_OFFSET).astimezone(UTC).date()
    last = (instant + LATEST_OFFSET).astimezone(UTC).date()
    shift = timedelta(days=days_before)
    return [first + timedelta(days=n) + shift for n in range((last - first).days + 1)]


def occurrence_for(field: DateField, celebration: date) -> str:
    """The enrollment occurrence key of a celebration (a lapse's is `lapse_occurrence`)."""
    if field in ("points_expiry", "last_order_at"):
        return celebration.isoformat()
    return str(celebration.year)


def lapse_occurrence(last_order_at: datetime) -> str:
    """The occurrence key of one lapse: the instant of the order it follows (UTC, ISO 8601)."""
    return ensure_utc(last_order_at).isoformat()


# -- firings ------------------------------------------------------------------------------------


def firing_for(trigger: DateTrigger, celebration: date, zone: ZoneInfo) -> Firing:
    """When `trigger` fires in `zone` for the celebration on `celebration`."""
    fire_day = celebration - timedelta(days=trigger.days_before)
    return Firing(
        occurrence=occurrence_for(trigger.field, celebration),
        celebration=celebration,
        fire_day=fire_day,
        fire_at=local_instant(fire_day, trigger.at, zone),
        day_ends_at=local_instant(fire_day + _DAY, time(0), zone),
    )


def _todays_celebration(trigger: DateTrigger, instant: datetime, zone: ZoneInfo) -> date:
    # A firing is due only during its fire day, so the one celebration worth
    # asking about is the one whose fire day is the member's local today.
    return local_date(instant, zone) + timedelta(days=trigger.days_before)


def birthday_firing(
    birth_month: int,
    birth_day: int,
    zone: ZoneInfo,
    trigger: DateTrigger,
    instant: datetime,
    leap_day: LeapDayRule,
) -> Firing | None:
    """The birthday firing whose fire day is the member's local date at `instant`, if any."""
    celebration = _todays_celebration(trigger, instant, zone)
    if celebrated_on(birth_month, birth_day, celebration.year, leap_day) != celebration:
        return None
    return firing_for(trigger, celebration, zone)


def anniversary_firing(
    enrolled_at: datetime,
    zone: ZoneInfo,
    trigger: DateTrigger,
    instant: datetime,
    leap_day: LeapDayRule,
) -> Firing | None:
    """The enrolment-anniversary firing due on the member's local date at `instant`, if any.

    Anniversaries count from the local date of enrolment; the enrolment day itself
    is not one.
    """
    enrolled = local_date(enrolled_at, zone)
    celebration = _todays_celebration(trigger, instant, zone)
    if celebration.year <= enrolled.year:
        return None
    if celebrated_on(enrolled.month, enrolled.day, celebration.year, leap_day) != celebration:
        return None
    return firing_for(trigger, celebration, zone)


def expiry_firing(
    expires_at: datetime, zone: ZoneInfo, trigger: DateTrigger, instant: datetime
) -> Firing | None:
    """The points-expiry firing for a lot, if its fire day is the member's local date."""
    celebration = _todays_celebration(trigger, instant, zone)
    if local_date(expires_at, zone) != celebration:
        return None
    return firing_for(trigger, celebration, zone)


def lapse_firing(
    last_order_at: datetime, zone: ZoneInfo, trigger: DateTrigger, instant: datetime
) -> Firing | None:
    """The inactivity firing ``days_after`` the last order, if its fire day is the local today."""
    ordered = local_date(last_order_at, zone)
    fire_day = ordered + timedelta(days=trigger.days_after or 0)
    if fire_day != local_date(instant, zone):
        return None
    return Firing(
        occurrence=lapse_occurrence(last_order_at),
        celebration=ordered,
        fire_day=fire_day,
        fire_at=local_instant(fire_day, trigger.at, zone),
        day_ends_at=local_instant(fire_day + _DAY, time(0), zone),
    )


def is_due(firing: Firing, instant: datetime, *, catch_up: bool, grace: timedelta) -> bool:
    """Whether a scan at `instant` should enter the member.

    From ``fire_at`` to the end of the local fire day with catch-up (a member
    added after ``at`` still enters today); without it, only within `grace` of
    ``fire_at``, which absorbs a late scheduler tick.
    """
    if not firing.fire_at <= instant < firing.day_ends_at:
        return False
    return catch_up or instant - firing.fire_at < grace
