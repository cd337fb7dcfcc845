"""The simulator: the real engine, a virtual clock, a throwaway copy of the data.

The database's state is copied into a temporary SQLite database: members,
their ledger, consents, referrals, suppressions and processed events, the
journey versions with every enrollment (those in flight go on from where they
wait) and the message history (so frequency caps count what was already sent).
A members file replaces all of that with its members. Journeys are published
there (drafts included, as if active); events from a file are
emitted at their `at`. The clock then jumps from one moment that matters to
the next (an event, a wake-up, a send retry, a points expiry, a cron or
date-journey fire time in a zone in use) and runs there the scheduler's ticks
that have work, and the actors they queue, in this thread and in order. A date
journey's scan enters the members whose moment came since its previous scan,
so each is decided once, at its moment (the scheduler's catch-up re-checks a
member left out by the audience for the rest of their day; the simulation
does not). Messages go to a temporary outbox; nothing is sent and the real
database is untouched.
"""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event as db_events
from sqlalchemy import func, insert, select

from automations import runtime
from automations.definition import DateTrigger, ScheduleTrigger
from automations.intake import emit
from automations.report import JourneyReport, journey_report
from automations.runtime.broker import build_inline_broker
from automations.runtime.ticks import (
    enter_date_journeys,
    expire_points,
    fire_schedules,
    relay_messages,
    wake_enrollments,
)
from automations.triggers.date_rules import member_zone
from automations.triggers.schedules import fire_times
from automations.versions import latest_versions, load_version, publish
from loyalty.app import App
from loyalty.clock import FrozenClock, ensure_utc, next_local_time
from loyalty.db import Database, upgrade
from loyalty.errors import InvalidEventError
from loyalty.event_types import EventInput
from loyalty.importer import import_members
from loyalty.models import (
    Consent,
    Enrollment,
    Event,
    JourneyVersion,
    LedgerEntry,
    Member,
    Message,
    Referral,
    Suppression,
)
from loyalty.states import IN_FLIGHT, EnrollmentState, MessageState

__all__ = ["Simulation", "parse_day", "simulate"]

#: The longest jump of the virtual clock, so that no quiet stretch hides a tick.
MAX_JUMP = timedelta(hours=6)


