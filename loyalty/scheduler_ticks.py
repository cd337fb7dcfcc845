"""The last run of each scheduler job, kept so that operators can see the scheduler work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from loyalty.db import Database
from loyalty.models import SchedulerTick

__all__ = ["last_ticks", "record_tick"]


def record_tick(
    database: Database,
    name: str,
    *,
    holder: str,
    started_at: datetime,
    finished_at: datetime,
    queued: int,
    error: str | None,
) -> None:
    """Note one run of the job `name` (one row per job, overwritten)."""
    with database.transaction() as session:
        row = session.get(SchedulerTick, name, with_for_update=True)
        if row is None:
            row = SchedulerTick(name=name)
            session.add(row)
        row.holder, row.started_at, row.finished_at = holder, started_at, finished_at
        row.queued, row.error = queued, error


def last_ticks(database: Database) -> list[SchedulerTick]:
    """Each job's last run, by job name."""
    with database.sessions() as session:
        return list(session.scalars(select(SchedulerTick).order_by(SchedulerTick.name)))
