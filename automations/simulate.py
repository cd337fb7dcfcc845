"""The simulator: the real engine, a virtual clock, a throwaway copy of the data.

The database's state is copied into a temporary SQLite database
(`simulation.live_copy`); a members file replaces it with its members. Journeys
are published there (drafts included, as if active); events from a file are
emitted at their `at`. The virtual clock then jumps from one moment that
matters to the next and runs there what the scheduler and the workers would
(`simulation.clock_loop`); sent emails are opened and clicked at the rates
given (`simulation.engagement`, none by default). The timeline is read back
from the copy (`simulation.timeline`). Messages go to the local outbox, which
records them as sent without writing their files; nothing is sent and the real
database is untouched.

The summary and the split reports count, per journey, the members who entered
during the period and those already in flight when it started (`in_flight`: they
entered before, and what they do in the period counts). `loyalty journeys report`
on the live database counts every enrollment; the simulated report counts these
two groups, and says how many of its entries are the second.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event as db_events

from automations import runtime
from automations.report import JourneyReport, journey_report
from automations.simulation.clock_loop import run
from automations.simulation.engagement import EngagementRates, SimulatedEngagement
from automations.simulation.live_copy import Copied, copy_state
from automations.simulation.timeline import iso, timeline
from automations.versions import latest_versions, publish, versions_frozen
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database, upgrade
from loyalty.errors import InvalidEventError
from loyalty.event_types import EventInput
from loyalty.importer import import_members
from loyalty.states import MessageState

__all__ = ["EngagementRates", "Simulation", "parse_day", "simulate"]


def _figures() -> dict[str, int]:
    return {"entries": 0, "in_flight": 0, "sends": 0, "opens": 0, "clicks": 0, "conversions": 0}


@dataclass
class Simulation:
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: `journeys report` of each journey with a split, on the simulated data (when asked).
    reports: list[JourneyReport] = field(default_factory=list)
    #: The enrollments in flight when the simulation started (journey, member, variants).
    in_flight: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per journey: entries (and members in flight at the start), conversions, sends,
        opens, clicks, points, SMS; per variant of the first split (`variants`) and of each
        split (`splits`)."""
        out: dict[str, dict[str, Any]] = {}

        def rows(record: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, int]]]:
            row = out.setdefault(
                record["journey"],
                {
                    "entries": 0,
                    "in_flight": 0,
                    "conversions": 0,
                    "sends": {},
                    "opens": 0,
                    "clicks": 0,
                    "points": 0,
                    "sms_segments": 0,
                    "sms_cost": "0",
                    "variants": {},
                    "splits": {},
                },
            )
            counted: list[dict[str, int]] = []
            if record.get("variant"):
                counted.append(row["variants"].setdefault(record["variant"], _figures()))
            for split, variant in (record.get("splits") or {}).items():
                counted.append(row["splits"].setdefault(split, {}).setdefault(variant, _figures()))
            return row, counted

        for going in self.in_flight:
            row, counted = rows(going)
            for figures in [row, *counted]:
                figures["in_flight"] += 1
        for record in self.records:
            row, counted = rows(record)
            action = record["action"]
            if action in ("enter", "goal", "open", "click"):
                name = {"enter": "entries", "goal": "conversions"}.get(action, action + "s")
                for figures in [row, *counted]:
                    figures[name] += 1
            elif action == "award_points":
                row["points"] += record["points"]
            elif (
                action.startswith("send_")
                and "suppressed" not in record
                and (record.get("state") == MessageState.SENT)
            ):
                row["sends"][record["channel"]] = row["sends"].get(record["channel"], 0) + 1
                for figures in counted:
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
    engagement: EngagementRates | None = None,
) -> Simulation:
    """Run the journeys from `start` to `end` (inclusive) on a copy; the timeline and problems.

    `with_reports`: also the split report of each journey with a split (of `journey_id`
    only, when given), counting the members who entered in the period and those in
    flight at its start. `progress` is called with the virtual clock at each moment
    the simulation reaches. `engagement`: the open and click rates of sent emails.
    """
    if start > end:
        raise ValueError(f"--from ({iso(start)}) is after --to ({iso(end)})")
    result = Simulation()
    with _sandbox(source, start) as app:
        copied = Copied()
        if members_file is not None:
            report = import_members(app.database, members_file, app.settings, app.clock)
            result.problems += [
                f"{members_file}:{p.row}: {p.field}: {p.reason}" for p in report.rejected
            ]
        else:
            copied = copy_state(source.database, app.database)
        _publish_for_simulation(app, journey_id, result)
        events = _read_events(events_file, start, result) if events_file else []
        opens = SimulatedEngagement(app, engagement or EngagementRates(), start)
        with versions_frozen():  # nothing publishes in the copy while it runs
            run(app, start, end, events, result.problems, progress, opens)
        found = timeline(app, start, end, copied)
        result.records, result.in_flight = found.records, found.in_flight
        if with_reports:
            result.reports = _reports(app, journey_id, start)
    return result


def _reports(app: App, journey_id: str | None, start: datetime) -> list[JourneyReport]:
    with app.database.sessions() as session:
        ids = [journey_id] if journey_id else [v.journey_id for v in latest_versions(session)]
        reports = [journey_report(session, i, active_at=start) for i in ids]
    return [r for r in reports if r.has_splits or r.journey_id == journey_id]


@contextmanager
def _sandbox(source: App, start: datetime) -> Iterator[App]:
    with tempfile.TemporaryDirectory(prefix="loyalty-simulate-") as folder:
        settings = source.settings.model_copy(
            update={
                "database_url": f"sqlite:///{Path(folder) / 'simulation.db'}",
                "redis_url": None,
                "outbox_dir": Path(folder) / "outbox",
                "outbox_files": False,  # thrown away with the copy: records, no files
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
        _index_unspent_lots(database)
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


#: Lots still holding points, by expiry, in the simulation's copy only. Its condition is
#: written `remaining >= 1` (the same lots: points are whole) so that only the clock
#: loop's question, which says so, uses it: the engine's own queries say `remaining > 0`
#: and keep their plans (SQLite would otherwise take it for a member's lots too).
UNSPENT_LOTS_INDEX = (
    "CREATE INDEX ix_simulation_unspent_lots ON points_ledger (expires_at) WHERE remaining >= 1"
)


def _index_unspent_lots(database: Database) -> None:
    """Index the lots that still hold points by their expiry, in the copy.

    The clock loop asks for the earliest expiry after every moment where something ran.
    On the ledger's index of `expires_at` that walks every spent and expired lot before
    the first one still holding points, a walk that grows with the members and through
    the simulated year (8 ms a question with 20,000 lots behind). The index is the
    copy's own: DDL, not a table's metadata, which the models and migrations share.
    """
    with database.engine.begin() as connection:
        connection.exec_driver_sql(UNSPENT_LOTS_INDEX)


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


def parse_day(value: str, *, end: bool = False) -> datetime:
    """A CLI date (YYYY-MM-DD, start or end of the day UTC) or an ISO instant."""
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
    instant = datetime.fromisoformat(value)
    return instant if instant.tzinfo else instant.replace(tzinfo=ZoneInfo("UTC"))