@dataclass
class Simulation:
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: `journeys report` of each journey with a split, on the simulated data (when asked).
    reports: list[JourneyReport] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per journey: entries, conversions, sends, points, SMS; per split variant too."""
        out: dict[str, dict[str, Any]] = {}
        for record in self.records:
            row = out.setdefault(
                record["journey"],
                {
                    "entries": 0,
                    "conversions": 0,
                    "sends": {},
                    "points": 0,
                    "sms_segments": 0,
                    "sms_cost": "0",
                    "variants": {},
                },
            )
            counted = [row]
            if record.get("variant"):
                counted.append(
                    row["variants"].setdefault(
                        record["variant"], {"entries": 0, "sends": 0, "conversions": 0}
                    )
                )
            if record["action"] == "enter":
                for figures in counted:
                    figures["entries"] += 1
            elif record["action"] == "goal":
                for figures in counted:
                    figures["conversions"] += 1
            elif record["action"] == "award_points":
                row["points"] += record["points"]
            elif (
                record["action"].startswith("send_")
                and "suppressed" not in record
                and (record.get("state") == MessageState.SENT)
            ):
                row["sends"][record["channel"]] = row["sends"].get(record["channel"], 0) + 1
                for figures in counted[1:]:
                    figures["sends"] += 1
                if record["channel"] == "sms":
                    row["sms_segments"] += record.get("segments", 0)
                    row["sms_cost"] = str(Decimal(row["sms_cost"]) + Decimal(record["cost"]))
        return out


def simulate(
    source: App,
    *,
    start: datetime,
    end: datetime,
    journey_id: str | None = None,
    members_file: Path | None = None,
    events_file: Path | None = None,
    with_reports: bool = False,
    progress: Callable[[datetime], None] | None = None,
) -> Simulation:
    """Run the journeys from `start` to `end` (inclusive) on a copy; the timeline and problems.

    `with_reports`: also the split report of each journey with a split (of `journey_id`
    only, when given), counting the members who entered in the period. `progress` is
    called with the virtual clock at each moment the simulation reaches.
    """
    if start > end:
        raise ValueError(f"--from ({_iso(start)}) is after --to ({_iso(end)})")
    result = Simulation()
    with _sandbox(source, start) as app:
        copied = _Copied()
        if members_file is not None:
            report = import_members(app.database, members_file, app.settings, app.clock)
            result.problems += [
                f"{members_file}:{p.row}: {p.field}: {p.reason}" for p in report.rejected
            ]
        else:
            copied = _copy_state(source.database, app.database)
        _publish_for_simulation(app, journey_id, result)
        events = _read_events(events_file, start, result) if events_file else []
        _run(app, start, end, events, result, progress)
        result.records = _timeline(app, start, end, copied)
        if with_reports:
            result.reports = _reports(app, journey_id, start)
    return result


def _reports(app: App, journey_id: str | None, start: datetime) -> list[JourneyReport]:
    with app.database.sessions() as session:
        ids = [journey_id] if journey_id else [v.journey_id for v in latest_versions(session)]
        reports = [journey_report(session, i, entered_since=start) for i in ids]
    return [r for r in reports if r.has_splits or r.journey_id == journey_id]


@contextmanager
def _sandbox(source: App, start: datetime) -> Iterator[App]:
    with tempfile.TemporaryDirectory(prefix="loyalty-simulate-") as folder:
        settings = source.settings.model_copy(
            update={
                "database_url": f"sqlite:///{Path(folder) / 'simulation.db'}",
                "redis_url": None,
                "outbox_dir": Path(folder) / "outbox",
                # Nothing leaves the machine: the local outbox stands in for every provider.
                "sendgrid_api_key": None,
                "twilio_account_sid": None,
                "twilio_auth_token": None,
                "hubspot_access_token": None,
                "salesforce_access_token": None,
                "journey_calls_local": True,  # http and crm_task steps call nothing
            }
        )
        database = Database(settings.database_url)
        # A throwaway file: nothing needs to survive a crash, so no write waits for the disk.
        db_events.listen(database.engine, "connect", _disposable)
        upgrade(database)
        app = App(settings, database, FrozenClock(start))
        runtime.configure(app)
        try:
            yield app
        finally:
            runtime.configure(source)
            database.dispose()


def _disposable(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


@dataclass
class _Copied:
    """What the copy brought over, so the timeline shows only what the simulation did."""

    #: Enrollments copied: those already finished, and those still in flight.
    finished: set[int] = field(default_factory=set)
    in_flight: set[int] = field(default_factory=set)
    ledger_up_to: int = 0
    #: Messages whose fate was settled before the copy (sent, suppressed, failed…).
    settled_messages: set[int] = field(default_factory=set)


#: Copied in this order (foreign keys), ids kept. Events only once processed, so the
#: simulation replays no real event; the ledger then drops its link to events.
_COPIED_MODELS: tuple[Any, ...] = (
    JourneyVersion,
    Member,
    Consent,
    Referral,
    Event,
    LedgerEntry,
    Suppression,
    Enrollment,
    Message,
)
_UNSETTLED = (MessageState.PENDING, MessageState.DEFERRED, MessageState.CLAIMED)


def _copy_state(source: Database, target: Database) -> _Copied:
    """The database's state as the engine reads it, in batches (ids kept)."""
    copied = _Copied()
    for model in _COPIED_MODELS:
        table = model.__table__
        columns = [c.key for c in table.columns]
        query = select(table).order_by(table.c.id)
        if model is Event:
            query = query.where(table.c.processed_at.is_not(None))
        with source.sessions() as reader:
            batch: list[dict[str, Any]] = []
            for row in reader.execute(query).mappings():
                values = {c: row[c] for c in columns}
                if model is LedgerEntry:
                    values["event_id"] = None
                    copied.ledger_up_to = max(copied.ledger_up_to, values["id"])
                elif model is Member:
                    values["referred_by_id"] = None  # a referrer may come later in id order
                elif model is Enrollment:
                    going = values["state"] in IN_FLIGHT
                    (copied.in_flight if going else copied.finished).add(values["id"])
                elif model is Message and values["state"] not in _UNSETTLED:
                    copied.settled_messages.add(values["id"])
                batch.append(values)
                if len(batch) == 1000:
                    _insert(target, model, batch)
                    batch = []
            _insert(target, model, batch)
    return copied


