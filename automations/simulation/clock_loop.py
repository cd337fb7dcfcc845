"""The virtual clock's loop: from one moment that matters to the next, running what is due.

The moments are an event, a wake-up, a send retry, a points expiry, a cron or
date-journey fire time in a zone in use, and a simulated open or click. At each,
the scheduler's ticks that have work run, and the actors they queue, in this
thread and in order. A date journey's scan enters the members whose moment came
since its previous scan, so each is decided once, at its moment (the scheduler's
catch-up re-checks a member left out by the audience for the rest of their day;
the simulation does not).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import func, select

from automations.definition import DateTrigger, ScheduleTrigger
from automations.intake import emit
from automations.runtime.broker import build_inline_broker
from automations.runtime.ticks import (
    enter_date_journeys,
    expire_points,
    fire_schedules,
    relay_messages,
    wake_enrollments,
)
from automations.simulation.engagement import SimulatedEngagement
from automations.triggers.date_rules import member_zone
from automations.triggers.schedules import fire_times
from automations.versions import latest_versions, load_version
from loyalty.app import App
from loyalty.clock import FrozenClock, ensure_utc, next_local_time
from loyalty.event_types import EventInput
from loyalty.models import Enrollment, LedgerEntry, Member, Message
from loyalty.states import IN_FLIGHT, MessageState

__all__ = ["MAX_JUMP", "run"]

#: The longest jump of the virtual clock, so that no quiet stretch hides a tick.
MAX_JUMP = timedelta(hours=6)


def run(
    app: App,
    start: datetime,
    end: datetime,
    events: list[EventInput],
    problems: list[str],
    progress: Callable[[datetime], None] | None = None,
    engagement: SimulatedEngagement | None = None,
) -> None:
    """Walk the virtual clock from one moment that matters to the next, running what is due.

    Work runs in this thread, in the order it was queued (`InlineBroker`); each
    tick runs only at the moments it has something to do: a date journey's scan at
    its `at` in each zone in use, a cron journey at its fire times, the wake-ups,
    retries and expiries when the earliest of them is due.
    """
    clock = app.clock
    assert isinstance(clock, FrozenClock)
    broker = build_inline_broker(app.settings)
    moments = _Moments(app, start, end)
    pending = deque(events)
    now = start
    # Whether anything ran since the rows' moments were last read: a quiet moment (a
    # scan that entered nobody) changes no wake-up, retry or expiry, so they are kept.
    touched = True
    while True:
        clock.set(now)
        if engagement is not None and engagement.apply_due(now):
            touched = True
        while pending and (pending[0].at or start) <= now:
            event = pending.popleft()
            touched = True
            try:
                emit(app, event)
            except Exception as exc:
                problems.append(f"event {event.id or event.type}: {exc}")
        ran = broker.run_queued()
        dates, schedules = moments.journeys_due(now)
        if dates:
            # The journeys due now in one call: their scans share a session; each leaves out
            # the members of the zones whose `at` did not come since its previous scan.
            enter_date_journeys(
                app,
                only=list(dates),
                fired_after={j: moments.scanned(j) for j in dates},
                skip_zones=dates,
            )
            for journey_id in dates:
                moments.scanned_at(journey_id, now)
            ran += broker.run_queued()
        if schedules:
            fire_schedules(app)
            ran += 1 + broker.run_queued()
        due = moments.work_due(now, reread=touched or ran > 0)
        touched = False
        for tick, is_due in (
            (expire_points, due.expiries),
            (wake_enrollments, due.wakes),
            (relay_messages, due.retries),
        ):
            if is_due:
                tick(app)
                broker.run_queued()
                touched = True
        if engagement is not None:
            engagement.decide_sent(now)
        if progress is not None:
            progress(now)
        following = moments.next_after(
            now,
            pending[0].at if pending else None,
            engagement.next_at() if engagement is not None else None,
        )
        if following is None:
            break
        now = following
    if progress is not None:
        progress(end)  # nothing more happens before the end
    problems += broker.failures


@dataclass(frozen=True)
class _Due:
    wakes: bool
    retries: bool
    expiries: bool


class _Moments:
    """When each tick next has work: the journeys and zones are read once, the rest per moment.

    The published versions do not change during a simulation, nor do the zones in
    use (members only change through events, which carry no zone).
    """

    def __init__(self, app: App, start: datetime, end: datetime) -> None:
        self.app = app
        self.end = end
        with app.database.sessions() as session:
            # As the date scan reads them: a zone that cannot be read is the default.
            zones = {
                member_zone(z, app.settings.default_time_zone).key
                for z in session.scalars(select(func.distinct(Member.time_zone)))
            }
            journeys = [load_version(v).journey for v in latest_versions(session)]
        self.zones = sorted(zones | {app.settings.default_time_zone})
        active = [j for j in journeys if j.status == "active"]
        #: Date journey id → its `at`; a scan is due at that wall time in each zone.
        self.date_at = {j.id: j.trigger.at for j in active if isinstance(j.trigger, DateTrigger)}
        self.schedules = [j.trigger for j in active if isinstance(j.trigger, ScheduleTrigger)]
        self._last_scan: dict[str, datetime] = {}
        # The first moment scans every date journey (catching up on today's earlier fires).
        self._next_scan = {journey_id: start for journey_id in self.date_at}
        self._next_fire: datetime | None = self._schedule_after(start - timedelta(seconds=1))
        self._next_work: datetime | None = start
        #: The earliest wake-up, retry and expiry, in one round trip.
        self._earliest = select(
            select(func.min(Enrollment.next_run_at))
            .where(Enrollment.state.in_(IN_FLIGHT))
            .scalar_subquery(),
            select(func.min(Message.next_attempt_at))
            .where(Message.state.in_((MessageState.DEFERRED, MessageState.PENDING)))
            .scalar_subquery(),
            select(func.min(LedgerEntry.expires_at))
            # As the copy's index of unspent lots says it (`simulate.UNSPENT_LOTS_INDEX`).
            .where(LedgerEntry.remaining >= 1)
            .scalar_subquery(),
        )
        #: (`at`, zone) → the next instant the wall clock there shows `at`.
        self._fires: dict[tuple[time, str], datetime] = {}
        #: The earliest wake-up, retry and expiry as last read.
        self._read: tuple[datetime | None, ...] | None = None

    # -- the journeys' own moments ----------------------------------------------------------

    def journeys_due(self, now: datetime) -> tuple[dict[str, list[str]], bool]:
        """The date journeys whose scan is due, each with the zones in use it is not due in
        (none at the first scan, which catches up on every zone), and whether a cron
        journey fires now.

        A zone is due when the wall clock there showed the journey's `at` since the journey's
        previous scan: every such instant is a moment of the walk, so the members of the
        other zones cannot have reached their firing since. A zone not in use at the start
        (a member an event created) is never left out.
        """
        dates: dict[str, list[str]] = {}
        for journey_id, at in sorted(self._next_scan.items()):
            if at > now:
                continue
            at_zone = self.date_at[journey_id]
            first = journey_id not in self._last_scan
            dates[journey_id] = (
                [] if first else [z for z in self.zones if self._fires[at_zone, z] > now]
            )
        for journey_id in dates:
            self._next_scan[journey_id] = min(
                self._fire(self.date_at[journey_id], z, now) for z in self.zones
            )
        fires = self._next_fire is not None and self._next_fire <= now
        if fires:
            self._next_fire = self._schedule_after(now)
        return dates, fires

    def _fire(self, at: time, zone: str, now: datetime) -> datetime:
        """The first instant after `now` when `zone`'s wall clock shows `at` (kept until passed)."""
        upcoming = self._fires.get((at, zone))
        if upcoming is None or upcoming <= now:
            upcoming = self._fires[at, zone] = next_local_time(now + timedelta(seconds=1), at, zone)
        return upcoming

    def scanned(self, journey_id: str) -> datetime | None:
        return self._last_scan.get(journey_id)

    def scanned_at(self, journey_id: str, now: datetime) -> None:
        self._last_scan[journey_id] = now

    def _schedule_after(self, now: datetime) -> datetime | None:
        upcoming: list[datetime] = []
        for trigger in self.schedules:
            zones = self.zones if trigger.zone == "member" else [trigger.zone]
            for zone in zones:
                # The next fire within a year (a cron may fire only once a year).
                upcoming += fire_times(trigger.cron, zone, now, now + timedelta(days=366))[:1]
        return min(upcoming, default=None)

    # -- the rows' moments ------------------------------------------------------------------

    def work_due(self, now: datetime, *, reread: bool = True) -> _Due:
        """Which of wake-ups, retries and expiries are due now: read from the rows, or, when
        nothing ran since the last read (`reread` false), as that read found them."""
        if reread or self._read is None:
            with self.app.database.sessions() as session:
                self._read = tuple(session.execute(self._earliest).one())
        wake, retry, expiry = self._read
        due = _Due(
            wakes=wake is not None and ensure_utc(wake) <= now,
            retries=retry is not None and ensure_utc(retry) <= now,
            expiries=expiry is not None and ensure_utc(expiry) <= now,
        )
        self._next_work = min(
            (ensure_utc(t) for t in (wake, retry, expiry) if t is not None and ensure_utc(t) > now),
            default=None,
        )
        return due

    def next_after(
        self, now: datetime, event_at: datetime | None, engaged_at: datetime | None = None
    ) -> datetime | None:
        """The next moment that matters after `now`, or None past the end."""
        candidates = [now + MAX_JUMP, *self._next_scan.values()]
        for moment in (event_at, engaged_at, self._next_fire, self._next_work):
            if moment is not None:
                candidates.append(moment)
        following = max(now + timedelta(seconds=1), min(candidates))
        return following if following <= self.end else None
