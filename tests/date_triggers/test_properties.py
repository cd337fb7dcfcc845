"""Property: over random zones, dates and clock paths, each occurrence enters exactly once.

A clock path is a sequence of scan ticks over two years: ticks inside each
member's firing window, random ticks, ticks delivered twice and ticks that
arrive late (out of order). Each tick scans and enters the due members with
INSERT … ON CONFLICT DO NOTHING, as the engine does. An independent oracle
walks the wall clock (15-minute steps, minutes where it matters) to find each
firing window.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from automations.definition.models import DateTrigger
from automations.triggers.date_scan import DEFAULT_GRACE, due_date_entries
from loyalty.db import Database
from tests.conftest import make_settings

from .support import (
    JOURNEY,
    add_lot,
    add_member,
    brute_force_window,
    enroll,
    enrollments,
    publish,
    wipe,
)

PATH_START = datetime(2026, 1, 1, tzinfo=UTC)
PATH_END = datetime(2028, 1, 1, tzinfo=UTC)
CHECKED_YEARS = range(2025, 2030)
FIRE_DAYS = (date(2025, 12, 30), date(2028, 1, 2))

#: Zones with DST, odd offsets and date-line neighbours, drawn more often than the rest.
INTERESTING = [
    "Europe/Warsaw",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "Pacific/Auckland",
    "America/St_Johns",
    "Asia/Kathmandu",
    "America/Havana",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "Pacific/Chatham",
]


@cache
def _all_zones() -> list[str]:
    names = []
    for name in sorted(zoneinfo.available_timezones()):
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        names.append(name)
    return names


zones = st.one_of(st.sampled_from(INTERESTING), st.sampled_from(_all_zones()))
month_days = st.one_of(
    st.sampled_from([(2, 28), (2, 29), (3, 1), (12, 31), (1, 1)]),
    st.dates(date(2024, 1, 1), date(2024, 12, 31)).map(lambda d: (d.month, d.day)),
)
#: Wall times inside the skipped or repeated hour of the zones above, and a few edges.
times = st.one_of(
    st.sampled_from([time(0, 30), time(1, 30), time(1, 45), time(2, 30), time(3, 0), time(3, 15)]),
    st.sampled_from([time(0, 0), time(9, 0), time(23, 59)]),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
)


@cache
def switch_days(name: str) -> list[tuple[date, time]]:
    """The zone's offset changes in 2026-2027: local day, and a wall time skipped or repeated."""
    zone = zoneinfo.ZoneInfo(name)
    found = []
    instant = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(minutes=15)
    while instant < datetime(2028, 1, 1, tzinfo=UTC):
        before, after = instant.astimezone(zone).utcoffset(), (instant + step).astimezone(zone)
        if before is not None and after.utcoffset() != before:
            # The wall clock jumps between `before` and `after` readings; the middle
            # of the jump is a wall time that is skipped or that happens twice.
            low = (instant + step + before).replace(tzinfo=None)
            high = after.replace(tzinfo=None)
            middle = min(low, high) + abs(high - low) / 2
            found.append((after.date(), middle.time().replace(second=0, microsecond=0)))
        instant += step
    return found


@dataclass(frozen=True)
class Person:
    zone: str | None
    month_day: tuple[int, int]
    instants: tuple[datetime, ...]  # enrolled_at, or the lots' expires_at
    erased: bool
    switch_at: time | None  # a wall time skipped or repeated on this person's fire day


def _local_noon(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(12), zoneinfo.ZoneInfo(zone)).astimezone(UTC)


@st.composite
def people(draw: st.DrawFn, field: str, default_zone: str, days_before: int) -> Person:
    """A member; often one whose fire day is a DST switch day of their zone."""
    zone = draw(st.one_of(st.none(), zones))
    switches = switch_days(zone or default_zone)
    switch = draw(st.sampled_from(switches)) if bool(switches) and draw(st.booleans()) else None
    celebration = switch[0] + timedelta(days=days_before) if switch else None
    if field == "birthday":
        month_day = (celebration.month, celebration.day) if celebration else draw(month_days)
        instants: tuple[datetime, ...] = ()
    elif field == "enrolled_at":
        month_day = (1, 1)
        moment = draw(st.datetimes(datetime(2019, 1, 1), datetime(2025, 12, 31)))
        instants = (moment.replace(tzinfo=UTC),)
        year = draw(st.integers(2019, 2025))
        if celebration and (celebration.month, celebration.day) != (2, 29):
            day = celebration.replace(year=year)
            instants = (_local_noon(day, zone or default_zone),)
    else:
        month_day = (1, 1)
        moments = draw(
            st.lists(st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)), max_size=3)
        )
        instants = tuple(m.replace(tzinfo=UTC) for m in moments)
        if celebration:
            instants += (_local_noon(celebration, zone or default_zone),)
        if not instants:
            instants = (datetime(2026, 6, 1, tzinfo=UTC),)
    return Person(
        zone=zone,
        month_day=month_day,
        instants=instants,
        erased=draw(st.sampled_from([False, False, False, False, True])),
        switch_at=switch[1] if switch else None,
    )


def _celebrations(field: str, person: Person, zone: zoneinfo.ZoneInfo, leap: str) -> set[date]:
    """Every celebration date of the person in the checked years, from first principles."""
    if field == "points_expiry":
        return {instant.astimezone(zone).date() for instant in person.instants}
    if field == "enrolled_at":
        enrolled = person.instants[0].astimezone(zone).date()
        month, day = enrolled.month, enrolled.day
        years = [y for y in CHECKED_YEARS if y > enrolled.year]
    else:
        month, day = person.month_day
        years = list(CHECKED_YEARS)
    found = set()
    for year in years:
        try:
            found.add(date(year, month, day))
        except ValueError:  # 29 February in a common year
            found.add(date(year, 2, 28) if leap == "feb28" else date(year, 3, 1))
    return found


