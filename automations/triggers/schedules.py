"""Cron journeys: each fire time enters the audience once (occurrence = the fire time).

A journey in a fixed zone fires for everyone at once; with `zone: member` each
member's own zone reads the cron. Fire times in the last LOOKBACK are
considered, so a late or missed tick catches up, and the enrollment key makes
a tick that runs twice harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import exists, func, select

from automations.definition import ScheduleTrigger
from automations.enrollments import Entrant
from automations.triggers import entry_batches
from automations.versions import Published, latest_versions, load_version
from loyalty.app import App
from loyalty.models import Enrollment, Member

__all__ = ["fire_due_schedules", "fire_times"]

#: How far back a tick looks for fire times it has not acted on.
LOOKBACK = timedelta(hours=1)


def fire_times(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """The cron's fire instants in (start, end], read in `zone`."""
    trigger = CronTrigger.from_crontab(cron, timezone=ZoneInfo(zone))
    times: list[datetime] = []
    previous: datetime | None = None
    current = trigger.get_next_fire_time(None, start)
    while current is not None and current <= end:
        if current > start:
            times.append(current)
        previous = current
        current = trigger.get_next_fire_time(previous, previous + timedelta(seconds=1))
    return times


def fire_due_schedules(app: App, run: Callable[[list[int]], None]) -> int:
    """Enter the audiences of cron journeys whose fire time has come; `run` the new
    enrollments, a batch at a time (`entry_batches`).

    Returns how many members entered.
    """
    now = app.clock.now()
    entered = 0
    with app.database.sessions() as session:
        versions = [load_version(v) for v in latest_versions(session)]
    for published in versions:
        trigger = published.journey.trigger
        if not isinstance(trigger, ScheduleTrigger) or published.journey.status != "active":
            continue
        with app.database.sessions() as session:
            zones = (
                [
                    z or app.settings.default_time_zone
                    for z in session.scalars(select(func.distinct(Member.time_zone)))
                ]
                if trigger.zone == "member"
                else [trigger.zone]
            )
        for zone in sorted(set(zones)):
            for fired in fire_times(trigger.cron, zone, now - LOOKBACK, now):
                by_zone = trigger.zone == "member"
                entered += _enter_zone(app, published, zone, by_zone, fired, run)
    return entered


def _enter_zone(
    app: App,
    published: Published,
    zone: str,
    by_member_zone: bool,
    fired: datetime,
    run: Callable[[list[int]], None],
) -> int:
    """Enter the members of one zone group (or everyone) for one fire time, a page at a time."""
    occurrence = fired.isoformat()
    query = select(Member.id).where(Member.erased_at.is_(None)).order_by(Member.id)
    if by_member_zone:
        if zone == app.settings.default_time_zone:
            query = query.where((Member.time_zone == zone) | Member.time_zone.is_(None))
        else:
            query = query.where(Member.time_zone == zone)
    entry = published.journey.entry
    if entry.once or not entry.once_per:
        # The key is the same for every member: those who hold it already are not offered
        # again (a tick repeated within LOOKBACK reads only who is left).
        key = "once" if entry.once else occurrence
        query = query.where(
            ~exists().where(
                Enrollment.journey_id == published.journey.id,
                Enrollment.member_id == Member.id,
                Enrollment.occurrence == key,
            )
        )
    entered = 0
    last_id = 0
    while True:
        with app.database.sessions() as session:
            ids = session.scalars(
                query.where(Member.id > last_id).limit(entry_batches.ENTER_BATCH)
            ).all()
        if not ids:
            return entered
        entrants = [Entrant(member_id, occurrence) for member_id in ids]
        entered += entry_batches.enter_in_batches(
            app, published, entrants, run, now=app.clock.now()
        )
        last_id = ids[-1]
