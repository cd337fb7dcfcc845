"""The pure rules: wall time across DST changes, 29 February, days_before, catch-up."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from automations.definition.models import DateTrigger
from automations.triggers.date_rules import (
    anniversary_firing,
    birthday_firing,
    celebrated_on,
    celebrations_at,
    expiry_firing,
    firing_for,
    is_due,
    local_day_bounds,
    member_zone,
    month_days_celebrated_on,
)
from loyalty.clock import local_instant

GRACE = timedelta(minutes=15)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def birthday(at: str = "09:00", days_before: int = 0) -> DateTrigger:
    return DateTrigger.model_validate(
        {"type": "date", "field": "birthday", "at": at, "days_before": days_before}
    )


# The switch days of 2026 and 2027: spring-forward skips an hour (02:30 does
# not exist and fires when the clock shows 03:00), fall-back repeats one (the
# repeated wall time fires the first time). Kolkata keeps +05:30 all year.
SWITCH_DAYS = [
    # zone, local day, at, expected UTC instant, hours in the local day
    ("Europe/Warsaw", "2026-03-29", "02:30", "2026-03-29T01:00", 23),
    ("Europe/Warsaw", "2026-03-29", "09:00", "2026-03-29T07:00", 23),
    ("Europe/Warsaw", "2026-10-25", "02:30", "2026-10-25T00:30", 25),
    ("Europe/Warsaw", "2026-10-25", "09:00", "2026-10-25T08:00", 25),
    ("Europe/Warsaw", "2027-03-28", "02:30", "2027-03-28T01:00", 23),
    ("Europe/Warsaw", "2027-10-31", "02:30", "2027-10-31T00:30", 25),
    ("America/New_York", "2026-03-08", "02:30", "2026-03-08T07:00", 23),
    ("America/New_York", "2026-11-01", "01:30", "2026-11-01T05:30", 25),
    ("America/New_York", "2026-11-01", "02:30", "2026-11-01T07:30", 25),
    ("America/New_York", "2027-03-14", "02:30", "2027-03-14T07:00", 23),
    ("America/New_York", "2027-11-07", "01:30", "2027-11-07T05:30", 25),
    ("Australia/Sydney", "2026-04-05", "02:30", "2026-04-04T15:30", 25),
    ("Australia/Sydney", "2026-10-04", "02:30", "2026-10-03T16:00", 23),
    ("Australia/Sydney", "2027-04-04", "02:30", "2027-04-03T15:30", 25),
    ("Australia/Sydney", "2027-10-03", "02:30", "2027-10-02T16:00", 23),
    ("Australia/Sydney", "2027-10-03", "09:00", "2027-10-02T22:00", 23),
    ("Asia/Kolkata", "2026-03-29", "02:30", "2026-03-28T21:00", 24),
    ("Asia/Kolkata", "2026-10-25", "09:00", "2026-10-25T03:30", 24),
    ("Asia/Kolkata", "2027-11-07", "00:00", "2027-11-06T18:30", 24),
]


@pytest.mark.parametrize(("zone", "day", "at", "expected", "hours"), SWITCH_DAYS)
def test_at_resolves_to_one_instant_on_switch_days(
    zone: str, day: str, at: str, expected: str, hours: int
) -> None:
    # Given a wall time on a DST switch day
    tz, local_day = ZoneInfo(zone), date.fromisoformat(day)
    # When it is turned into an instant
    instant = local_instant(local_day, time.fromisoformat(at), tz)
    start, end = local_day_bounds(local_day, tz)
    # Then it is the expected one, on that local day, not before `at`
    assert instant == utc(expected)
    assert instant.astimezone(tz).date() == local_day
    assert instant.astimezone(tz).time() >= time.fromisoformat(at)
    assert start <= instant < end
    assert end - start == timedelta(hours=hours)


@pytest.mark.parametrize(("zone", "day", "at", "expected", "hours"), SWITCH_DAYS)
def test_a_day_of_ticks_fires_once_on_switch_days(
    zone: str, day: str, at: str, expected: str, hours: int
) -> None:
    # Given a member born on a switch day and scans every 5 minutes around it
    tz, local_day = ZoneInfo(zone), date.fromisoformat(day)
    trigger = birthday(at)
    ticks = [utc(expected) - timedelta(hours=30) + timedelta(minutes=5 * n) for n in range(720)]
    # When each scan asks whether the birthday firing is due
    due = [
        tick
        for tick in ticks
        if (f := birthday_firing(local_day.month, local_day.day, tz, trigger, tick, "feb28"))
        and is_due(f, tick, catch_up=False, grace=timedelta(minutes=5))
    ]
    # Then exactly one scan finds it: the first at or after `at`
    assert due == [utc(expected)]


def test_a_skipped_midnight_starts_the_day_when_the_clock_resumes() -> None:
    # Havana springs forward at midnight: 2026-03-08 starts at 01:00 local
    havana = ZoneInfo("America/Havana")
    start, _ = local_day_bounds(date(2026, 3, 8), havana)
    assert start == utc("2026-03-08T05:00")
    assert local_instant(date(2026, 3, 8), time(0, 30), havana) == start


@pytest.mark.parametrize(
    ("year", "rule", "expected"),
    [
        (2027, "feb28", date(2027, 2, 28)),
        (2027, "mar1", date(2027, 3, 1)),
        (2028, "feb28", date(2028, 2, 29)),
        (2028, "mar1", date(2028, 2, 29)),
        (2100, "feb28", date(2100, 2, 28)),
        (2000, "mar1", date(2000, 2, 29)),
    ],
)
def test_29_february_in_common_and_leap_years(year: int, rule: str, expected: date) -> None:
    assert celebrated_on(2, 29, year, rule) == expected  # type: ignore[arg-type]


def test_the_day_that_celebrates_29_february_asks_for_it() -> None:
    assert month_days_celebrated_on(date(2027, 2, 28), "feb28") == [(2, 28), (2, 29)]
    assert month_days_celebrated_on(date(2027, 3, 1), "feb28") == [(3, 1)]
    assert month_days_celebrated_on(date(2027, 3, 1), "mar1") == [(3, 1), (2, 29)]
    assert month_days_celebrated_on(date(2028, 2, 28), "feb28") == [(2, 28)]
    assert celebrated_on(2, 30, 2027, "feb28") is None


def test_a_leap_day_birthday_fires_on_28_february_in_a_common_year() -> None:
    warsaw = ZoneInfo("Europe/Warsaw")
    trigger = birthday("09:00")
    on_28 = birthday_firing(2, 29, warsaw, trigger, utc("2027-02-28T08:00"), "feb28")
    assert on_28 is not None
    assert on_28.fire_at == utc("2027-02-28T08:00")
    assert on_28.occurrence == "2027"
    assert birthday_firing(2, 29, warsaw, trigger, utc("2027-03-01T08:00"), "feb28") is None
    on_1 = birthday_firing(2, 29, warsaw, trigger, utc("2027-03-01T08:00"), "mar1")
    assert on_1 is not None and on_1.celebration == date(2027, 3, 1)


def test_days_before_moves_the_fire_day_and_keeps_the_celebration_year() -> None:
    # Given a 3 January birthday celebrated 5 days ahead, at 10:00 in New York
    new_york = ZoneInfo("America/New_York")
    trigger = birthday("10:00", days_before=5)
    # When the scan runs on 29 December 2026 local
    firing = birthday_firing(1, 3, new_york, trigger, utc("2026-12-29T16:00"), "feb28")
    # Then it fires that day, for the 2027 birthday
    assert firing is not None
    assert firing.fire_day == date(2026, 12, 29)
    assert firing.fire_at == utc("2026-12-29T15:00")
    assert firing.occurrence == "2027"
    assert birthday_firing(1, 3, new_york, trigger, utc("2027-01-03T16:00"), "feb28") is None


def test_catch_up_lasts_the_local_day_and_grace_does_not() -> None:
    sydney = ZoneInfo("Australia/Sydney")
    firing = firing_for(birthday("09:00"), date(2026, 7, 1), sydney)
    assert firing.fire_at == utc("2026-06-30T23:00")
    assert firing.day_ends_at == utc("2026-07-01T14:00")
    late = utc("2026-07-01T13:59")
    assert is_due(firing, late, catch_up=True, grace=GRACE)
    assert not is_due(firing, late, catch_up=False, grace=GRACE)
    assert is_due(firing, utc("2026-06-30T23:14"), catch_up=False, grace=GRACE)
    assert not is_due(firing, utc("2026-06-30T23:15"), catch_up=False, grace=GRACE)
    assert not is_due(firing, utc("2026-06-30T22:59"), catch_up=True, grace=GRACE)
    assert not is_due(firing, utc("2026-07-01T14:00"), catch_up=True, grace=GRACE)


def test_anniversaries_count_from_the_local_enrolment_date() -> None:
    # Enrolled 2024-03-10 23:30 UTC, which is already 11 March in Warsaw
    warsaw = ZoneInfo("Europe/Warsaw")
    trigger = DateTrigger.model_validate({"type": "date", "field": "enrolled_at", "at": "09:00"})
    enrolled = utc("2024-03-10T23:30")
    first = anniversary_firing(enrolled, warsaw, trigger, utc("2025-03-11T09:00"), "feb28")
    assert first is not None and first.occurrence == "2025"
    assert anniversary_firing(enrolled, warsaw, trigger, utc("2025-03-10T12:00"), "feb28") is None
    # The enrolment day itself is not an anniversary
    assert anniversary_firing(enrolled, warsaw, trigger, utc("2024-03-11T09:00"), "feb28") is None


def test_points_expiry_is_keyed_by_the_local_expiry_date() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    trigger = DateTrigger.model_validate(
        {"type": "date", "field": "points_expiry", "days_before": 14, "at": "14:00"}
    )
    # Expiring 2026-12-31 20:00 UTC is 1 January 2027 in Kolkata
    expires_at = utc("2026-12-31T20:00")
    firing = expiry_firing(expires_at, kolkata, trigger, utc("2026-12-18T09:00"))
    assert firing is not None
    assert firing.occurrence == "2027-01-01"
    assert firing.fire_at == utc("2026-12-18T08:30")


def test_at_any_instant_at_most_three_local_dates_are_live() -> None:
    for hour in range(24):
        instant = utc("2026-06-15T00:00") + timedelta(hours=hour)
        dates = celebrations_at(instant, 0)
        assert 2 <= len(dates) <= 3
        assert dates == sorted(dates)
        assert instant.astimezone(ZoneInfo("Pacific/Kiritimati")).date() in dates
        assert instant.astimezone(ZoneInfo("Etc/GMT+12")).date() in dates


def test_a_missing_or_unknown_zone_falls_back_to_the_default() -> None:
    assert member_zone(None, "Europe/Warsaw") == ZoneInfo("Europe/Warsaw")
    assert member_zone("Mars/Olympus", "UTC") == ZoneInfo("UTC")
    assert member_zone("Asia/Kolkata", "UTC") == ZoneInfo("Asia/Kolkata")