def _insert(target: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        with target.transaction() as session:
            session.execute(insert(model.__table__), rows)


def _publish_for_simulation(app: App, journey_id: str | None, result: Simulation) -> None:
    report = publish(app, app.settings.journeys_dir)
    result.problems += [str(p) for p in report.problems]
    with app.database.transaction() as session:
        for version in latest_versions(session):
            definition = dict(version.definition)
            journey = dict(definition["journey"])
            if journey_id is not None and journey["id"] != journey_id:
                journey["status"] = "paused"
            elif journey["status"] == "draft":
                journey["status"] = "active"  # a draft is simulated as if it were live
            definition["journey"] = journey
            version.definition = definition
            # Parsed versions are cached by hash: the status simulated is part of it.
            version.content_hash = f"simulated:{journey['status']}:{version.content_hash}"


def _read_events(path: Path, start: datetime, result: Simulation) -> list[EventInput]:
    events: list[EventInput] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = EventInput.from_json(json.loads(line), source="simulation")
        except (ValueError, InvalidEventError) as exc:  # reported; the rest go on
            result.problems.append(f"{path}:{number}: {exc}")
            continue
        events.append(event if event.at else replace(event, at=start))
    return sorted(events, key=lambda e: e.at or start)


def _run(
    app: App,
    start: datetime,
    end: datetime,
    events: list[EventInput],
    result: Simulation,
    progress: Callable[[datetime], None] | None = None,
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
    while True:
        clock.set(now)
        while pending and (pending[0].at or start) <= now:
            event = pending.popleft()
            try:
                emit(app, event)
            except Exception as exc:
                result.problems.append(f"event {event.id or event.type}: {exc}")
        broker.run_queued()
        dates, schedules = moments.journeys_due(now)
        if dates:
            for journey_id in dates:
                enter_date_journeys(
                    app, only=(journey_id,), fired_after=moments.scanned(journey_id)
                )
                moments.scanned_at(journey_id, now)
            broker.run_queued()
        if schedules:
            fire_schedules(app)
            broker.run_queued()
        due = moments.work_due(now)
        if due.expiries:
            expire_points(app)
            broker.run_queued()
        if due.wakes:
            wake_enrollments(app)
            broker.run_queued()
        if due.retries:
            relay_messages(app)
            broker.run_queued()
        if progress is not None:
            progress(now)
        following = moments.next_after(now, pending[0].at if pending else None)
        if following is None:
            break
        now = following
    if progress is not None:
        progress(end)  # nothing more happens before the end
    result.problems += broker.failures


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
            .where(LedgerEntry.remaining > 0)
            .scalar_subquery(),
        )
        #: (`at`, zone) → the next instant the wall clock there shows `at`.
        self._fires: dict[tuple[time, str], datetime] = {}

    # -- the journeys' own moments ----------------------------------------------------------

    def journeys_due(self, now: datetime) -> tuple[list[str], bool]:
        """The date journeys whose scan is due, and whether a cron journey fires now."""
        dates = [j for j, at in sorted(self._next_scan.items()) if at <= now]
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

    def work_due(self, now: datetime) -> _Due:
        """Which of wake-ups, retries and expiries are due now (read from the rows)."""
        with self.app.database.sessions() as session:
            wake, retry, expiry = session.execute(self._earliest).one()
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

    def next_after(self, now: datetime, event_at: datetime | None) -> datetime | None:
        """The next moment that matters after `now`, or None past the end."""
        candidates = [now + MAX_JUMP, *self._next_scan.values()]
        for moment in (event_at, self._next_fire, self._next_work):
            if moment is not None:
                candidates.append(moment)
        following = max(now + timedelta(seconds=1), min(candidates))
        return following if following <= self.end else None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _timeline(app: App, start: datetime, end: datetime, copied: _Copied) -> list[dict[str, Any]]:
    """What happened between `start` and `end`; at one instant, in the order it ran."""
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    with app.database.sessions() as session:
        externals = dict(session.execute(select(Member.id, Member.external_id)).all())
        orders = {
            v.id: {step.id: n for n, step in enumerate(load_version(v).journey.steps)}
            for v in session.scalars(select(JourneyVersion))
        }
        enrollments = {e.id: e for e in session.scalars(select(Enrollment))}

        def add(record: dict[str, Any], enrollment_id: int | None, phase: int) -> None:
            e = enrollments.get(enrollment_id) if enrollment_id is not None else None
            step = orders.get(e.journey_version_id, {}).get(record["step"], -1) if e else -1
            key = (record["at"], record["member"], record["journey"], phase, step)
            if e is not None and e.variant:
                record["variant"] = e.variant
            rows.append((key, record))

        for e in enrollments.values():
            if e.id in copied.finished:
                continue
            member = externals[e.member_id]
            if e.id not in copied.in_flight:
                enter = {
                    "at": _iso(e.entered_at),
                    "journey": e.journey_id,
                    "member": member,
                    "step": "",
                    "action": "enter",
                    "occurrence": e.occurrence,
                }
                add(enter, e.id, 0)
            if e.state == EnrollmentState.CONVERTED and e.converted_at:
                goal = {
                    "at": _iso(e.converted_at),
                    "journey": e.journey_id,
                    "member": member,
                    "step": e.current_step or "",
                    "action": "goal",
                }
                add(goal, e.id, 2)
            elif e.exited_at is not None:
                record = {
                    "at": _iso(e.exited_at),
                    "journey": e.journey_id,
                    "member": member,
                    "step": e.current_step or "",
                    "action": "exit",
                }
                if e.exit_reason:
                    record["reason"] = e.exit_reason
                add(record, e.id, 2)
        for entry in session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.idempotency_key.like("enrollment:%"),
                LedgerEntry.id > copied.ledger_up_to,
            )
        ):
            _, enrollment_id, step = entry.idempotency_key.split(":", 2)
            owner = enrollments.get(int(enrollment_id)) if enrollment_id.isdigit() else None
            if owner is None:
                continue
            award = {
                "at": _iso(entry.created_at),
                "journey": owner.journey_id,
                "member": externals[entry.member_id],
                "step": step,
                "action": "award_points",
                "points": entry.delta,
            }
            add(award, owner.id, 1)
        for message in session.scalars(select(Message)):
            if message.id not in copied.settled_messages:
                add(_message_record(message, externals, app), message.enrollment_id, 1)
    low, high = _iso(start), _iso(end)
    rows = [(key, r) for key, r in rows if low <= r["at"] <= high]
    return [r for _, r in sorted(rows, key=lambda row: row[0])]