def _occurrence(field: str, celebration: date) -> str:
    return celebration.isoformat() if field == "points_expiry" else str(celebration.year)


@pytest.mark.parametrize("field", ["birthday", "enrolled_at", "points_expiry"])
@settings(
    max_examples=30,
    deadline=None,
    # No shrinking: an example runs dozens of scans, and shrinking one would
    # outlast the test timeout; the failing draws are printed as they are.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_each_occurrence_enters_exactly_once_on_the_right_local_day(
    database: Database, field: str, data: st.DataObject
) -> None:
    # Given a journey, members in random zones, and scan settings
    catch_up = data.draw(st.booleans(), "catch_up")
    leap = data.draw(st.sampled_from(["feb28", "mar1"]), "leap")
    default_zone = data.draw(st.sampled_from(INTERESTING), "default_zone")
    days_before = data.draw(st.sampled_from([0, 0, 1, 2, 14, 30]), "days_before")
    population = data.draw(
        st.lists(people(field, default_zone, days_before), min_size=1, max_size=5), "people"
    )
    switch_times = [p.switch_at for p in population if p.switch_at is not None]
    at = data.draw(st.one_of(times, st.sampled_from(switch_times)) if switch_times else times, "at")
    trigger = DateTrigger(type="date", field=field, at=at, days_before=days_before)  # type: ignore[arg-type]
    scan_settings = make_settings(
        database,
        date_triggers_catch_up=catch_up,
        leap_day_birthdays=leap,
        default_time_zone=default_zone,
    )
    with database.transaction() as session:
        wipe(session)
        version = publish(session)
        ids = []
        for person in population:
            fields: dict[str, object] = {
                "time_zone": person.zone,
                "erased_at": PATH_START if person.erased else None,
            }
            if field == "birthday":
                fields["birth_month"], fields["birth_day"] = person.month_day
            if field == "enrolled_at":
                fields["enrolled_at"] = person.instants[0]
            member_id = add_member(session, **fields)
            if field == "points_expiry":
                for expires_at in person.instants:
                    add_lot(session, member_id, expires_at)
            ids.append(member_id)

    # And the firing windows the oracle expects around the two years of the path
    windows: dict[tuple[int, str], tuple[datetime, datetime, date]] = {}
    for member_id, person in zip(ids, population, strict=True):
        zone = zoneinfo.ZoneInfo(person.zone or default_zone)
        for celebration in _celebrations(field, person, zone, leap):
            fire_day = celebration - timedelta(days=trigger.days_before)
            if not FIRE_DAYS[0] <= fire_day <= FIRE_DAYS[1]:
                continue
            fire_at, day_end = brute_force_window(fire_day, trigger.at, zone)
            if fire_at is None or day_end is None:
                continue
            end = day_end if catch_up else min(day_end, fire_at + DEFAULT_GRACE)
            windows[(member_id, _occurrence(field, celebration))] = (fire_at, end, fire_day)
    covered = {k for k, (fire_at, _, _) in windows.items() if PATH_START <= fire_at < PATH_END}

    # And a clock path: a tick in each window, random ticks, repeats and late ones
    ticks: list[datetime] = []
    for key in sorted(covered):
        fire_at, end, _ = windows[key]
        share = data.draw(st.floats(0, 0.999), f"share {key}")
        ticks.append(fire_at + (end - fire_at) * share)
        ticks.append(fire_at - timedelta(seconds=1))
    span = int((PATH_END - PATH_START).total_seconds())
    noise = data.draw(st.lists(st.integers(0, span - 1), max_size=8), "noise")
    ticks += [PATH_START + timedelta(seconds=s) for s in noise]
    ticks.sort()
    for index in data.draw(st.lists(st.integers(0, max(len(ticks) - 1, 0)), max_size=4), "twice"):
        if ticks:
            ticks.insert(index, ticks[index])
    for index in data.draw(st.lists(st.integers(0, max(len(ticks) - 2, 0)), max_size=4), "late"):
        if len(ticks) < 2:
            break
        ticks[index], ticks[index + 1] = ticks[index + 1], ticks[index]

    # When each tick scans and enters who is due
    returned: dict[tuple[int, str], int] = {}
    for tick in ticks:
        with database.transaction() as session:
            entries = due_date_entries(session, JOURNEY, trigger, tick, scan_settings)
            for entry in entries:
                key = (entry.member_id, entry.occurrence)
                returned[key] = returned.get(key, 0) + 1
                assert entry.fire_at == windows[key][0]
            enroll(session, version, entries, tick)

    # Then every window with a tick entered its member once, at its first tick,
    # and nothing else entered
    erased = {m for m, p in zip(ids, population, strict=True) if p.erased}
    expected = {}
    for key, (fire_at, end, _) in windows.items():
        first = next((t for t in ticks if fire_at <= t < end), None)
        if first is not None and key[0] not in erased:
            expected[key] = first
    with database.sessions() as session:
        rows = enrollments(session)
    assert {(m, o): at for m, o, at in rows} == expected
    assert len(rows) == len(expected)
    assert all(count == 1 for count in returned.values())
    # And each entry happened on the right local day, at or after `at`
    for member_id, occurrence, entered_at in rows:
        person = population[ids.index(member_id)]
        zone = zoneinfo.ZoneInfo(person.zone or default_zone)
        fire_at, _, fire_day = windows[(member_id, occurrence)]
        assert entered_at.astimezone(zone).date() == fire_day
        assert entered_at >= fire_at
    # And every member not erased got each yearly occurrence the path covers
    for key in covered:
        if key[0] not in erased:
            assert key in expected