def _message_record(message: Message, externals: dict[int, str], app: App) -> dict[str, Any]:
    at = message.sent_at or message.updated_at
    if message.channel == "crm":
        action = "update_crm"
    elif message.channel in ("http", "crm_task"):
        action = message.channel
    elif message.decisions.get("survey"):
        action = "send_survey"
    else:
        action = f"send_{message.channel}"
    record: dict[str, Any] = {
        "at": _iso(at),
        "journey": message.journey_id or "",
        "member": externals[message.member_id],
        "step": message.step_id or "",
        "action": action,
        "channel": message.channel,
        "state": message.state,
    }
    if message.template:
        record["template"] = message.template
    if message.locale:
        record["locale"] = message.locale
    if message.decisions.get("deferred_from"):
        record["deferred_from"] = _iso(datetime.fromisoformat(message.decisions["deferred_from"]))
    if message.state == MessageState.DEFERRED:
        record["deferred_until"] = (
            _iso(message.next_attempt_at) if message.next_attempt_at else None
        )
    if message.state == MessageState.SUPPRESSED:
        record["suppressed"] = message.error
    elif message.state == MessageState.FAILED:
        record["error"] = message.error
    if message.channel == "sms" and message.segments:
        record["segments"] = message.segments
        record["cost"] = str(message.cost)
    if message.channel == "crm":
        record["properties"] = message.decisions.get("properties")
    elif message.channel == "http":
        record["endpoint"] = message.decisions.get("endpoint")
    elif message.channel == "crm_task":
        record["subject"] = (message.decisions.get("task") or {}).get("subject")
    return record


def parse_day(value: str, *, end: bool = False) -> datetime:
    """A CLI date (YYYY-MM-DD, start or end of the day UTC) or an ISO instant."""
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
    instant = datetime.fromisoformat(value)
    return instant if instant.tzinfo else instant.replace(tzinfo=ZoneInfo("UTC"))
